/**
 * client-node deserialises API responses into model objects (timestamps become
 * `Date`s), while watch events arrive as plain JSON. Caches hold plain JSON, so
 * responses are normalised with {@link toPlain}, and plain objects are written
 * back as JSON merge patches (which client-node does not re-serialise).
 *
 * @module
 */
import * as k8s from "@kubernetes/client-node";

/** The plain-JSON form of a client-node model object (dates as RFC 3339 strings). */
export function toPlain<T>(value: T): T {
  return JSON.parse(JSON.stringify(value));
}

/** Request options that send a body as a JSON merge patch. */
export const MERGE_PATCH: k8s.ConfigurationOptions = k8s.setHeaderOptions(
  "Content-Type",
  k8s.PatchStrategy.MergePatch,
);

/**
 * Wraps a client-node list call as an informer's `list`: the plain-JSON items
 * and the list's resourceVersion.
 */
export function plainList<T>(
  fetch: () => Promise<{ items: T[]; metadata?: { resourceVersion?: string } }>,
): () => Promise<{ items: T[]; resourceVersion: string }> {
  return async () => {
    const list = toPlain(await fetch());
    return { items: list.items, resourceVersion: list.metadata?.resourceVersion ?? "" };
  };
}

/**
 * A Kubernetes MicroTime (Lease `renewTime`, `acquireTime`): RFC 3339 with
 * exactly six fractional digits, as the API server requires.
 */
export function microTime(date: Date): string {
  return date.toISOString().replace(/\.(\d{3})Z$/, ".$1000Z");
}
