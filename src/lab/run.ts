/**
 * One lab run: the test bed's API server, the lab kubelet running the
 * scenario's pods as real processes in real cgroups, and the policy under
 * test — static limits, no limits (CFS shares only), a VPA-style
 * recommender, or MBCAS (the real agent and controller as subprocesses,
 * started as their tasks start them). Every second it records each pod's
 * usage, throttling, kernel limit and, with MBCAS, demand, allocation and
 * price, plus the latency service's request latencies. Teardown kills every
 * process and removes every cgroup and mount it made, also on errors and
 * Ctrl-C.
 *
 * @module
 */
import * as k8s from "@kubernetes/client-node";
import { join } from "node:path";
import { GROUP, parseMillicores, PLURAL, type PodAllocationSpec, VERSION } from "../api/mod.ts";
import { computeSignals, type CpuSample, detectLayout, readSample } from "../cgroup/mod.ts";
import { PRIORITY_ANNOTATION } from "../agent/mod.ts";
import { MANAGED_LABEL } from "../controller/mod.ts";
import { errorMessage, makeApiClient, patchPodResize } from "../k8s/mod.ts";
import {
  applyManifests,
  freePort,
  MANIFESTS,
  startTestbed,
  terminate,
  type Testbed,
  waitForCrd,
} from "../testbed/mod.ts";
import { DENO_JSON, taskRun } from "./_tasks.ts";
import { LabCgroups, labCgroupsMissing } from "./cgroups.ts";
import {
  type KernelResize,
  LabKubelet,
  WORKLOAD_ANNOTATION,
  WORKLOAD_ARGS_ANNOTATION,
} from "./kubelet.ts";
import type { Scenario } from "./scenario.ts";
import type { LabLatencies, LabPolicy, LabPrice, LabRun, LabSample } from "./types.ts";
import {
  addSample,
  APPLY_EVERY_SECONDS,
  type CpuHistogram,
  emptyHistogram,
  recommendedLimit,
} from "./vpa.ts";

/** The namespace of the lab's pods (opted in to MBCAS). */
export const LAB_NAMESPACE = "lab";
/** The lab node's name. */
export const LAB_NODE = "lab-node";

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
  /** Extra flags for the agent and the controller (default: none, the shipped defaults). */
  mbcasFlags?: { agent?: string[]; controller?: string[] };
}

/**
 * The lab node's allocatable CPU: the machine's, as a kubelet without
 * reservations registers it. The lab's control plane, agent and controller
 * share the machine with the pods, as system daemons share a node.
 */
export function labAllocatable(): number {
  return navigator.hardwareConcurrency * 1000;
}

