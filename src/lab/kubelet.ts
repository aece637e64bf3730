/**
 * The lab kubelet: a lab component, never deployed to clusters. It registers
 * a Node with the machine's CPU, watches the pods bound to it, and runs each
 * container as a real process (a lab workload) in a real cgroup laid out as
 * the kubelet's cgroupfs driver lays it out (see {@link LabCgroups}): shares
 * from requests, CFS quota from limits (or none, like a kubelet with
 * `--cpu-cfs-quota=false`). It reports status as a kubelet does
 * (`containerStatuses[].resources`, `allocatedResources`, conditions, through
 * the test bed's {@link KubeletSimulator}) and actuates `pods/resize` by
 * rewriting the quota, answering `PodResizePending` (Deferred or Infeasible)
 * when the new requests do not fit, as the kubelet does.
 *
 * @module
 */
import type * as k8s from "@kubernetes/client-node";
import { join } from "node:path";
import { parseMillicores } from "../api/mod.ts";
import { containerID, type ContainerRuntime, KubeletSimulator, terminate } from "../testbed/mod.ts";
import type { ResizeResponse } from "../testbed/mod.ts";
import type { LabCgroups, QosDir } from "./cgroups.ts";
import type { WorkloadKind } from "./types.ts";

/** Pod annotation choosing the workload a container runs. */
export const WORKLOAD_ANNOTATION = "lab.mbcas.io/workload";
/** Pod annotation with extra workload options (space-separated `--name value` words). */
export const WORKLOAD_ARGS_ANNOTATION = "lab.mbcas.io/args";

const WORKLOAD = new URL("./workload.ts", import.meta.url).pathname;
const KINDS: readonly WorkloadKind[] = ["latency", "bursty", "batch", "idle"];

/** A kernel limit change the lab kubelet made. */
export interface KernelResize {
  /** Wall-clock time, Unix milliseconds. */
  atMs: number;
  /** `namespace/name`. */
  pod: string;
  /** Container name. */
  container: string;
  /** Limit before, millicores (null: unlimited). */
  fromMillicores: number | null;
  /** Limit after, millicores (null: unlimited). */
  toMillicores: number | null;
}

/** Options of the lab kubelet. */
export interface LabKubeletOptions {
  /** The node's name. */
  nodeName: string;
  /** Allocatable CPU, millicores. */
  allocatableMillicores: number;
  /** The lab's cgroup tree. */
  cgroups: LabCgroups;
  /** Where workloads write their measurements (one JSON-lines file per container). */
  resultsDir: string;
  /** Unix milliseconds the scenario's schedules count from. */
  epochMs: number;
  /** Seed of the workloads' random schedules. */
  seed: number;
  /** Enforce CPU limits with the CFS quota (a kubelet's `--cpu-cfs-quota`, default true). */
  cfsQuota?: boolean;
  /** Called for every kernel limit change. */
  onResize?: (resize: KernelResize) => void;
}

/** A running container. */
interface LabContainer {
  id: string;
  path: string;
  child: Deno.ChildProcess;
  out: string;
}

/** A running pod. */
interface LabPodState {
  key: string;
  podPath: string;
  containers: Map<string, LabContainer>;
  requests: Map<string, number>;
}

/** CPU request and limit of a container, millicores. */
function cpuOf(c: k8s.V1Container): { request: number; limit: number | null } {
  const request = c.resources?.requests?.cpu ?? c.resources?.limits?.cpu;
  const limit = c.resources?.limits?.cpu;
  // The API server validated these quantities.
  return {
    request: request === undefined ? 0 : parseMillicores(request) ?? 0,
    limit: limit === undefined ? null : parseMillicores(limit),
  };
}

/** The pod's QoS directory under kubepods (CPU and memory, as the kubelet classifies). */
export function qosDir(pod: k8s.V1Pod): QosDir {
  const containers = pod.spec?.containers ?? [];
  const all = containers.flatMap((c) => ["cpu", "memory"].map((r) => ({ c, r })));
  const guaranteed = containers.length > 0 && all.every(({ c, r }) => {
    const limit = c.resources?.limits?.[r];
    const request = c.resources?.requests?.[r] ?? limit;
    return limit !== undefined && request === limit;
  });
  if (guaranteed) return "";
  const any = all.some(({ c, r }) =>
    c.resources?.requests?.[r] !== undefined || c.resources?.limits?.[r] !== undefined
  );
  return any ? "burstable" : "besteffort";
}

