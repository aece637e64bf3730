/**
 * Helpers for tests on the local real node (src/cluster): the gate, the
 * images, pods through the API, and what the kernel says about a container.
 */
import { join } from "node:path";
import {
  api,
  buildLocalImages,
  type LocalCluster,
  localClusterMissing,
  startLocalCluster,
} from "../../src/cluster/mod.ts";
import { testbedMissing } from "./requirements.ts";

/** Why the local real node cannot run here (not root, missing packages, no Go), or null. */
export function realNodeMissing(): string | null {
  return localClusterMissing() ?? testbedMissing();
}

/**
 * Starts the local cluster with MBCAS's images imported, runs `fn`, and
 * stops it (also when `fn` throws). Progress goes to stderr.
 */
export async function withLocalCluster(
  fn: (cluster: LocalCluster) => Promise<void>,
  options: { cpuCfsQuota?: boolean } = {},
): Promise<void> {
  const log = (line: string) => console.error(`  [cluster] ${line}`);
  const imagesDir = await Deno.makeTempDir({ prefix: "mbcas-images-" });
  let cluster: LocalCluster | null = null;
  try {
    const images = await buildLocalImages(imagesDir, { log });
    cluster = await startLocalCluster({
      log,
      cpuCfsQuota: options.cpuCfsQuota,
      imageArchives: images.map((i) => i.archive),
    });
    await Deno.remove(imagesDir, { recursive: true });
    await fn(cluster);
  } finally {
    await cluster?.stop();
    await Deno.remove(imagesDir, { recursive: true }).catch(() => {});
  }
}

/** A pod of the lab image running a workload (`--kind ...`), Burstable with the given CPU. */
export function labPod(
  name: string,
  namespace: string,
  cpu: { request: string; limit: string },
  workloadArgs: string[],
  extra: { annotations?: Record<string, string>; command?: string[] } = {},
): Record<string, unknown> {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, namespace, annotations: extra.annotations ?? {} },
    spec: {
      terminationGracePeriodSeconds: 2,
      securityContext: {
        runAsNonRoot: true,
        runAsUser: 65532,
        runAsGroup: 65532,
        seccompProfile: { type: "RuntimeDefault" },
      },
      containers: [{
        name: "main",
        image: "mbcas-lab:local",
        imagePullPolicy: "Never",
        ...(extra.command ? { command: extra.command } : {}),
        args: workloadArgs,
        resources: {
          requests: { cpu: cpu.request, memory: "64Mi" },
          limits: { cpu: cpu.limit, memory: "256Mi" },
        },
        resizePolicy: [{ resourceName: "cpu", restartPolicy: "NotRequired" }],
        securityContext: {
          allowPrivilegeEscalation: false,
          readOnlyRootFilesystem: true,
          capabilities: { drop: ["ALL"] },
        },
        volumeMounts: [{ name: "results", mountPath: "/results" }, {
          name: "tmp",
          mountPath: "/tmp",
        }],
      }],
      volumes: [{ name: "results", emptyDir: {} }, { name: "tmp", emptyDir: {} }],
    },
  };
}

/** Creates a pod and waits until it runs; resolves to the pod. */
export async function runPod(
  cluster: LocalCluster,
  pod: Record<string, unknown>,
  timeoutMs = 90_000,
  // deno-lint-ignore no-explicit-any
): Promise<any> {
  const meta = pod.metadata as { name: string; namespace: string };
  await api(cluster.testbed, "POST", `/api/v1/namespaces/${meta.namespace}/pods`, pod);
  return await waitForPod(
    cluster,
    meta.namespace,
    meta.name,
    (p) => p.status?.phase === "Running",
    timeoutMs,
  );
}