/** Why a lab cannot run here (root, cgroups), or null. */
export function labMissing(): string | null {
  return labCgroupsMissing();
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
    log("starting the test bed (etcd, kube-apiserver, kube-controller-manager)");
    const testbed = await startTestbed({ log });
    cleanups.push(() => testbed.stop());
    const admin = new k8s.KubeConfig();
    admin.loadFromFile(testbed.identities.admin.kubeconfig);
    const core = makeApiClient(admin, k8s.CoreV1Api);
    const custom = makeApiClient(admin, k8s.CustomObjectsApi);
    await applyManifests(admin, [MANIFESTS.crd, ...MANIFESTS.rbac]);
    await waitForCrd(admin, `${PLURAL}.${GROUP}`);
    await core.createNamespace({
      body: { metadata: { name: LAB_NAMESPACE, labels: { [MANAGED_LABEL]: "true" } } },
    });

    const cgroups = new LabCgroups();
    cleanups.push(async () => {
      await cgroups.cleanup();
      const left = cgroups.leftovers();
      if (left.length > 0) throw new Error(`cgroups left behind in ${left.join(", ")}`);
    });
    const cgroupRoot = cgroups.bindMount();
    const resultsDir = await Deno.makeTempDir({ prefix: "mbcas-lab-results-" });
    cleanups.push(() => Deno.remove(resultsDir, { recursive: true }));
    log(`cgroup ${cgroups.mode} tree ${cgroups.root}, bind-mounted at ${cgroupRoot}`);

    // Everything starts before the epoch; schedules and recording count from it.
    const epochMs = Date.now() + 6000;
    const kernelResizes: KernelResize[] = [];
    const kubelet = new LabKubelet(admin, {
      nodeName: LAB_NODE,
      allocatableMillicores: scenario.allocatableMillicores,
      cgroups,
      resultsDir,
      epochMs,
      seed,
      cfsQuota: policy !== "none",
      onResize: (r) => kernelResizes.push(r),
    });
    await kubelet.start();
    cleanups.push(() => kubelet.stop());

    let agentMetricsPort: number | null = null;
    if (policy === "mbcas") {
      agentMetricsPort = freePort();
      const processes = startMbcas(
        testbed,
        cgroupRoot,
        resultsDir,
        agentMetricsPort,
        options.mbcasFlags ?? {},
      );
      cleanups.push(() => Promise.all(processes.map((p) => terminate(p))).then(() => {}));
      log("started the MBCAS agent and controller");
    }

    for (const pod of scenario.pods) {
      await core.createNamespacedPod({ namespace: LAB_NAMESPACE, body: podManifest(pod) });
    }
    await waitRunning(core, scenario.pods.length);
    log(`${scenario.pods.length} pods running on ${LAB_NODE}; recording from the epoch`);

    const vpa = policy === "vpa" ? new Map<string, CpuHistogram>() : null;
    const layout = detectLayout(cgroupRoot);
    const previous = new Map<string, CpuSample>();
    const samples: LabSample[] = [];
    const prices: LabPrice[] = [];
    const latencies: LabLatencies[] = [];
    const tails = new Map<string, JsonLinesTail>();
    cleanups.push(() => tails.forEach((tail) => tail.close()));
    const requests = new Map(scenario.pods.map((p) => [p.name, p.requestMillicores]));
    let durationSeconds = 0;

    for (let second = 0; second <= scenario.durationSeconds; second++) {
      const wait = epochMs + second * 1000 - Date.now();
      if (wait > 0) await sleep(wait, options.signal);
      if (options.signal?.aborted) break;
      const paths = kubelet.runtime.containerPaths();
      const market = second > 0 && policy === "mbcas" ? await readMarket(custom) : new Map();
      const agent = second > 0 && agentMetricsPort !== null
        ? await readAgentMetrics(agentMetricsPort)
        : null;
      const now: LabSample[] = [];
      for (const pod of scenario.pods) {
        const path = paths.get(`${LAB_NAMESPACE}/${pod.name}`)?.get("app");
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
          limitMillicores: s.limitMillicores,
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
        const file = kubelet.runtime.outputFile(`${LAB_NAMESPACE}/${pod.name}`, "app");
        if (file === undefined) continue;
        let tail = tails.get(file);
        if (tail === undefined) tails.set(file, tail = new JsonLinesTail(file));
        for (const line of tail.read()) {
          const t = Math.round((line.t - epochMs) / 1000);
          if (t >= 1 && Array.isArray(line.latenciesMs)) {
            latencies.push({ t, pod: pod.name, latenciesMs: line.latenciesMs });
          }
        }
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
          pod: r.pod.split("/")[1],
          fromMillicores: r.fromMillicores,
          toMillicores: r.toMillicores,
        }))
        .filter((r) => r.t >= 0 && r.t <= durationSeconds),
    };
  } finally {
    log("tearing down");
    await cleanup();
  }
}

