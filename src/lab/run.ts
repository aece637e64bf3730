/**
 * One lab run on the local real node (src/cluster): a real single-node
 * cluster (kubelet, containerd with runc, kube-proxy, CoreDNS) runs the
 * scenario's pods as containers of the lab image, under the policy under
 * test — static limits, no limits (the kubelet with CPU CFS quota off), a
 * VPA-style recommender, or MBCAS (the agent and the controller as pods,
 * deployed with `deno task deploy` from the shipped manifests). Every second
 * it reads each container's cgroup and records usage, throttling, the kernel
 * limit and, with MBCAS, demand, allocation and price, plus the latency
 * service's request latencies; every 100 ms it watches the kernel limits
 * for the resizes the real kubelet writes. Teardown stops the cluster and
 * restores the machine, also on errors and Ctrl-C.
 *
 * @module
 */
import * as k8s from "@kubernetes/client-node";
import { join } from "node:path";
import { GROUP, parseMillicores, PLURAL, type PodAllocationSpec, VERSION } from "../api/mod.ts";
import {
  bareContainerID,
  type CgroupLayout,
  computeSignals,
  type CpuSample,
  detectLayout,
  discover,
  limitMillicores,
  readCpuUsageNanos,
  readCpuWeight,
  readSample,
} from "../cgroup/mod.ts";
import { AGENT_OPTIONS, PRIORITY_ANNOTATION } from "../agent/mod.ts";
import { CONTROLLER_OPTIONS } from "../controller/mod.ts";
import { MANAGED_LABEL, TIER_ANNOTATION } from "../managed/mod.ts";
import { errorMessage, makeApiClient, patchPodResize } from "../k8s/mod.ts";
import {
  buildLocalImages,
  ensureNodeBinaries,
  LAB_IMAGE,
  type LocalCluster,
  localClusterMissing,
  startLocalCluster,
} from "../cluster/mod.ts";
import { type Scenario, workloadSeed } from "./scenario.ts";
import { agentWritesFromMetrics } from "./metrics.ts";
import type {
  LabAgentWrites,
  LabCpuAccount,
  LabLatencies,
  LabPolicy,
  LabPrice,
  LabRun,
  LabSample,
} from "./types.ts";
import {
  addSample,
  APPLY_EVERY_SECONDS,
  type CpuHistogram,
  emptyHistogram,
  recommendedLimit,
} from "./vpa.ts";

/** The namespace of the lab's pods (opted in to MBCAS). */
export const LAB_NAMESPACE = "lab";
/** The container of every lab pod. */
const CONTAINER = "app";
/** Where a lab pod writes its measurements (a hostPath of the run's results directory). */
const RESULTS_MOUNT = "/results";

/** What the live view shows each second. */
export interface LabSecond {
  /** Seconds since the run started. */
  t: number;
  /** This second's samples. */
  samples: LabSample[];
  /** The market price (MBCAS). */
  price: number | null;
  /** Kernel limit changes so far. */
  resizes: number;
}

/** Options of {@link runLab}. */
export interface LabOptions {
  /** The scenario. */
  scenario: Scenario;
  /** The policy under test. */
  policy: LabPolicy;
  /** Seed of the workloads' schedules. */
  seed: number;
  /** Stops the run early (Ctrl-C); the run so far is returned. */
  signal?: AbortSignal;
  /** Called once a second with that second's samples. */
  onSecond?: (second: LabSecond) => void;
  /** Progress lines. */
  log?: (line: string) => void;
  /**
   * Options for the agent and the controller, as their flags (default: none,
   * the shipped defaults); set on the DaemonSet and the Deployment as the
   * environment variables those flags read.
   */
  mbcasFlags?: { agent?: string[]; controller?: string[] };
}

/** A change of a container's CFS limit, as the kernel shows it. */
interface KernelResize {
  /** Wall-clock time, Unix milliseconds. */
  atMs: number;
  /** Pod name. */
  pod: string;
  /** Limit before, millicores (null: unlimited). */
  fromMillicores: number | null;
  /** Limit after, millicores (null: unlimited). */
  toMillicores: number | null;
}

