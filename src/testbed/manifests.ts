/**
 * Applying the project's manifests to a cluster (server-side apply), and
 * waiting for a CRD to be served.
 *
 * @module
 */
import * as k8s from "@kubernetes/client-node";

/** Server-side-applies every document in the YAML files, in order; returns the objects applied. */
export async function applyManifests(
  kc: k8s.KubeConfig,
  files: string[],
): Promise<k8s.KubernetesObject[]> {
  const api = k8s.KubernetesObjectApi.makeApiClient(kc);
  const applied: k8s.KubernetesObject[] = [];
  for (const file of files) {
    for (const doc of k8s.loadAllYaml(await Deno.readTextFile(file))) {
      if (doc === null || doc === undefined) continue;
      applied.push(
        await api.patch(
          doc,
          undefined,
          undefined,
          "mbcas-testbed",
          true,
          k8s.PatchStrategy.ServerSideApply,
        ),
      );
    }
  }
  return applied;
}

/** Waits until the CRD `name` is Established (and so served). */
export async function waitForCrd(
  kc: k8s.KubeConfig,
  name: string,
  timeoutMs = 30_000,
): Promise<void> {
  const api = kc.makeApiClient(k8s.ApiextensionsV1Api);
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    const crd = await api.readCustomResourceDefinition({ name });
    if (crd.status?.conditions?.some((c) => c.type === "Established" && c.status === "True")) {
      return;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`CRD ${name} not Established after ${timeoutMs} ms`);
}

/** Repository paths of the CRD, RBAC and admission policy manifests. */
export const MANIFESTS = {
  crd:
    new URL("../../deploy/crd/podallocations.allocation.mbcas.io.yaml", import.meta.url).pathname,
  rbac: ["namespace.yaml", "agent.yaml", "controller.yaml"].map((f) =>
    new URL(`../../deploy/rbac/${f}`, import.meta.url).pathname
  ),
  policy: ["agent.yaml", "controller.yaml"].map((f) =>
    new URL(`../../deploy/policy/${f}`, import.meta.url).pathname
  ),
} as const;
