/**
 * Helpers for tests on the local real node (src/cluster): the gate, the
 * images, pods through the API, and what the kernel says about a container.
 */
import { join } from "node:path";
import {
  api,
  buildLocalImages,
  ensureNodeBinaries,
  LAB_IMAGE,
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
    await ensureNodeBinaries(log);
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
        image: LAB_IMAGE,
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
    signal: AbortSignal.timeout(30_000),
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

/** The node's components (by executable name) and lab workloads running on this machine. */
export function runningNodeProcesses(): string[] {
  const names = [
    "kubelet",
    "containerd",
    "containerd-shim-runc-v2",
    "kube-proxy",
    "kube-scheduler",
    "kube-apiserver",
    "kube-controller-manager",
    "etcd",
    "coredns",
  ];
  const found: string[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const argv = Deno.readTextFileSync(`/proc/${entry.name}/cmdline`).split("\0");
      const base = argv[0].split("/").pop() ?? "";
      if (names.includes(base) || argv.some((a) => a.endsWith("src/lab/workload.ts"))) {
        found.push(`${entry.name} ${argv.join(" ").trim()}`);
      }
    } catch {
      // gone
    }
  }
  return found;
}

/** On/off phases of a bursty workload: on at epochMs + k·(onS + offS) s, for onS s. */
export interface Phases {
  /** The workload's epoch, Unix ms. */
  epochMs: number;
  /** On phase, s. */
  onS: number;
  /** Off phase, s. */
  offS: number;
  /** How many on/off cycles to measure. */
  steps: number;
}

/**
 * In `namespace` (created, opted in, enforcing the `restricted` Pod Security
 * Standard): a batch job with two busy threads (it
 * wants more than the node has, so the market is contended and no idle
 * surplus lands on the service), and `web`, a service of priority 4 whose
 * load is on and off in `phases`; both request 100m and are limited to 200m.
 * Resolves to both running pods.
 */
export async function startLoadPods(
  cluster: LocalCluster,
  namespace: string,
  phases: Phases,
  // deno-lint-ignore no-explicit-any
): Promise<{ batch: any; web: any }> {
  await api(cluster.testbed, "POST", "/api/v1/namespaces", {
    metadata: {
      name: namespace,
      labels: { "mbcas.io/managed": "true", "pod-security.kubernetes.io/enforce": "restricted" },
    },
  });
  const cpu = { request: "100m", limit: "200m" };
  const out = ["--out", "/results/out.jsonl"];
  const batch = await runPod(
    cluster,
    labPod("batch", namespace, cpu, ["--kind", "batch", "--parallelism", "2", ...out]),
  );
  const web = await runPod(
    cluster,
    labPod("web", namespace, cpu, [
      "--kind",
      "bursty",
      "--epoch-ms",
      String(phases.epochMs),
      "--on-s",
      String(phases.onS),
      "--off-s",
      String(phases.offS),
      ...out,
    ], { annotations: { "mbcas.io/priority": "4" } }),
  );
  if (Date.now() > phases.epochMs - 5_000) {
    throw new Error(
      `the pods started too late: less than 5 s before the first load step (epoch ${phases.epochMs})`,
    );
  }
  return { batch, web };
}