/**
 * The lab node's allocatable CPU: the machine's, as the kubelet registers it
 * (no reservations). The control plane, agent and controller share the
 * machine with the pods, as system daemons share a node.
 */
export function labAllocatable(): number {
  return navigator.hardwareConcurrency * 1000;
}

/** Why a lab cannot run here (root, the node's Debian packages), or null. */
export function labMissing(): string | null {
  return localClusterMissing();
}

/** Runs the scenario under the policy and returns what it recorded. */
export async function runLab(options: LabOptions): Promise<LabRun> {
  const missing = labMissing();
  if (missing !== null) throw new Error(`the lab cannot run here: ${missing}`);
  const { scenario, policy, seed } = options;
  const log = options.log ?? (() => {});
  const startedAt = new Date().toISOString();
  const cleanups: (() => Promise<void> | void)[] = [];
  const cleanup = async () => {
    for (const step of cleanups.reverse()) {
      try {
        await step();
      } catch (error) {
        log(`teardown: ${(error as Error).message}`);
      }
    }
  };
  try {
    // Removed after the cluster has stopped (cleanups run in reverse): the
    // pods write into it until then.
    const resultsDir = await Deno.makeTempDir({ prefix: "mbcas-lab-results-" });
    cleanups.push(() => Deno.remove(resultsDir, { recursive: true }));
    // The pods write as uid 65532.
    await Deno.chmod(resultsDir, 0o777);
    const imagesDir = await Deno.makeTempDir({ prefix: "mbcas-lab-images-" });
    cleanups.push(() => Deno.remove(imagesDir, { recursive: true }).catch(() => {}));
    // The node's binaries first: the pause image is built from one of them.
    await ensureNodeBinaries(log);
    const images = await buildLocalImages(imagesDir, { log });
    log(
      `starting the local cluster${policy === "none" ? " (kubelet with CPU CFS quota off)" : ""}`,
    );
    const cluster = await startLocalCluster({
      log,
      cpuCfsQuota: policy !== "none",
      imageArchives: images.map((i) => i.archive),
    });
    cleanups.push(() => cluster.stop());
    await Deno.remove(imagesDir, { recursive: true });
    const admin = new k8s.KubeConfig();
    admin.loadFromFile(cluster.kubeconfig);
    const core = makeApiClient(admin, k8s.CoreV1Api);
    const custom = makeApiClient(admin, k8s.CustomObjectsApi);

    if (policy === "mbcas") {
      await deployMbcas(cluster, options.mbcasFlags ?? {}, log);
      log(`deployed MBCAS (deno task deploy, ${LAB_OVERLAY})`);
    }
    await core.createNamespace({
      body: { metadata: { name: LAB_NAMESPACE, labels: { [MANAGED_LABEL]: "true" } } },
    });
    // Everything starts before the epoch; schedules and recording count from it.
    const epochMs = Date.now() + 15_000;
    for (const pod of scenario.pods) {
      await core.createNamespacedPod({
        namespace: LAB_NAMESPACE,
        body: podManifest(pod, { epochMs, seed, resultsDir }),
      });
    }
    const layout = detectLayout("/sys/fs/cgroup");
    const paths = await waitRunning(core, layout, scenario.pods.length);
    if (Date.now() > epochMs) {
      throw new Error(
        `the lab's pods started ${Date.now() - epochMs} ms after the scenario's epoch; ` +
          "the machine is too busy for a fair run",
      );
    }
    log(
      `${scenario.pods.length} pods running on ${cluster.plan.nodeName}; recording from the epoch`,
    );

    const kernelResizes: KernelResize[] = [];
    const watcher = watchKernelLimits(layout, paths, (r) => kernelResizes.push(r));
    cleanups.push(() => watcher.stop());
    const agentUrl = policy === "mbcas" ? await agentMetricsUrl(core) : null;
    const mbcasCgroups = policy === "mbcas" ? await mbcasPodCgroups(core, layout) : [];
    if (mbcasCgroups === null) log("MBCAS's pod cgroups not all found: no CPU account");
    const podCgroups = mbcasCgroups === null ? null : {
      scenario: [...paths.values()].map((p) => p.slice(0, p.lastIndexOf("/"))),
      mbcas: mbcasCgroups,
    };
    let firstAccount: CpuReading | null = null;
    let lastAccount: CpuReading | null = null;
    // The published allocations as last listed, and the agent's write count then.
    let market = new Map<string, { allocation: number | null; guarantee: number | null }>();
    let marketAtWrites: number | null = null;

    const vpa = policy === "vpa" ? new Map<string, CpuHistogram>() : null;
    const previous = new Map<string, CpuSample>();
    const samples: LabSample[] = [];
    const prices: LabPrice[] = [];
    const latencies: LabLatencies[] = [];
    const tails = new Map<string, JsonLinesTail>();
    cleanups.push(() => tails.forEach((tail) => tail.close()));
    const requests = new Map(scenario.pods.map((p) => [p.name, p.requestMillicores]));
    let durationSeconds = 0;
    // The agent's write counters at the first and the latest reading of the run.
    let firstWrites: WritesReading | null = null;
    let lastWrites: WritesReading | null = null;

    for (let second = 0; second <= scenario.durationSeconds; second++) {
      const wait = epochMs + second * 1000 - Date.now();
      if (wait > 0) await sleep(wait, options.signal);
      if (options.signal?.aborted) break;
      const agent = second > 0 && agentUrl !== null ? await readAgentMetrics(agentUrl) : null;
      // The published allocations change only when the agent writes one: list
      // them again only then (or when its counters could not be read), not
      // every second. The listing is the lab's load on the API server, not
      // MBCAS's, and only the MBCAS runs would pay for it.
      const writes = agent === null ? null : agent.writes.creates + agent.writes.updates;
      if (second > 0 && policy === "mbcas" && (writes === null || writes !== marketAtWrites)) {
        market = await readMarket(custom);
        marketAtWrites = market.size === 0 ? null : writes;
      }
      const now: LabSample[] = [];
      for (const pod of scenario.pods) {
        const path = paths.get(pod.name);
        if (path === undefined) continue;
        const read = readSample(layout, path, performance.now());
        if (read.status !== "ok") continue;
        const before = previous.get(pod.name);
        previous.set(pod.name, read.sample);
        if (before === undefined) continue;
        const signals = computeSignals(before, read.sample);
        if (signals.status !== "ok") continue;
        const s = signals.signals;
        const pa = market.get(pod.name);
        now.push({
          t: second,
          pod: pod.name,
          usageMillicores: Math.round(s.usageMillicores),
          throttledRatio: s.throttledRatio,
          throttledMillicores: Math.round(s.throttledMillicores),
          demandMillicores: agent?.demand.get(pod.name) ?? null,
          allocationMillicores: pa?.allocation ?? null,
          guaranteeMillicores: pa?.guarantee ?? null,
          limitMillicores: s.limitMillicores === null ? null : Math.round(s.limitMillicores),
          cpuWeight: podWeight(layout, path),
        });
        if (vpa !== null) {
          vpa.set(
            pod.name,
            addSample(
              vpa.get(pod.name) ?? emptyHistogram(),
              s.usageMillicores,
              pod.requestMillicores,
              second,
            ),
          );
        }
      }
      for (const pod of scenario.pods.filter((p) => p.workload === "latency")) {
        const file = join(resultsDir, `${pod.name}.jsonl`);
        let tail = tails.get(file);
        if (tail === undefined) tails.set(file, tail = new JsonLinesTail(file));
        for (const line of tail.read()) {
          const t = Math.round((line.t - epochMs) / 1000);
          if (t >= 1 && Array.isArray(line.latenciesMs)) {
            latencies.push({ t, pod: pod.name, latenciesMs: line.latenciesMs });
          }
        }
      }
      // The account's two readings: at the first recorded second and at the last.
      if (
        podCgroups !== null &&
        (second === 1 || (second === scenario.durationSeconds && firstAccount !== null))
      ) {
        const reading = readCpu(layout, podCgroups, second);
        if (second === 1) firstAccount = reading;
        else lastAccount = reading;
      }
      if (agent !== null && second > 0) {
        lastWrites = { t: second, writes: agent.writes };
        firstWrites ??= lastWrites;
      }
      const price = agent?.price ?? null;
      if (second > 0) {
        samples.push(...now);
        if (policy === "mbcas") prices.push({ t: second, price });
        durationSeconds = second;
        options.onSecond?.({ t: second, samples: now, price, resizes: kernelResizes.length });
      }
      if (vpa !== null && second > 0 && second % APPLY_EVERY_SECONDS === 0) {
        await applyVpa(core, vpa, requests, log);
      }
    }
    const pods = scenario.pods.map((p) => ({
      name: p.name,
      workload: p.workload,
      requestMillicores: p.requestMillicores,
      limitMillicores: p.limitMillicores,
      tier: p.tier ?? "protected" as const,
    }));
    return {
      scenario: scenario.name,
      policy,
      seed,
      startedAt,
      durationSeconds,
      nodeCapacityMillicores: scenario.allocatableMillicores,
      pods,
      samples,
      prices,
      latencies,
      resizes: kernelResizes
        .map((r) => ({
          t: Math.round((r.atMs - epochMs) / 100) / 10,
          pod: r.pod,
          fromMillicores: r.fromMillicores,
          toMillicores: r.toMillicores,
        }))
        .filter((r) => r.t >= 0 && r.t <= durationSeconds),
      ...(firstWrites !== null && lastWrites !== null && lastWrites.t > firstWrites.t
        ? { agentWrites: writesBetween(firstWrites, lastWrites) }
        : {}),
      ...(firstAccount !== null && lastAccount !== null && lastAccount.t > firstAccount.t
        ? { cpuAccount: cpuBetween(firstAccount, lastAccount) }
        : {}),
    };
  } finally {
    log("tearing down");
    await cleanup();
  }
}

