import * as k8s from "@kubernetes/client-node";

/** A KubeConfig loaded from a file. */
export function kubeConfig(file: string): k8s.KubeConfig {
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(file);
  return kc;
}

/** Polls `probe` until it returns a value other than undefined/false, or fails after `timeoutMs`. */
export async function eventually<T>(
  what: string,
  probe: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 15_000,
): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  let last: unknown;
  while (performance.now() < deadline) {
    try {
      const value = await probe();
      if (value !== undefined && value !== false) return value as T;
    } catch (error) {
      last = error;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${String(last).slice(0, 300)}` : ""}`);
}

/** A Burstable pod bound to `nodeName` (no scheduler needed), one container per entry. */
export function burstablePod(
  namespace: string,
  name: string,
  nodeName: string,
  containers: {
    name: string;
    cpuRequest: string;
    cpuLimit: string;
    memory?: string;
    restart?: boolean;
  }[],
): k8s.V1Pod {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, namespace },
    spec: {
      nodeName,
      containers: containers.map((c) => ({
        name: c.name,
        image: "registry.k8s.io/pause:3.10",
        resources: {
          requests: { cpu: c.cpuRequest, memory: c.memory ?? "64Mi" },
          limits: { cpu: c.cpuLimit, memory: c.memory ?? "64Mi" },
        },
        resizePolicy: [{
          resourceName: "cpu",
          restartPolicy: c.restart ? "RestartContainer" : "NotRequired",
        }],
      })),
    },
  };
}

/** A Guaranteed pod bound to `nodeName`: one container `app`, requests = limits (`cpu`, 64Mi). */
export function guaranteedPod(
  namespace: string,
  name: string,
  nodeName: string,
  cpu: string,
): k8s.V1Pod {
  const resources = { cpu, memory: "64Mi" };
  return {
    metadata: { name, namespace },
    spec: {
      nodeName,
      containers: [{
        name: "app",
        image: "pause",
        resources: { requests: { ...resources }, limits: { ...resources } },
      }],
    },
  };
}

/** The HTTP status and server message of a failed client-node call. */
export async function rejection(
  call: Promise<unknown>,
): Promise<{ code: number; message: string }> {
  try {
    await call;
  } catch (error) {
    const e = error as { code?: number; body?: unknown };
    let message = String(e.body ?? error);
    try {
      message = JSON.parse(String(e.body)).message ?? message;
    } catch {
      // not JSON
    }
    return { code: e.code ?? 0, message };
  }
  throw new Error("expected the call to be rejected, but it succeeded");
}
