/**
 * The Kubernetes layer over `@kubernetes/client-node` (the controller, the
 * CLIs, the test bed): client construction, a resilient informer, conflict
 * retries, and typed writes. The agent uses `lean/mod.ts` instead, the same
 * informer over a small `fetch` client, so that it never loads client-node.
 *
 * @module
 */
export {
  errorMessage,
  IN_CLUSTER_HOST,
  KubeConfigError,
  loadKubeConfig,
  SERVICE_ACCOUNT_DIR,
  statusCode,
} from "./client.ts";
export type { ConnectionOptions } from "./client.ts";
export { withoutManagedFields } from "./_shared.ts";
export { backoffDelay, Informer, objectKey } from "./informer.ts";
export { kubeSource } from "./kube_source.ts";
export type { KubeSourceOptions } from "./kube_source.ts";
export type {
  InformerEvent,
  InformerOptions,
  InformerSource,
  InformerStats,
  KubeObject,
  ListResult,
  WatchStream,
} from "./informer.ts";
export { retryOnConflict } from "./retry.ts";
export { LIST_PAGE_SIZE, MERGE_PATCH, microTime, pagedList, plainList, toPlain } from "./plain.ts";
export {
  DEFAULT_REQUEST_TIMEOUT_MS,
  httpClientFor,
  makeApiClient,
  RequestTimeoutError,
} from "./transport.ts";
export type { ApiClientOptions } from "./transport.ts";
export { patchPodResize, resizePatch, updatePodAllocationStatus } from "./resize.ts";
export type { ContainerResize } from "./resize.ts";