/**
 * The pod object of a scenario pod: the lab image running its workload, one
 * container, Burstable, CPU resizable in place, writing its measurements to
 * the run's results directory.
 */
function podManifest(
  pod: Scenario["pods"][number],
  run: { epochMs: number; seed: number; resultsDir: string },
): k8s.V1Pod {
  return {
    metadata: {
      name: pod.name,
      namespace: LAB_NAMESPACE,
      annotations: {
        ...(pod.priority === undefined ? {} : { [PRIORITY_ANNOTATION]: String(pod.priority) }),
        ...(pod.tier === undefined ? {} : { [TIER_ANNOTATION]: pod.tier }),
      },
    },
    spec: {
      terminationGracePeriodSeconds: 2,
      enableServiceLinks: false,
      securityContext: { runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532 },
      containers: [{
        name: CONTAINER,
        image: LAB_IMAGE,
        imagePullPolicy: "Never",
        args: [
          "--kind",
          pod.workload,
          "--out",
          `${RESULTS_MOUNT}/${pod.name}.jsonl`,
          "--epoch-ms",
          String(run.epochMs),
          "--seed",
          String(workloadSeed(run.seed, pod.name)),
          ...pod.args,
        ],
        resources: {
          requests: { cpu: `${pod.requestMillicores}m`, memory: "64Mi" },
          limits: { cpu: `${pod.limitMillicores}m`, memory: "512Mi" },
        },
        resizePolicy: [
          { resourceName: "cpu", restartPolicy: "NotRequired" },
          { resourceName: "memory", restartPolicy: "NotRequired" },
        ],
        securityContext: { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true },
        volumeMounts: [{ name: "results", mountPath: RESULTS_MOUNT }],
      }],
      volumes: [{ name: "results", hostPath: { path: run.resultsDir, type: "Directory" } }],
    },
  };
}

