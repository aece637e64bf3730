/**
 * Where the lean client connects and how it authenticates: in-cluster
 * service-account credentials, or a kubeconfig file with a bearer token (or
 * token file) or a client certificate, always with the cluster CA trusted.
 * The same rules as `loadKubeConfig` (src/k8s/client.ts), without loading
 * client-node; a kubeconfig file is parsed as JSON when it is JSON, else
 * with js-yaml, imported only when a YAML one is read.
 *
 * @module
 */
import type { KubeConfig } from "@kubernetes/client-node";
import {
  type ConnectionOptions,
  IN_CLUSTER_HOST,
  inCluster,
  inClusterServer,
  KubeConfigError,
  SERVICE_ACCOUNT_DIR,
} from "../_shared.ts";

/** A connection to one API server as one user. */
export interface LeanConfig {
  /** The API server's URL, e.g. `https://kubernetes.default.svc:443`. */
  server: string;
  /** The cluster CA certificate (PEM); absent: the system's roots. */
  caCert?: string;
  /** A client certificate (PEM), with {@link LeanConfig.clientKey}. */
  clientCert?: string;
  /** The client certificate's key (PEM). */
  clientKey?: string;
  /** A bearer token. */
  token?: string;
  /** A file holding the bearer token, read again at most every minute (rotated service-account tokens). */
  tokenFile?: string;
}

/** A kubeconfig's YAML, as far as the lean client reads it. */
interface KubeconfigFile {
  "current-context"?: string;
  clusters?: { name?: string; cluster?: Record<string, unknown> }[];
  users?: { name?: string; user?: Record<string, unknown> }[];
  contexts?: { name?: string; context?: { cluster?: string; user?: string } }[];
}

function decodeBase64(data: string): string {
  return new TextDecoder().decode(Uint8Array.from(atob(data), (c) => c.charCodeAt(0)));
}

/** A PEM from inline base64 data or a file (relative to `dir`). */
function pemOf(
  data: unknown,
  file: unknown,
  dir: string,
  what: string,
  where: string,
): string | undefined {
  if (typeof data === "string" && data !== "") return decodeBase64(data);
  if (typeof file === "string" && file !== "") {
    const path = file.startsWith("/") ? file : `${dir}/${file}`;
    try {
      return Deno.readTextFileSync(path);
    } catch (error) {
      throw new KubeConfigError(
        `${where}: ${what} ${path} could not be read: ${(error as Error).message}`,
      );
    }
  }
  return undefined;
}

/**
 * Where to connect from a parsed kubeconfig (`path` for messages and relative
 * file names); `context` instead of the current one.
 *
 * @throws {KubeConfigError} naming the missing context, cluster or user, or an
 * authentication the lean client does not support (exec plugins, auth
 * providers, basic auth, `insecure-skip-tls-verify`).
 */
export function leanConfigFromDocument(
  file: unknown,
  path: string,
  context?: string,
): LeanConfig {
  const doc = (typeof file === "object" && file !== null ? file : {}) as KubeconfigFile;
  const where = `kubeconfig ${path}`;
  const name = context ?? doc["current-context"];
  const ctx = (doc.contexts ?? []).find((c) => c?.name === name)?.context;
  if (context !== undefined && ctx === undefined) {
    throw new KubeConfigError(`${where} has no context ${JSON.stringify(context)}`);
  }
  const cluster = (doc.clusters ?? []).find((c) => c?.name === ctx?.cluster)?.cluster;
  if (ctx === undefined || cluster === undefined || typeof cluster.server !== "string") {
    throw new KubeConfigError(`${where}: the current context names no cluster`);
  }
  if (cluster["insecure-skip-tls-verify"] === true) {
    throw new KubeConfigError(
      `${where}: insecure-skip-tls-verify is not supported by the lean API client (Deno's fetch always verifies TLS); give the cluster's CA instead`,
    );
  }
  const dir = path.includes("/") ? path.slice(0, path.lastIndexOf("/")) || "/" : ".";
  const user = (doc.users ?? []).find((u) => u?.name === ctx.user)?.user ?? {};
  for (const unsupported of ["exec", "auth-provider", "username"]) {
    if (user[unsupported] !== undefined) {
      throw new KubeConfigError(
        `${where}: user ${
          JSON.stringify(ctx.user)
        } authenticates with ${unsupported}, which the lean API client does not support; use a token, a token file or a client certificate`,
      );
    }
  }
  const tokenFile = user.tokenFile ?? user["token-file"];
  return {
    server: cluster.server.replace(/\/+$/, ""),
    caCert: pemOf(
      cluster["certificate-authority-data"],
      cluster["certificate-authority"],
      dir,
      "certificate-authority",
      where,
    ),
    clientCert: pemOf(
      user["client-certificate-data"],
      user["client-certificate"],
      dir,
      "client-certificate",
      where,
    ),
    clientKey: pemOf(user["client-key-data"], user["client-key"], dir, "client-key", where),
    ...(typeof user.token === "string" && user.token !== "" ? { token: user.token } : {}),
    ...(typeof tokenFile === "string" && tokenFile !== ""
      ? { tokenFile: tokenFile.startsWith("/") ? tokenFile : `${dir}/${tokenFile}` }
      : {}),
  };
}

