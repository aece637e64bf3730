/**
 * The Kubernetes layer agent and controller share: client construction, a
 * resilient informer, conflict retries, and typed writes.
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
export { backoffDelay, Informer, kubeSource, objectKey } from "./informer.ts";
export type {
  InformerEvent,
  InformerOptions,
  InformerSource,
  InformerStats,
  KubeObject,
  KubeSourceOptions,
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