/** Waits until every lab pod runs; resolves to each pod's container cgroup (relative path). */
async function waitRunning(
  core: k8s.CoreV1Api,
  layout: CgroupLayout,
  count: number,
): Promise<Map<string, string>> {
  const deadline = Date.now() + 90_000;
  while (Date.now() < deadline) {
    const list = await core.listNamespacedPod({ namespace: LAB_NAMESPACE });
    const running = list.items.filter((p) => p.status?.phase === "Running");
    if (running.length === count) {
      const cgroups = new Map(
        discover(layout).pods.flatMap((p) => p.containers).map((c) => [c.id, c.relativePath]),
      );
      const paths = new Map<string, string>();
      for (const pod of running) {
        const id = pod.status?.containerStatuses?.[0]?.containerID;
        const path = id === undefined ? undefined : cgroups.get(bareContainerID(id));
        if (path !== undefined) paths.set(pod.metadata!.name!, path);
      }
      if (paths.size === count) return paths;
    }
    await sleep(200);
  }
  throw new Error(`the lab pods did not all start within 90 s`);
}

/**
 * What the lab deploys: the local overlay (images on the node, never pulled)
 * with elastic pods yielding in the kernel (components/elastic-yield).
 */
export const LAB_OVERLAY = "deploy/overlays/lab";

