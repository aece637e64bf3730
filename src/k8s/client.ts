/**
 * Client construction for agent and controller: in-cluster service-account
 * credentials, or a kubeconfig with a bearer token or a client certificate,
 * always with the cluster CA trusted.
 *
 * @module
 */
import * as k8s from "@kubernetes/client-node";

/** The API connection could not be configured; the message names the file or variable. */
export class KubeConfigError extends Error {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "KubeConfigError";
  }
}

/** Where to find credentials. */
export interface ConnectionOptions {
  /** Path of a kubeconfig file; otherwise in-cluster credentials, then `$KUBECONFIG`, then `~/.kube/config`. */
  kubeconfig?: string;
  /** Context to use instead of the kubeconfig's current one. */
  context?: string;
  /** Directory of the mounted service-account token, CA and namespace (in-cluster). */
  serviceAccountDir?: string;
  /** Host name of the API server in a pod; default {@link IN_CLUSTER_HOST}. */
  inClusterHost?: string;
}

/**
 * The API server's name inside every cluster. In a pod the client connects to
 * `https://kubernetes.default.svc:$KUBERNETES_SERVICE_PORT` rather than to
 * `$KUBERNETES_SERVICE_HOST` (an IP that differs per cluster), so the compiled
 * binaries' network permission can name the one host they talk to.
 */
export const IN_CLUSTER_HOST = "kubernetes.default.svc";

/** Default directory of the mounted service-account credentials. */
export const SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";

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
    const host = options.inClusterHost ?? IN_CLUSTER_HOST;
    const port = Deno.env.get("KUBERNETES_SERVICE_PORT") ?? "443";
    const server = host.includes(":") ? `https://[${host}]:${port}` : `https://${host}:${port}`;
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

function inCluster(saDir: string): boolean {
  if (Deno.env.get("KUBERNETES_SERVICE_HOST") === undefined) return false;
  try {
    Deno.statSync(`${saDir}/token`);
    return true;
  } catch {
    return false;
  }
}

/** The HTTP status of a client-node error, if it carries one. */
export function statusCode(error: unknown): number | undefined {
  const e = error as {
    code?: unknown;
    statusCode?: unknown;
    response?: { httpStatusCode?: unknown };
  };
  for (const value of [e?.code, e?.statusCode, e?.response?.httpStatusCode]) {
    if (typeof value === "number") return value;
  }
  return undefined;
}

/** The API server's message of a client-node error (the Status body's `message`), else the error text. */
export function errorMessage(error: unknown): string {
  const body = (error as { body?: unknown })?.body;
  if (typeof body === "string") {
    try {
      const parsed = JSON.parse(body);
      if (typeof parsed?.message === "string") return parsed.message;
    } catch {
      return body;
    }
  }
  if (typeof (body as { message?: unknown })?.message === "string") {
    return (body as { message: string }).message;
  }
  return (error as Error)?.message ?? String(error);
}
