/**
 * The lean Kubernetes layer of the in-cluster binaries: a small API client on
 * Deno's `fetch` ({@link LeanClient}), where to connect ({@link loadLeanConfig}),
 * and an informer source over it ({@link leanSource}) for the shared
 * {@link Informer}. Nothing here loads `@kubernetes/client-node` at run time
 * (its types only), which is most of a Deno process's memory once loaded:
 * the agent and the controller use this layer; the CLIs, scripts and tests
 * keep client-node (src/k8s/mod.ts) for its kubeconfig handling.
 *
 * @example Lists and watches the pods of one node
 * ```ts ignore
 * import { Informer, LeanClient, leanSource, loadLeanConfig } from "./mod.ts";
 * import type { V1Pod } from "@kubernetes/client-node";
 *
 * const client = new LeanClient(await loadLeanConfig({ kubeconfig: "testbed.kubeconfig" }));
 * const pods = new Informer<V1Pod>(
 *   leanSource(client, { path: "/api/v1/pods", fieldSelector: "spec.nodeName=node-a" }),
 *   { name: "pods" },
 * );
 * pods.start();
 * await pods.synced();
 * console.log(pods.list().length);
 * await pods.stop();
 * client.close();
 * ```
 *
 * @module
 */
export {
  DEFAULT_REQUEST_TIMEOUT_MS,
  errorMessage,
  IN_CLUSTER_HOST,
  KubeConfigError,
  leasePath,
  microTime,
  RequestTimeoutError,
  resizePatch,
  SERVICE_ACCOUNT_DIR,
  statusCode,
  withoutManagedFields,
} from "../_shared.ts";
export type { ConnectionOptions, ContainerResize } from "../_shared.ts";
export { backoffDelay, Informer, objectKey } from "../informer.ts";
export type {
  InformerEvent,
  InformerOptions,
  InformerSource,
  InformerStats,
  KubeObject,
  ListResult,
  WatchStream,
} from "../informer.ts";
export { leanConfigFromDocument, leanConfigFromKubeConfig, loadLeanConfig } from "./config.ts";
export type { LeanConfig } from "./config.ts";
export { ApiError, LEAN_PAGE_SIZE, LeanClient } from "./client.ts";
export type {
  ApiStatus,
  LeanClientOptions,
  LeanList,
  LeanWatch,
  ListOptions,
  Query,
  RequestOptions,
  WatchOptions,
} from "./client.ts";
export { leanSource } from "./source.ts";
export { createEvent, resizePod } from "./writes.ts";
export type { LeanSourceOptions } from "./source.ts";