/** The CPU weight of the pod cgroup above a container's, or null when unreadable. */
function podWeight(layout: CgroupLayout, containerPath: string): number | null {
  const weight = readCpuWeight(layout, containerPath.slice(0, containerPath.lastIndexOf("/")));
  return weight.status === "ok" ? weight.value : null;
}

/**
 * Reads every container's CFS limit every 100 ms and reports each change:
 * the kernel's view of the resizes the kubelet carries out.
 */
function watchKernelLimits(
  layout: CgroupLayout,
  paths: Map<string, string>,
  onResize: (resize: KernelResize) => void,
): { stop(): void } {
  const last = new Map<string, number | null>();
  const read = () => {
    for (const [pod, path] of paths) {
      const sample = readSample(layout, path, performance.now());
      if (sample.status !== "ok") continue;
      const raw = limitMillicores(sample.sample);
      const limit = raw === null ? null : Math.round(raw);
      if (last.has(pod) && last.get(pod) !== limit) {
        onResize({ atMs: Date.now(), pod, fromMillicores: last.get(pod)!, toMillicores: limit });
      }
      last.set(pod, limit);
    }
  };
  read();
  const timer = setInterval(read, 100);
  return { stop: () => clearInterval(timer) };
}

/**
 * Deploys MBCAS onto the local cluster as a user would (`deno task deploy`
 * with `overlay`, by default {@link LAB_OVERLAY}; the images are on the node already) and sets the
 * given flags as the environment variables the agent and the controller
 * read (a rolling update of each, waited for).
 */
