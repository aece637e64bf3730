/**
 * A real Kubernetes control plane for tests and manual work, plus a kubelet
 * simulator. Lab/test components only: never deployed to clusters.
 *
 * @module
 */
export {
  ensureBinaries,
  freePort,
  runBuildScript,
  startTestbed,
  terminate,
  waitFor,
} from "./testbed.ts";
export type { Identities, Identity, Testbed, TestbedOptions } from "./testbed.ts";
export { containerID, KubeletSimulator } from "./kubelet_sim.ts";
export { applyManifests, MANIFESTS, waitForCrd } from "./manifests.ts";
export type { KubeletSimulatorOptions, ResizeResponse } from "./kubelet_sim.ts";
