/**
 * What the client-node layer and the lean layer (src/k8s/lean/) share:
 * errors, error readers, deadlines and in-cluster names, with no run-time
 * dependency on client-node.
 *
 * @module
 */

/** The API connection could not be configured; the message names the file or variable. */
export class KubeConfigError extends Error {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "KubeConfigError";
  }
}

/** The default per-request timeout of the API clients, ms. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;

/**
 * An API request that did not complete within its timeout, or was not sent at
 * all because no time was left (timeout 0: e.g. a leader's write fence).
 */
export class RequestTimeoutError extends Error {
  /**
   * Creates the error: `GET /api/v1/pods timed out after 30000 ms`, or for a
   * timeout of 0 `PATCH /apis/… not sent: no time left before its deadline`.
   */
  constructor(
    /** HTTP method. */
    readonly method: string,
    /** URL path (no query). */
    readonly path: string,
    /** The timeout that passed, ms. */
    readonly timeoutMs: number,
  ) {
    super(
      timeoutMs === 0
        ? `${method} ${path} not sent: no time left before its deadline`
        : `${method} ${path} timed out after ${timeoutMs} ms`,
    );
    this.name = "RequestTimeoutError";
  }
}

/** The HTTP status of an API error (client-node's or the lean layer's), if it carries one. */
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

/** The API server's message of an API error (the Status body's `message`), else the error text. */
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

/**
 * `promise`, or a rejection with `message` once `ms` have passed (the timer is
 * always cleared); `ms` of `Infinity` sets no deadline.
 */
export function deadline<T>(promise: Promise<T>, ms: number, message: () => string): Promise<T> {
  if (ms === Infinity) return promise;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message())), ms);
  });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
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

/** Whether this process runs in a pod: KUBERNETES_SERVICE_HOST set and a token mounted in `saDir`. */
export function inCluster(saDir: string): boolean {
  if (Deno.env.get("KUBERNETES_SERVICE_HOST") === undefined) return false;
  try {
    Deno.statSync(`${saDir}/token`);
    return true;
  } catch {
    return false;
  }
}

/** The in-cluster API server URL: `host` (default {@link IN_CLUSTER_HOST}) and `$KUBERNETES_SERVICE_PORT`. */
export function inClusterServer(host: string = IN_CLUSTER_HOST): string {
  const port = Deno.env.get("KUBERNETES_SERVICE_PORT") ?? "443";
  return host.includes(":") ? `https://[${host}]:${port}` : `https://${host}:${port}`;
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
 * An object without `metadata.managedFields` (server-side apply's
 * bookkeeping, often the bulk of a small object), the rest as it is: the
 * informers' transform of both binaries. Idempotent.
 */
export function withoutManagedFields<T>(object: unknown): T {
  const o = object as { metadata?: { managedFields?: unknown } };
  if (o?.metadata?.managedFields === undefined) return object as T;
  const { managedFields: _, ...metadata } = o.metadata;
  return { ...o, metadata } as T;
}

/**
 * A Kubernetes MicroTime (Lease `renewTime`, `acquireTime`): RFC 3339 with
 * exactly six fractional digits, as the API server requires.
 */
export function microTime(date: Date): string {
  return date.toISOString().replace(/\.(\d{3})Z$/, ".$1000Z");
}

/** The URL path of a namespace's Leases (`coordination.k8s.io/v1`), or of one of them. */
export function leasePath(namespace: string, name?: string): string {
  const collection = `/apis/coordination.k8s.io/v1/namespaces/${
    encodeURIComponent(namespace)
  }/leases`;
  return name === undefined ? collection : `${collection}/${encodeURIComponent(name)}`;
}

/** New CPU values for one container; absent fields are left as they are. */
export interface ContainerResize {
  /** Container name. */
  name: string;
  /** New CPU limit (quantity). */
  cpuLimit?: string;
  /** New CPU request (quantity). */
  cpuRequest?: string;
}

/** The strategic-merge patch body for `pods/resize`: containers merge by name. */
export function resizePatch(containers: readonly ContainerResize[]): Record<string, unknown> {
  return {
    spec: {
      containers: containers.map((c) => {
        const resources: Record<string, Record<string, string>> = {};
        if (c.cpuLimit !== undefined) resources.limits = { cpu: c.cpuLimit };
        if (c.cpuRequest !== undefined) resources.requests = { cpu: c.cpuRequest };
        return { name: c.name, resources };
      }),
    },
  };
}

/** The content type of a strategic-merge patch (what `pods/resize` takes for containers merged by name). */
export const STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json";