export async function deployMbcas(
  cluster: LocalCluster,
  flags: { agent?: string[]; controller?: string[] },
  log: (line: string) => void,
  overlay = LAB_OVERLAY,
): Promise<void> {
  const env = { PATH: `${cluster.bin}:${Deno.env.get("PATH") ?? ""}`, NO_COLOR: "1" };
  const run = async (command: string, args: string[]) => {
    const out = await new Deno.Command(command, {
      args,
      cwd: new URL("../../", import.meta.url).pathname,
      env,
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!out.success) {
      const d = new TextDecoder();
      throw new Error(
        `${command} ${args.join(" ")} failed:\n${d.decode(out.stdout)}${d.decode(out.stderr)}`,
      );
    }
  };
  await run(Deno.execPath(), [
    "task",
    "deploy",
    "--kubeconfig",
    cluster.kubeconfig,
    "--overlay",
    overlay,
    "--skip-images",
  ]);
  const kubectl = join(cluster.bin, "kubectl");
  const workloads = [
    ["daemonset/mbcas-agent", flagsToEnv(flags.agent ?? [], AGENT_OPTIONS)],
    ["deployment/mbcas-controller", flagsToEnv(flags.controller ?? [], CONTROLLER_OPTIONS)],
  ] as const;
  for (const [workload, vars] of workloads) {
    if (vars.length === 0) continue;
    log(`${workload}: ${vars.join(" ")}`);
    await run(kubectl, [
      "--kubeconfig",
      cluster.kubeconfig,
      "-n",
      "mbcas-system",
      "set",
      "env",
      workload,
      ...vars,
    ]);
    await run(kubectl, [
      "--kubeconfig",
      cluster.kubeconfig,
      "-n",
      "mbcas-system",
      "rollout",
      "status",
      workload,
      "--timeout=180s",
    ]);
  }
}

/** `--name value` pairs as `ENV=value`, with the environment variables the options table names. */
export function flagsToEnv(
  flags: readonly string[],
  table: Record<string, { env?: string }>,
): string[] {
  const out: string[] = [];
  for (let i = 0; i < flags.length; i += 2) {
    const name = flags[i].replace(/^--/, "");
    const env = table[name]?.env;
    if (env === undefined || flags[i + 1] === undefined) {
      throw new Error(`lab: ${flags[i]} is not an option with a value and an environment variable`);
    }
    out.push(`${env}=${flags[i + 1]}`);
  }
  return out;
}

/** The agent's /metrics URL (its pod's address on the node's bridge). */
async function agentMetricsUrl(core: k8s.CoreV1Api): Promise<string> {
  const list = await core.listNamespacedPod({
    namespace: "mbcas-system",
    labelSelector: "app.kubernetes.io/component=agent",
  });
  const pod = list.items.find((p) =>
    p.status?.phase === "Running" && p.metadata?.deletionTimestamp === undefined
  );
  if (pod?.status?.podIP === undefined) throw new Error("no running agent pod");
  return `http://${pod.status.podIP}:${AGENT_OPTIONS["metrics-port"].default}/metrics`;
}

/** The published limit and guarantee of each pod (its PodAllocation's first container), millicores. */
async function readMarket(
  custom: k8s.CustomObjectsApi,
): Promise<Map<string, { allocation: number | null; guarantee: number | null }>> {
  const out = new Map<string, { allocation: number | null; guarantee: number | null }>();
  try {
    const list = await custom.listNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: LAB_NAMESPACE,
      plural: PLURAL,
    }) as { items: { spec: PodAllocationSpec }[] };
    for (const pa of list.items) {
      const limit = pa.spec.containers[0]?.cpuLimit;
      const guarantee = pa.spec.containers[0]?.cpuGuarantee;
      out.set(pa.spec.podName, {
        allocation: limit === undefined ? null : parseMillicores(limit),
        guarantee: guarantee === undefined ? null : parseMillicores(guarantee),
      });
    }
  } catch {
    // a missed second stays empty
  }
  return out;
}

/**
 * The pod cgroups of MBCAS's running pods (agent and controller replicas),
 * relative paths; null when some pod's cgroup is not found.
 */
async function mbcasPodCgroups(
  core: k8s.CoreV1Api,
  layout: CgroupLayout,
): Promise<string[] | null> {
  const list = await core.listNamespacedPod({ namespace: "mbcas-system" });
  const uids = new Set(
    list.items.filter((p) => p.status?.phase === "Running").map((p) => p.metadata?.uid),
  );
  const found = discover(layout).pods.filter((p) => uids.has(p.podUID));
  return found.length === uids.size ? found.map((p) => p.relativePath) : null;
}

/** Cumulative CPU counters read at second `t` of a run, nanoseconds. */
interface CpuReading {
  t: number;
  machineNs: number;
  scenarioNs: number;
  mbcasNs: number;
  harnessNs: number;
  /** Every process outside the pods' cgroups but this one, by pid: its command and CPU. */
  processes: Map<number, { command: string; ns: number }>;
}

