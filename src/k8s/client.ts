/**
 * Client construction for agent and controller: in-cluster service-account
 * credentials, or a kubeconfig with a bearer token or a client certificate,
 * always with the cluster CA trusted.
 *
 * @module
 */
import * as k8s from "@kubernetes/client-node";
import {
  type ConnectionOptions,
  IN_CLUSTER_HOST,
  inCluster,
  inClusterServer,
  KubeConfigError,
  SERVICE_ACCOUNT_DIR,
} from "./_shared.ts";
export {
  errorMessage,
  IN_CLUSTER_HOST,
  KubeConfigError,
  SERVICE_ACCOUNT_DIR,
  statusCode,
} from "./_shared.ts";
export type { ConnectionOptions } from "./_shared.ts";

/**
 * Loads a KubeConfig. In a pod (KUBERNETES_SERVICE_HOST set and a token mounted)
 * it uses the service account and {@link IN_CLUSTER_HOST}, re-reading the token file so rotated tokens are
 * picked up; otherwise a kubeconfig file.
 *
 * @throws {KubeConfigError} naming the missing file or context.
 */
export function loadKubeConfig(options: ConnectionOptions = {}): k8s.KubeConfig {
  const kc = new k8s.KubeConfig();
  const saDir = options.serviceAccountDir ?? SERVICE_ACCOUNT_DIR;
  const file = options.kubeconfig ?? (inCluster(saDir) ? undefined : Deno.env.get("KUBECONFIG"));
  if (options.kubeconfig === undefined && inCluster(saDir)) {
    const server = inClusterServer(options.inClusterHost ?? IN_CLUSTER_HOST);
    kc.loadFromOptions({
      clusters: [{ name: "in-cluster", server, caFile: `${saDir}/ca.crt`, skipTLSVerify: false }],
      users: [{
        name: "service-account",
        authProvider: { name: "tokenFile", config: { tokenFile: `${saDir}/token` } },
      }],
      contexts: [{ name: "in-cluster", cluster: "in-cluster", user: "service-account" }],
      currentContext: "in-cluster",
    });
    return kc;
  }
  const path = file ?? `${Deno.env.get("HOME") ?? ""}/.kube/config`;
  try {
    Deno.statSync(path);
  } catch {
    throw new KubeConfigError(
      `kubeconfig ${path} does not exist (set --kubeconfig or KUBECONFIG, or run in a pod with a service account)`,
    );
  }
  try {
    kc.loadFromFile(path);
  } catch (error) {
    throw new KubeConfigError(`kubeconfig ${path} could not be read: ${(error as Error).message}`);
  }
  if (options.context !== undefined) {
    if (kc.getContextObject(options.context) === null) {
      throw new KubeConfigError(
        `kubeconfig ${path} has no context ${JSON.stringify(options.context)}`,
      );
    }
    kc.setCurrentContext(options.context);
  }
  if (kc.getCurrentCluster() === null) {
    throw new KubeConfigError(`kubeconfig ${path}: the current context names no cluster`);
  }
  return kc;
}