/** Polls a pod until `ready(pod)`; fails with the pod's status after `timeoutMs`. */
export async function waitForPod(
  cluster: LocalCluster,
  namespace: string,
  name: string,
  // deno-lint-ignore no-explicit-any
  ready: (pod: any) => boolean,
  timeoutMs = 60_000,
  // deno-lint-ignore no-explicit-any
): Promise<any> {
  const deadline = performance.now() + timeoutMs;
  // deno-lint-ignore no-explicit-any
  let last: any = null;
  while (performance.now() < deadline) {
    last = await api(cluster.testbed, "GET", `/api/v1/namespaces/${namespace}/pods/${name}`)
      .catch(() => null);
    if (last !== null && ready(last)) return last;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(
    `pod ${namespace}/${name} not as expected after ${timeoutMs} ms: ${
      JSON.stringify(last?.status ?? null).slice(0, 2000)
    }`,
  );
}

/** The fields of a running pod that locate its containers' cgroups. */
export interface RunningPod {
  /** Its metadata. */
  metadata: { name: string; uid: string };
  /** Its status. */
  status: { qosClass: string; containerStatuses: { name: string; containerID: string }[] };
}

/** The cpu-hierarchy cgroup directory of a running pod's container (cgroupfs driver, v1 or v2). */
export function containerCgroup(pod: RunningPod, container = "main"): string {
  const status = pod.status.containerStatuses.find((c) => c.name === container)!;
  const id = String(status.containerID).replace(/^[a-z]+:\/\//, "");
  const qos = String(pod.status.qosClass).toLowerCase();
  const podDir = qos === "guaranteed"
    ? `kubepods/pod${pod.metadata.uid}`
    : `kubepods/${qos}/pod${pod.metadata.uid}`;
  for (const root of ["/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup"]) {
    const dir = join(root, podDir, id);
    try {
      Deno.statSync(dir);
      return dir;
    } catch {
      // another layout
    }
  }
  throw new Error(`no cgroup for container ${id} of pod ${pod.metadata.name}`);
}

/** The CFS limit the kernel enforces on a cgroup, millicores (null: unlimited). */
export function kernelLimitMillicores(cgroupDir: string): number | null {
  try {
    const quota = Number(Deno.readTextFileSync(join(cgroupDir, "cpu.cfs_quota_us")).trim());
    const period = Number(Deno.readTextFileSync(join(cgroupDir, "cpu.cfs_period_us")).trim());
    return quota < 0 ? null : Math.round((quota / period) * 1000);
  } catch {
    const [quota, period] = Deno.readTextFileSync(join(cgroupDir, "cpu.max")).trim().split(" ");
    return quota === "max" ? null : Math.round((Number(quota) / Number(period)) * 1000);
  }
}

/** The pids in a cgroup (its `cgroup.procs`). */
export function cgroupPids(cgroupDir: string): number[] {
  return Deno.readTextFileSync(join(cgroupDir, "cgroup.procs")).split("\n").filter((l) => l !== "")
    .map(Number);
}

/** Runs a command in the network namespace of `pid` (nsenter); resolves to its output. */
export async function inNetns(
  pid: number,
  command: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command("nsenter", {
    args: ["-t", String(pid), "-n", "--", ...command],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const d = new TextDecoder();
  return { code: out.code, stdout: d.decode(out.stdout), stderr: d.decode(out.stderr) };
}

/** One load step of an on/off workload, as the kernel saw it. */
export interface LoadStep {
  /** The kernel limit when the on phase began, millicores. */
  limitBefore: number;
  /** From the start of the on phase to the first raised quota in the kernel, ms; null: never raised. */
  spikeToQuotaMs: number | null;
  /** The highest kernel limit during the on phase, millicores. */
  peak: number;
  /** The lowest kernel limit during the off phase that followed, millicores. */
  lowestAfter: number;
}

/**
 * Follows the kernel limit of `cgroup` (polled every 20 ms) through
 * `steps` on/off cycles of a bursty workload started with `--epoch-ms
 * epochMs --on-s onS --off-s offS`: its on phases start at epochMs + k·(onS +
 * offS) s, on the machine's clock, which the pod shares.
 */
export async function measureLoadSteps(
  cgroup: string,
  phases: { epochMs: number; onS: number; offS: number; steps: number },
  onStep: (index: number, step: LoadStep) => void = () => {},
): Promise<LoadStep[]> {
  const limit = () => kernelLimitMillicores(cgroup) ?? Number.POSITIVE_INFINITY;
  const periodMs = (phases.onS + phases.offS) * 1000;
  const result: LoadStep[] = [];
  for (let k = 0; k < phases.steps; k++) {
    const onAt = phases.epochMs + k * periodMs;
    const offAt = onAt + phases.onS * 1000;
    const endAt = onAt + periodMs;
    while (Date.now() < onAt - 50) await new Promise((r) => setTimeout(r, 20));
    const limitBefore = limit();
    let spikeToQuotaMs: number | null = null;
    let peak = limitBefore;
    while (Date.now() < offAt) {
      const now = limit();
      if (spikeToQuotaMs === null && now > limitBefore) spikeToQuotaMs = Date.now() - onAt;
      peak = Math.max(peak, now);
      await new Promise((r) => setTimeout(r, 20));
    }
    let lowestAfter = limit();
    while (Date.now() < endAt - 100) {
      lowestAfter = Math.min(lowestAfter, limit());
      await new Promise((r) => setTimeout(r, 100));
    }
    const step = { limitBefore, spikeToQuotaMs, peak, lowestAfter };
    onStep(k, step);
    result.push(step);
  }
  return result;
}