/** The CPU of every process outside the kubelet's pod cgroups, but this one, by pid. */
function readProcesses(): Map<number, { command: string; ns: number }> {
  const out = new Map<number, { command: string; ns: number }>();
  for (const entry of Deno.readDirSync("/proc")) {
    const pid = Number(entry.name);
    if (!Number.isInteger(pid) || pid === Deno.pid) continue;
    try {
      if (Deno.readTextFileSync(`/proc/${pid}/cgroup`).includes("kubepods")) continue;
      out.set(pid, processCpu(Deno.readTextFileSync(`/proc/${pid}/stat`)));
    } catch {
      // the process is gone
    }
  }
  return out;
}

/** A process's command and CPU time (utime + stime) from its `/proc/<pid>/stat` line. */
function processCpu(stat: string): { command: string; ns: number } {
  const open = stat.indexOf("(");
  const close = stat.lastIndexOf(")"); // the command may hold ")" itself
  const fields = stat.slice(close + 2).split(" "); // fields 3 on: utime and stime are 14 and 15
  return {
    command: stat.slice(open + 1, close),
    ns: (Number(fields[11]) + Number(fields[12])) * TICK_NS,
  };
}

/** Reads the machine's, the pod cgroups' and this process's CPU counters. */
function readCpu(
  layout: CgroupLayout,
  cgroups: { scenario: string[]; mbcas: string[] },
  t: number,
): CpuReading {
  const sum = (paths: string[]) =>
    paths.reduce((total, p) => total + (readCpuUsageNanos(layout, p) ?? 0), 0);
  // /proc/stat's first line: user nice system idle iowait irq softirq steal …, in USER_HZ.
  const cpu = Deno.readTextFileSync("/proc/stat").split("\n")[0].trim().split(/\s+/).slice(1, 9)
    .map(Number);
  const busyTicks = cpu.reduce((a, b) => a + b, 0) - cpu[3] - cpu[4];
  return {
    t,
    machineNs: busyTicks * TICK_NS,
    scenarioNs: sum(cgroups.scenario),
    mbcasNs: sum(cgroups.mbcas),
    harnessNs: processCpu(Deno.readTextFileSync("/proc/self/stat")).ns,
    processes: readProcesses(),
  };
}

/** Nanoseconds per USER_HZ tick of /proc (100 Hz on Linux). */
const TICK_NS = 10_000_000;

/** The CPU-seconds each part used between two readings. */
function cpuBetween(first: CpuReading, last: CpuReading): LabCpuAccount {
  const seconds = (a: number, b: number) => Math.round((b - a) / 1e7) / 100;
  return {
    seconds: last.t - first.t,
    machineCpuSeconds: seconds(first.machineNs, last.machineNs),
    scenarioPodsCpuSeconds: seconds(first.scenarioNs, last.scenarioNs),
    mbcasPodsCpuSeconds: seconds(first.mbcasNs, last.mbcasNs),
    harnessCpuSeconds: seconds(first.harnessNs, last.harnessNs),
    restByCommand: restByCommand(first.processes, last.processes),
  };
}

/**
 * The CPU-seconds of the processes outside the pods between two readings, by
 * command: a process seen only at the last reading started within and counts
 * whole; one gone by then is not counted (it could not be read).
 */
function restByCommand(
  first: Map<number, { command: string; ns: number }>,
  last: Map<number, { command: string; ns: number }>,
): Record<string, number> {
  const byCommand = new Map<string, number>();
  for (const [pid, { command, ns }] of last) {
    const before = first.get(pid);
    const used = before !== undefined && before.command === command ? ns - before.ns : ns;
    byCommand.set(command, (byCommand.get(command) ?? 0) + used);
  }
  return Object.fromEntries(
    [...byCommand].filter(([, ns]) => ns > 0).sort((a, b) => b[1] - a[1])
      .map(([command, ns]) => [command, Math.round(ns / 1e7) / 100]),
  );
}

/** The agent's write counters as read at second `t` of a run. */
interface WritesReading {
  t: number;
  writes: ReturnType<typeof agentWritesFromMetrics>;
}