/**
 * Loads where to connect. In a pod (KUBERNETES_SERVICE_HOST set and a token
 * mounted) it uses the service account and {@link IN_CLUSTER_HOST}, re-reading
 * the token file so rotated tokens are picked up; otherwise a kubeconfig file:
 * `options.kubeconfig`, else `$KUBECONFIG`, else `~/.kube/config`.
 *
 * @throws {KubeConfigError} naming the missing file or context, or what is unsupported.
 */
export async function loadLeanConfig(options: ConnectionOptions = {}): Promise<LeanConfig> {
  const saDir = options.serviceAccountDir ?? SERVICE_ACCOUNT_DIR;
  if (options.kubeconfig === undefined && inCluster(saDir)) {
    return {
      server: inClusterServer(options.inClusterHost ?? IN_CLUSTER_HOST),
      caCert: pemOf(undefined, `${saDir}/ca.crt`, "/", "CA", "in-cluster credentials"),
      tokenFile: `${saDir}/token`,
    };
  }
  const path = options.kubeconfig ?? Deno.env.get("KUBECONFIG") ??
    `${Deno.env.get("HOME") ?? ""}/.kube/config`;
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new KubeConfigError(
        `kubeconfig ${path} does not exist (set --kubeconfig or KUBECONFIG, or run in a pod with a service account)`,
      );
    }
    throw new KubeConfigError(`kubeconfig ${path} could not be read: ${(error as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = jsonDocument(text) ?? await yamlDocument(text);
  } catch (error) {
    throw new KubeConfigError(`kubeconfig ${path} could not be read: ${(error as Error).message}`);
  }
  return leanConfigFromDocument(parsed, path, options.context);
}

/**
 * A kubeconfig written as JSON (which is YAML too, and which kubectl reads),
 * parsed without a YAML parser; undefined for anything else.
 */
function jsonDocument(text: string): unknown {
  if (!text.trimStart().startsWith("{")) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined; // a YAML flow mapping, say: the YAML parser decides
  }
}

/** A YAML kubeconfig. js-yaml, the agent's only npm module, is loaded here and only here. */
async function yamlDocument(text: string): Promise<unknown> {
  const { load } = await import("js-yaml") as { load: (text: string) => unknown };
  return load(text);
}

/**
 * Where a client-node `KubeConfig` connects (its current cluster and user), so
 * code that holds one (tests, CLIs) can hand it to the lean client. Only its
 * methods are called: nothing of client-node is loaded here.
 *
 * @throws {KubeConfigError} when it has no current cluster or uses an
 * authentication the lean client does not support.
 */
export function leanConfigFromKubeConfig(kc: KubeConfig): LeanConfig {
  const cluster = kc.getCurrentCluster();
  if (cluster === null) throw new KubeConfigError("kubeconfig has no current cluster");
  if (cluster.skipTLSVerify) {
    throw new KubeConfigError(
      "insecure-skip-tls-verify is not supported by the lean API client; give the cluster's CA instead",
    );
  }
  const user = kc.getCurrentUser();
  const provider = user?.authProvider as
    | { name?: string; config?: Record<string, string> }
    | undefined;
  if (user?.exec !== undefined || (provider !== undefined && provider.name !== "tokenFile")) {
    throw new KubeConfigError(
      `user ${
        JSON.stringify(user?.name)
      } authenticates with an exec plugin or an auth provider, which the lean API client does not support`,
    );
  }
  const pem = (data: string | undefined, file: string | undefined) =>
    data ? decodeBase64(data) : file ? Deno.readTextFileSync(file) : undefined;
  const tokenFile = provider?.config?.tokenFile;
  return {
    server: cluster.server.replace(/\/+$/, ""),
    caCert: pem(cluster.caData, cluster.caFile),
    clientCert: pem(user?.certData, user?.certFile),
    clientKey: pem(user?.keyData, user?.keyFile),
    ...(user?.token ? { token: user.token } : {}),
    ...(tokenFile ? { tokenFile } : {}),
  };
}