/** The workload command-line words of a pod's container, from its annotations. */
export function workloadArgs(pod: k8s.V1Pod): { kind: WorkloadKind; extra: string[] } {
  const annotations = pod.metadata?.annotations ?? {};
  const kind = annotations[WORKLOAD_ANNOTATION] ?? "idle";
  if (!(KINDS as readonly string[]).includes(kind)) {
    throw new Error(
      `pod ${pod.metadata?.namespace}/${pod.metadata?.name}: annotation ${WORKLOAD_ANNOTATION}=${
        JSON.stringify(kind)
      } is not one of ${KINDS.join(", ")}`,
    );
  }
  const extra = (annotations[WORKLOAD_ARGS_ANNOTATION] ?? "").split(/\s+/).filter((w) => w !== "");
  return { kind: kind as WorkloadKind, extra };
}

/** Runs pods as real processes in real cgroups. */
export class LabRuntime implements ContainerRuntime {
  readonly #options: Required<Omit<LabKubeletOptions, "onResize">> & LabKubeletOptions;
  readonly #pods = new Map<string, LabPodState>();
  readonly #starting = new Map<string, Promise<Map<string, string>>>();

  /** Creates the runtime. */
  constructor(options: LabKubeletOptions) {
    this.#options = { cfsQuota: true, ...options };
  }

  /** The running pods' container cgroups, relative to the hierarchy roots, by `namespace/name`. */
  containerPaths(): Map<string, Map<string, string>> {
    return new Map(
      [...this.#pods.values()].map((p) => [
        p.key,
        new Map([...p.containers].map(([name, c]) => [name, c.path])),
      ]),
    );
  }

  /** The measurement file of a running pod's container. */
  outputFile(key: string, container: string): string | undefined {
    for (const pod of this.#pods.values()) {
      if (pod.key === key) return pod.containers.get(container)?.out;
    }
    return undefined;
  }

  /** Starts the pod's containers once; later calls return the same ids. */
  startPod(pod: k8s.V1Pod): Promise<Map<string, string>> {
    const uid = pod.metadata!.uid!;
    const existing = this.#pods.get(uid);
    if (existing !== undefined) {
      return Promise.resolve(new Map([...existing.containers].map(([n, c]) => [n, c.id])));
    }
    let starting = this.#starting.get(uid);
    if (starting === undefined) {
      starting = this.#start(pod).finally(() => this.#starting.delete(uid));
      this.#starting.set(uid, starting);
    }
    return starting;
  }

  async #start(pod: k8s.V1Pod): Promise<Map<string, string>> {
    const { cgroups, resultsDir, epochMs, seed } = this.#options;
    const uid = pod.metadata!.uid!;
    const key = `${pod.metadata!.namespace}/${pod.metadata!.name}`;
    const { kind, extra } = workloadArgs(pod);
    const podPath = cgroups.addPod(qosDir(pod), uid);
    const state: LabPodState = { key, podPath, containers: new Map(), requests: new Map() };
    const containers = pod.spec?.containers ?? [];
    this.#setPodLimit(podPath, containers.map((c) => this.#limit(c)));
    for (const c of containers) {
      const id = containerID(pod, c.name);
      const { request } = cpuOf(c);
      const path = cgroups.addContainer(podPath, id, request);
      cgroups.setLimit(path, this.#limit(c));
      const base = `${pod.metadata!.namespace}_${pod.metadata!.name}_${c.name}`;
      const out = join(resultsDir, `${base}.jsonl`);
      Deno.writeTextFileSync(out, "");
      const log = join(resultsDir, `${base}.log`);
      const args = [
        "run",
        "--no-prompt",
        `--allow-write=${out}`,
        `--allow-read=${resultsDir}`,
        WORKLOAD,
        "--kind",
        kind,
        "--out",
        out,
        "--epoch-ms",
        String(epochMs),
        "--seed",
        String(seed + hashName(base)),
        ...extra,
      ];
      // setsid: a session of its own (same pid), so a terminal's Ctrl-C reaches the
      // lab, which stops its pods in order.
      const child = new Deno.Command("setsid", {
        args: [
          "/bin/sh",
          "-c",
          `${cgroups.joinCommand(path)} && exec "$0" "$@" 2>>'${log}'`,
          Deno.execPath(),
          ...args,
        ],
        stdin: "null",
        stdout: "null",
        stderr: "inherit",
        env: { NO_COLOR: "1" },
      }).spawn();
      state.containers.set(c.name, { id, path, child, out });
      state.requests.set(c.name, request);
    }
    this.#pods.set(uid, state);
    // Running means running in its cgroup: wait for every process to have joined.
    for (const [name, c] of state.containers) {
      const deadline = Date.now() + 5000;
      while (cgroups.pids(c.path).length === 0) {
        if (Date.now() > deadline) {
          throw new Error(`${key}/${name}: the workload did not start in its cgroup within 5 s`);
        }
        await new Promise((r) => setTimeout(r, 10));
      }
    }
    return new Map([...state.containers].map(([n, c]) => [n, c.id]));
  }

  /**
   * Applies the pod's spec resources to its cgroups when its requests fit the
   * node (the kubelet's admission of a resize); Deferred when they fit the
   * node but not next to the other pods, Infeasible when they exceed it.
   */
  resizePod(pod: k8s.V1Pod): Promise<ResizeResponse> {
    const state = this.#pods.get(pod.metadata!.uid!);
    if (state === undefined) return Promise.resolve("error");
    const containers = pod.spec?.containers ?? [];
    const wanted = containers.reduce((s, c) => s + cpuOf(c).request, 0);
    if (wanted > this.#options.allocatableMillicores) return Promise.resolve("infeasible");
    let others = 0;
    for (const [uid, p] of this.#pods) {
      if (uid !== pod.metadata!.uid) { for (const r of p.requests.values()) others += r; }
    }
    if (others + wanted > this.#options.allocatableMillicores) {
      return Promise.resolve("deferred");
    }
    const { cgroups } = this.#options;
    const limits = containers.map((c) => this.#limit(c));
    const podBefore = cgroups.readLimit(state.podPath);
    const podAfter = sumLimits(limits);
    const raise = podAfter === null || (podBefore !== null && podAfter > podBefore);
    if (raise) this.#setPodLimit(state.podPath, limits);
    for (const c of containers) {
      const container = state.containers.get(c.name);
      if (container === undefined) continue;
      const { request } = cpuOf(c);
      const limit = this.#limit(c);
      const before = cgroups.readLimit(container.path);
      cgroups.setShares(container.path, request);
      if (before !== limit) {
        cgroups.setLimit(container.path, limit);
        this.#options.onResize?.({
          atMs: Date.now(),
          pod: state.key,
          container: c.name,
          fromMillicores: before,
          toMillicores: limit,
        });
      }
      state.requests.set(c.name, request);
    }
    if (!raise) this.#setPodLimit(state.podPath, limits);
    return Promise.resolve("accept");
  }

  /** Stops the pod's processes (SIGTERM, then SIGKILL after 2 s) and removes its cgroups. */
  async stopPod(pod: k8s.V1Pod): Promise<void> {
    const uid = pod.metadata!.uid!;
    await this.#starting.get(uid);
    const state = this.#pods.get(uid);
    if (state === undefined) return;
    this.#pods.delete(uid);
    await Promise.all([...state.containers.values()].map((c) => terminate(c.child, 2000)));
    await this.#options.cgroups.remove(state.podPath);
  }

  /** Stops every pod. */
  async stopAll(): Promise<void> {
    const uids = [...this.#pods.keys()];
    await Promise.all(uids.map((uid) => this.stopPod({ metadata: { uid } } as k8s.V1Pod)));
  }

  #limit(c: k8s.V1Container): number | null {
    return this.#options.cfsQuota ? cpuOf(c).limit : null;
  }

  #setPodLimit(podPath: string, limits: (number | null)[]): void {
    this.#options.cgroups.setLimit(podPath, sumLimits(limits));
  }
}

