/**
 * Typed helpers for the two writes the controller makes: the `pods/resize`
 * strategic-merge patch, and PodAllocation status updates.
 *
 * @module
 */
import * as k8s from "@kubernetes/client-node";
import { API_VERSION, GROUP, PLURAL, type PodAllocationStatus, VERSION } from "../api/mod.ts";
import { retryOnConflict } from "./retry.ts";
import { type ContainerResize, resizePatch } from "./_shared.ts";

export { resizePatch };
export type { ContainerResize };

/**
 * Resizes a pod's containers in place with one strategic-merge patch to the
 * `pods/resize` subresource (all containers at once: the kubelet applies a
 * resize atomically). Returns the pod as the API server stored it.
 */
export function patchPodResize(
  core: k8s.CoreV1Api,
  namespace: string,
  name: string,
  containers: readonly ContainerResize[],
): Promise<k8s.V1Pod> {
  return core.patchNamespacedPodResize(
    { name, namespace, body: resizePatch(containers) },
    k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.StrategicMergePatch),
  );
}

/**
 * Replaces a PodAllocation's status through the `status` subresource, reading
 * the latest object and retrying on conflicts. `update` receives the current
 * status and returns the new one.
 */
export function updatePodAllocationStatus(
  custom: k8s.CustomObjectsApi,
  namespace: string,
  name: string,
  update: (current: PodAllocationStatus | undefined, generation: number) => PodAllocationStatus,
): Promise<unknown> {
  return retryOnConflict(async () => {
    const current = await custom.getNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace,
      plural: PLURAL,
      name,
    }) as {
      metadata: { resourceVersion: string; generation?: number };
      status?: PodAllocationStatus;
    };
    const status = update(current.status, current.metadata.generation ?? 0);
    return custom.replaceNamespacedCustomObjectStatus({
      group: GROUP,
      version: VERSION,
      namespace,
      plural: PLURAL,
      name,
      body: { ...current, apiVersion: API_VERSION, status },
    });
  });
}