/** The agent's writes between two readings of its counters. */
function writesBetween(first: WritesReading, last: WritesReading): LabAgentWrites {
  return {
    seconds: last.t - first.t,
    creates: last.writes.creates - first.writes.creates,
    updates: last.writes.updates - first.writes.updates,
    heartbeats: last.writes.heartbeats - first.writes.heartbeats,
  };
}

/**
 * The agent's latest demand estimate per pod and the node's price, from its
 * /metrics (the agent updates them at every clearing; a PodAllocation's
 * evidence is only as fresh as its last publish), and its write counters.
 */
async function readAgentMetrics(
  url: string,
): Promise<
  {
    demand: Map<string, number>;
    price: number | null;
    writes: ReturnType<typeof agentWritesFromMetrics>;
  } | null
> {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(900) });
    const text = await response.text();
    const demand = new Map<string, number>();
    let price: number | null = null;
    for (const line of text.split("\n")) {
      const d = /^mbcas_agent_container_demand_millicores\{[^}]*pod="([^"]+)"[^}]*\} (\S+)$/.exec(
        line,
      );
      if (d !== null && d[1] !== undefined) demand.set(d[1], Number(d[2]));
      const p = /^mbcas_agent_node_price (\S+)$/.exec(line);
      if (p !== null) price = Number.isFinite(Number(p[1])) ? Number(p[1]) : null;
    }
    return { demand, price, writes: agentWritesFromMetrics(text) };
  } catch {
    return null; // not listening yet
  }
}

/**
 * Sets each pod's limit to its VPA-style recommendation where it differs.
 * A limit equal to the request would turn the lab's pods (memory request =
 * limit) Guaranteed, which the API refuses; like MBCAS's QoS guard it is
 * then 1m above the request.
 */
async function applyVpa(
  core: k8s.CoreV1Api,
  histograms: Map<string, CpuHistogram>,
  requests: Map<string, number>,
  log: (line: string) => void,
): Promise<void> {
  for (const [name, histogram] of histograms) {
    const request = requests.get(name) ?? 0;
    const recommended = recommendedLimit(histogram, request);
    if (recommended === null) continue;
    const limit = Math.max(recommended, request + 1);
    try {
      const pod = await core.readNamespacedPod({ name, namespace: LAB_NAMESPACE });
      const current = parseMillicores(pod.spec?.containers[0].resources?.limits?.cpu ?? "0");
      if (current === limit) continue;
      await patchPodResize(core, LAB_NAMESPACE, name, [{ name: CONTAINER, cpuLimit: `${limit}m` }]);
    } catch (error) {
      log(`vpa: resizing ${name} to ${limit}m failed: ${errorMessage(error)}`);
    }
  }
}

/** A workload's per-second line (the fields the lab reads). */
interface WorkloadLine {
  t: number;
  latenciesMs?: number[];
}

/** Follows a growing JSON-lines file: each read returns the complete lines added since the last. */
class JsonLinesTail {
  #file: Deno.FsFile | null = null;
  #rest = "";
  readonly #buffer = new Uint8Array(64 * 1024);
  readonly #decoder = new TextDecoder();

  constructor(readonly path: string) {}

  /** The complete lines appended since the last call (a partial last line waits). */
  read(): WorkloadLine[] {
    try {
      this.#file ??= Deno.openSync(this.path);
    } catch {
      return []; // not created yet
    }
    let text = this.#rest;
    for (let n = this.#file.readSync(this.#buffer); n; n = this.#file.readSync(this.#buffer)) {
      text += this.#decoder.decode(this.#buffer.subarray(0, n), { stream: true });
    }
    const end = text.lastIndexOf("\n") + 1;
    this.#rest = text.slice(end);
    return text.slice(0, end).split("\n").filter((l) => l !== "").flatMap((l) => {
      try {
        return [JSON.parse(l)];
      } catch {
        return [];
      }
    });
  }

  /** Closes the file. */
  close(): void {
    this.#file?.close();
    this.#file = null;
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}
