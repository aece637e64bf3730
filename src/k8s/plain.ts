/**
 * client-node deserialises API responses into model objects (timestamps become
 * `Date`s), while watch events arrive as plain JSON. Caches hold plain JSON, so
 * responses are normalised with {@link toPlain}, and plain objects are written
 * back as JSON merge patches (which client-node does not re-serialise).
 *
 * @module
 */
import * as k8s from "@kubernetes/client-node";
import { deadline } from "./_shared.ts";
export { microTime } from "./_shared.ts";

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

/** Objects per page of a paginated list ({@link pagedList}). */
export const LIST_PAGE_SIZE = 500;

/** One page of a list as client-node returns it (typed: `_continue`; custom objects: `continue`). */
interface ListPage<T> {
  items: T[];
  metadata?: { resourceVersion?: string; _continue?: string; continue?: string };
}

/**
 * Wraps a paginated client-node list call as an informer's `list`: asks for
 * pages of `pageSize` objects (`limit`, then `continue` tokens) until the
 * last, reduces each page's items to plain JSON (and through `transform`,
 * when given, page by page so a large list is never held whole), and
 * returns them with the first page's resourceVersion (pages of one list are
 * one consistent snapshot). An expired continue token fails the list like
 * any error; the informer lists again from the start.
 *
 * Each page must arrive within `pageTimeoutMs` (default 60 s, a backstop
 * behind the client's own request timeout); the list as a whole has no
 * deadline, so a large list on a slow API server completes page by page
 * instead of starting over (give its {@link kubeSource} `listTimeoutMs:
 * Infinity`).
 */
export function pagedList<T>(
  fetchPage: (page: { limit: number; _continue?: string }) => Promise<ListPage<unknown>>,
  options: { pageSize?: number; transform?: (item: unknown) => T; pageTimeoutMs?: number } = {},
): () => Promise<{ items: T[]; resourceVersion: string }> {
  const pageSize = options.pageSize ?? LIST_PAGE_SIZE;
  const transform = options.transform ?? ((item: unknown) => item as T);
  const pageTimeoutMs = options.pageTimeoutMs ?? 60_000;
  return async () => {
    const items: T[] = [];
    let resourceVersion: string | undefined;
    let token: string | undefined;
    do {
      const page = await deadline(
        fetchPage({ limit: pageSize, ...(token ? { _continue: token } : {}) }),
        pageTimeoutMs,
        () =>
          `a page of the list (after ${items.length} objects) timed out after ${pageTimeoutMs} ms`,
      );
      for (const item of toPlain(page.items)) items.push(transform(item));
      resourceVersion ??= page.metadata?.resourceVersion ?? "";
      token = page.metadata?._continue ?? page.metadata?.continue ?? undefined;
    } while (token);
    return { items, resourceVersion: resourceVersion ?? "" };
  };
}