/** The pod object of a scenario pod: one container, Burstable, CPU resizable in place. */
function podManifest(pod: Scenario["pods"][number]): k8s.V1Pod {
  return {
    metadata: {
      name: pod.name,
      namespace: LAB_NAMESPACE,
      annotations: {
        [WORKLOAD_ANNOTATION]: pod.workload,
        [WORKLOAD_ARGS_ANNOTATION]: pod.args.join(" "),
        ...(pod.priority === undefined ? {} : { [PRIORITY_ANNOTATION]: String(pod.priority) }),
      },
    },
    spec: {
      nodeName: LAB_NODE,
      containers: [{
        name: "app",
        image: "mbcas-lab/workload",
        resources: {
          requests: { cpu: `${pod.requestMillicores}m`, memory: "64Mi" },
          limits: { cpu: `${pod.limitMillicores}m`, memory: "64Mi" },
        },
        resizePolicy: [
          { resourceName: "cpu", restartPolicy: "NotRequired" },
          { resourceName: "memory", restartPolicy: "NotRequired" },
        ],
      }],
    },
  };
}

async function waitRunning(core: k8s.CoreV1Api, count: number): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const list = await core.listNamespacedPod({ namespace: LAB_NAMESPACE });
    if (list.items.filter((p) => p.status?.phase === "Running").length === count) return;
    await sleep(200);
  }
  throw new Error(`the lab pods did not all start within 30 s`);
}

/** The published allocation of each pod (its PodAllocation's first container), millicores. */
async function readMarket(
  custom: k8s.CustomObjectsApi,
): Promise<Map<string, { allocation: number | null }>> {
  const out = new Map<string, { allocation: number | null }>();
  try {
    const list = await custom.listNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: LAB_NAMESPACE,
      plural: PLURAL,
    }) as { items: { spec: PodAllocationSpec }[] };
    for (const pa of list.items) {
      const limit = pa.spec.containers[0]?.cpuLimit;
      out.set(pa.spec.podName, { allocation: limit === undefined ? null : parseMillicores(limit) });
    }
  } catch {
    // a missed second stays empty
  }
  return out;
}

/**
 * The agent's latest demand estimate per pod and the node's price, from its
 * /metrics (the agent updates them at every clearing; a PodAllocation's
 * evidence is only as fresh as its last publish).
 */
async function readAgentMetrics(
  port: number,
): Promise<{ demand: Map<string, number>; price: number | null } | null> {
  try {
    const response = await fetch(`http://127.0.0.1:${port}/metrics`);
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
    return { demand, price };
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
      await patchPodResize(core, LAB_NAMESPACE, name, [{ name: "app", cpuLimit: `${limit}m` }]);
    } catch (error) {
      log(`vpa: resizing ${name} to ${limit}m failed: ${errorMessage(error)}`);
    }
  }
}

/** Starts the agent and the controller as `deno task agent` / `deno task controller` do. */
function startMbcas(
  testbed: Testbed,
  cgroupRoot: string,
  logDir: string,
  agentMetricsPort: number,
  flags: { agent?: string[]; controller?: string[] },
): Deno.ChildProcess[] {
  const spawn = (task: string, args: string[]) => {
    const { flags, entry } = taskRun(task);
    const logFile = join(logDir, `${task}.log`);
    // setsid: a session of its own (same pid), so a terminal's Ctrl-C reaches the lab only.
    const child = new Deno.Command("setsid", {
      args: [Deno.execPath(), "run", "--config", DENO_JSON, ...flags, entry, ...args],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    child.stderr.pipeTo(Deno.openSync(logFile, { create: true, append: true }).writable).catch(
      () => {},
    );
    return child;
  };
  return [
    spawn("agent", [
      "--kubeconfig",
      testbed.identities.agent.kubeconfig,
      "--node-name",
      LAB_NODE,
      "--cgroup-root",
      cgroupRoot,
      "--bind-address",
      "127.0.0.1",
      "--metrics-port",
      String(agentMetricsPort),
      ...(flags.agent ?? []),
    ]),
    spawn("controller", [
      "--kubeconfig",
      testbed.identities.controller.kubeconfig,
      "--bind-address",
      "127.0.0.1",
      "--metrics-port",
      String(freePort()),
      ...(flags.controller ?? []),
    ]),
  ];
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
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
  });
}
