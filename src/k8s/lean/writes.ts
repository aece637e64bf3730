/**
 * The writes of the in-cluster binaries over the lean client that are more
 * than a merge patch: the `pods/resize` strategic-merge patch and Events.
 *
 * @module
 */
import type { CoreV1Event, V1Pod } from "@kubernetes/client-node";
import { type ContainerResize, resizePatch, STRATEGIC_MERGE_PATCH } from "../_shared.ts";
import type { LeanClient } from "./client.ts";

/**
 * Resizes a pod's containers in place with one strategic-merge patch to the
 * `pods/resize` subresource (all containers at once: the kubelet applies a
 * resize atomically). Returns the pod as the API server stored it.
 */
export function resizePod(
  client: LeanClient,
  namespace: string,
  name: string,
  containers: readonly ContainerResize[],
): Promise<V1Pod> {
  return client.request<V1Pod>(
    "PATCH",
    `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods/${encodeURIComponent(name)}/resize`,
    { body: resizePatch(containers), contentType: STRATEGIC_MERGE_PATCH },
  );
}

/** Creates an Event in `namespace` (Dates are sent as their JSON form, RFC 3339 text). */
export function createEvent(
  client: LeanClient,
  namespace: string,
  event: CoreV1Event,
): Promise<CoreV1Event> {
  return client.create<CoreV1Event>(
    `/api/v1/namespaces/${encodeURIComponent(namespace)}/events`,
    event,
  );
}
