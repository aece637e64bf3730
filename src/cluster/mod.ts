/**
 * The local cluster: a real single-node Kubernetes cluster on this machine
 * (the test bed's control plane, containerd 2.x with runc, kubelet,
 * kube-scheduler, kube-proxy, CoreDNS) that MBCAS is deployed onto from
 * images, and the images themselves, built without a registry. A lab and test
 * component; never deployed.
 *
 * @module
 */
export { api, ensureNodeBinaries, localClusterMissing, startLocalCluster } from "./cluster.ts";
export type { LocalCluster, LocalClusterOptions } from "./cluster.ts";
export type { ClusterPlan } from "./_plan.ts";
export { buildLocalImages, LAB_IMAGE, PAUSE_IMAGE } from "./images.ts";
export { diffHost, foreignCgroupPatterns, snapshotHost } from "./_host_state.ts";
export type { HostSnapshot } from "./_host_state.ts";
export type { LocalImage } from "./images.ts";