/** The lab kubelet: a {@link KubeletSimulator} whose containers really run. */
export class LabKubelet {
  /** The runtime (real processes and cgroups). */
  readonly runtime: LabRuntime;
  readonly #simulator: KubeletSimulator;

  /** Creates the kubelet; call {@link LabKubelet.start}. */
  constructor(kc: k8s.KubeConfig, options: LabKubeletOptions) {
    this.runtime = new LabRuntime(options);
    this.#simulator = new KubeletSimulator(kc, {
      nodeName: options.nodeName,
      allocatableMillicores: options.allocatableMillicores,
      runtime: this.runtime,
      resyncMs: 1000,
    });
  }

  /** Registers the node and starts serving its pods. */
  start(): Promise<void> {
    return this.#simulator.start();
  }

  /** Stops serving and stops every container. */
  async stop(): Promise<void> {
    await this.#simulator.stop();
    await this.runtime.stopAll();
  }
}

/** The pod-level limit: the sum of the containers' limits, unlimited if any is. */
function sumLimits(limits: (number | null)[]): number | null {
  if (limits.length === 0 || limits.some((l) => l === null)) return null;
  return (limits as number[]).reduce((a, b) => a + b, 0);
}

function hashName(text: string): number {
  let h = 2166136261;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 16777619) >>> 0;
  return h % 1_000_000;
}
