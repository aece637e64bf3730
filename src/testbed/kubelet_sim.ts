/**
 * A kubelet simulator for tests: without a kubelet nothing writes pod status,
 * so this plays one node's kubelet. It registers a Node with allocatable CPU,
 * marks the pods bound to it Running with `containerStatuses[].resources`,
 * `allocatedResources` and `observedGeneration`, and answers resizes as a real
 * kubelet would: applied, or `PodResizePending` (Deferred / Infeasible), or
 * `PodResizeInProgress` (Error), as the test chooses per pod.
 *
 * By default it behaves like a kubelet v1.35 with containerd:
 *
 * - **Rounding.** `containerStatuses[].resources` report what the runtime
 *   set in the cgroup, converted back, not the spec verbatim. CPU quantities
 *   are rounded up to whole millicores (`MilliValue`); a limit becomes
 *   `cpu.cfs_quota_us = max(1000, m × 100000 / 1000)` over a 100000 µs period
 *   and comes back as `quota × 1000 / period`; a request becomes
 *   `cpu.shares = clamp(m × 1024 / 1000, 2, 262144)` (floored) and comes back
 *   as `ceil(shares × 1000 / 1024)`. As the kubelet does, the spec value is
 *   kept when both it and the cgroup value are at or below the minimum (10m
 *   for limits, 2m for requests). Values come back in canonical form (`1`,
 *   `1500m`). Since the shares conversion rounds up on the way back, every
 *   request from 3m to 256 cores survives it exactly: what differs from the
 *   spec is sub-millicore precision (`100500u` → `101m`), requests above 256
 *   cores (capped) and the format. Memory is reported verbatim.
 *   (See kubelet `pkg/kubelet/cm/helpers_linux.go`,
 *   `pkg/kubelet/kuberuntime/helpers_linux.go` and `convertContainerStatusResources`
 *   in `pkg/kubelet/kubelet_pods.go`.)
 * - **Lag.** An accepted resize is actuated {@link KubeletSimulatorOptions.applyDelayMs}
 *   after the simulator sees it; meanwhile the pod carries `PodResizeInProgress`
 *   without a reason or message (as a kubelet actuating a resize), the new
 *   `allocatedResources` and the old `resources`. The condition is removed
 *   when the new resources are reported.
 * - **observedGeneration** on `status` and on every pod condition, as with
 *   the `PodObservedGenerationTracking` feature (on by default since v1.34).
 *
 * @module
 */
import * as k8s from "@kubernetes/client-node";
import { formatMillicores, parseMillicores } from "../api/mod.ts";
import {
  Informer,
  kubeSource,
  makeApiClient,
  MERGE_PATCH,
  plainList,
  retryOnConflict,
  statusCode,
  toPlain,
} from "../k8s/mod.ts";

/** How the simulated kubelet answers a resize. */
export type ResizeResponse = "accept" | "deferred" | "infeasible" | "error";

/** Options of the simulator. */
export interface KubeletSimulatorOptions {
  /** The node's name. */
  nodeName: string;
  /** Allocatable CPU, millicores (default 4000). */
  allocatableMillicores?: number;
  /** Answer to resizes of pods without a per-pod choice (default accept). */
  defaultResponse?: ResizeResponse;
  /** Pod resync period, milliseconds (default 2000). */
  resyncMs?: number;
  /**
   * Report CPU resources as a v1.35 kubelet derives them from the cgroup
   * values (default true; see the module documentation); false copies the
   * spec verbatim.
   */
  rounding?: boolean;
  /**
   * Time from seeing an accepted resize to reporting it applied, milliseconds
   * (default 300). Meanwhile `PodResizeInProgress` is set, without a reason.
   * A newer resize seen during the lag is actuated at the same moment. 0
   * reports it at once, without `PodResizeInProgress`.
   */
  applyDelayMs?: number;
  /**
   * Write `PodResizePending` (Deferred, Infeasible) and `PodResizeInProgress`
   * (Error) without `reason` and `message` (default false). Real kubelets give
   * them; this exercises readers that must cope without one.
   */
  omitReasons?: boolean;
  /**
   * Write `observedGeneration` on the status and on every condition (default
   * true, as v1.35). False plays a kubelet without `PodObservedGenerationTracking`
   * (v1.33): pod conditions then do not say which generation they judged.
   */
  observedGeneration?: boolean;
}

/** One answer to a resize, as recorded in {@link KubeletSimulator.history}. */
export interface ResizeAnswer {
  /** The pod generation answered. */
  generation: number;
  /** The answer. */
  response: ResizeResponse;
  /**
   * `Date.now()` just before the status carrying the answer was written (so
   * no reader can have seen the answer earlier); for `accept` with a lag, when
   * actuation started.
   */
  atMs: number;
}

type Resources = { requests?: Record<string, string>; limits?: Record<string, string> };

/** The kubelet's cgroup constants (`pkg/kubelet/cm/helpers_linux.go`). */
const MIN_SHARES = 2;
const MAX_SHARES = 262_144;
const SHARES_PER_CPU = 1024;
const MILLI_CPU_TO_CPU = 1000;
const QUOTA_PERIOD = 100_000;
const MIN_QUOTA_PERIOD = 1000;
const MIN_MILLI_CPU_LIMIT = 10;

/** `cpu.shares` for a CPU request in millicores, as the kubelet's `MilliCPUToShares`. */
export function milliCpuToShares(milliCpu: number): number {
  if (milliCpu === 0) return MIN_SHARES;
  const shares = Math.floor((milliCpu * SHARES_PER_CPU) / MILLI_CPU_TO_CPU);
  return Math.min(MAX_SHARES, Math.max(MIN_SHARES, shares));
}

/** Millicores for `cpu.shares`, as the kubelet reads them back from the runtime (`sharesToMilliCPU`, rounding up). */
export function sharesToMilliCpu(shares: number): number {
  return shares >= MIN_SHARES ? Math.ceil((shares * MILLI_CPU_TO_CPU) / SHARES_PER_CPU) : 0;
}

/** `cpu.cfs_quota_us` for a CPU limit in millicores, as the kubelet's `MilliCPUToQuota` (0: no quota). */
export function milliCpuToQuota(milliCpu: number, period = QUOTA_PERIOD): number {
  if (milliCpu === 0) return 0;
  return Math.max(MIN_QUOTA_PERIOD, Math.floor((milliCpu * period) / MILLI_CPU_TO_CPU));
}

/** Millicores for a CFS quota and period, as the kubelet's `quotaToMilliCPU` (flooring). */
export function quotaToMilliCpu(quota: number, period = QUOTA_PERIOD): number {
  if (quota <= 0) return 0;
  return Math.floor((quota * MILLI_CPU_TO_CPU) / period);
}

/**
 * The CPU request and limit a v1.35 kubelet reports in
 * `containerStatuses[].resources` once it has set `spec` in the cgroup: the
 * cgroup values converted back, except that the spec's own text is kept when
 * both are at or below the minimum (2m requests, 10m limits), or when the
 * spec value is not a quantity. Other resources are copied.
 */
export function reportedResources(spec: k8s.V1ResourceRequirements | undefined): Resources {
  const out = plainResources(spec);
  const request = out.requests?.cpu;
  if (request !== undefined) {
    const m = parseMillicores(request);
    if (m !== null && m >= 0) {
      const actual = sharesToMilliCpu(milliCpuToShares(m));
      if (actual > MIN_SHARES || m > MIN_SHARES) out.requests!.cpu = formatMillicores(actual);
    }
  }
  const limit = out.limits?.cpu;
  if (limit !== undefined) {
    const m = parseMillicores(limit);
    if (m !== null && m > 0) {
      const actual = quotaToMilliCpu(milliCpuToQuota(m));
      if (actual > MIN_MILLI_CPU_LIMIT || m > MIN_MILLI_CPU_LIMIT) {
        out.limits!.cpu = formatMillicores(actual);
      }
    }
  }
  return out;
}

const RESIZE_CONDITIONS = new Set(["PodResizePending", "PodResizeInProgress"]);

/** Simulates one node's kubelet. */
export class KubeletSimulator {
  readonly nodeName: string;
  readonly #kc: k8s.KubeConfig;
  readonly #core: k8s.CoreV1Api;
  readonly #options: Required<KubeletSimulatorOptions>;
  readonly #responses = new Map<string, ResizeResponse>();
  readonly #queue = new Set<string>();
  /** Accepted resizes being actuated: when they will be reported. */
  readonly #actuating = new Map<string, { dueAtMs: number; due: boolean }>();
  readonly #timers = new Set<ReturnType<typeof setTimeout>>();
  #informer: Informer<k8s.V1Pod> | null = null;
  #draining: Promise<void> | null = null;
  #stopped = false;
  /** Resizes this simulator has answered, per pod key, in order: one entry per pod generation and answer. */
  readonly answered = new Map<string, ResizeResponse[]>();
  /** The same answers with the generation answered and when. */
  readonly history = new Map<string, ResizeAnswer[]>();

  /** Creates the simulator; call {@link KubeletSimulator.start}. */
  constructor(kc: k8s.KubeConfig, options: KubeletSimulatorOptions) {
    this.#kc = kc;
    this.#core = makeApiClient(kc, k8s.CoreV1Api);
    this.nodeName = options.nodeName;
    this.#options = {
      allocatableMillicores: 4000,
      defaultResponse: "accept",
      resyncMs: 2000,
      rounding: true,
      applyDelayMs: 300,
      omitReasons: false,
      observedGeneration: true,
      ...options,
    };
  }

  /** Chooses how resizes of one pod are answered from now on. */
  setResizeResponse(namespace: string, name: string, response: ResizeResponse): void {
    this.#responses.set(`${namespace}/${name}`, response);
    this.#enqueue(`${namespace}/${name}`);
  }

  /** Registers the Node (idempotent) and starts serving its pods. */
  async start(): Promise<void> {
    this.#stopped = false;
    await this.#registerNode();
    const kc = this.#kc;
    const fieldSelector = `spec.nodeName=${this.nodeName}`;
    const core = this.#core;
    this.#informer = new Informer<k8s.V1Pod>(
      kubeSource<k8s.V1Pod>(kc, {
        path: "/api/v1/pods",
        fieldSelector,
        list: plainList(() => core.listPodForAllNamespaces({ fieldSelector })),
      }),
      {
        name: `kubelet-sim/${this.nodeName}`,
        resyncMs: this.#options.resyncMs,
        backoffInitialMs: 100,
        backoffMaxMs: 2000,
      },
    );
    this.#informer.subscribe((event) => {
      const key = `${event.object.metadata!.namespace}/${event.object.metadata!.name}`;
      if (event.type !== "deleted") this.#enqueue(key);
      else this.#actuating.delete(key);
    });
    this.#informer.start();
    await this.#informer.synced();
  }

  /** Stops serving. */
  async stop(): Promise<void> {
    this.#stopped = true;
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
    await this.#informer?.stop();
    await this.#draining;
  }

  async #registerNode(): Promise<void> {
    const cpu = `${this.#options.allocatableMillicores}m`;
    try {
      await this.#core.createNode({
        body: {
          metadata: {
            name: this.nodeName,
            labels: { "kubernetes.io/hostname": this.nodeName, "kubernetes.io/os": "linux" },
          },
        },
      });
    } catch (error) {
      if (statusCode(error) !== 409) throw error;
    }
    await retryOnConflict(async () => {
      const node = toPlain(await this.#core.readNode({ name: this.nodeName }));
      const now = new Date().toISOString();
      node.status = {
        ...node.status,
        capacity: { cpu, memory: "16Gi", pods: "110" },
        allocatable: { cpu, memory: "16Gi", pods: "110" },
        conditions: [{
          type: "Ready",
          status: "True",
          reason: "KubeletReady",
          message: "simulated",
          lastHeartbeatTime: now as unknown as Date,
          lastTransitionTime: now as unknown as Date,
        }],
        nodeInfo: {
          architecture: "amd64",
          bootID: "",
          containerRuntimeVersion: "containerd://2.0.0",
          kernelVersion: "",
          kubeProxyVersion: "",
          kubeletVersion: "v1.35.4",
          machineID: "",
          operatingSystem: "linux",
          osImage: "mbcas kubelet simulator",
          systemUUID: "",
        },
      };
      await this.#core.patchNodeStatus(
        {
          name: this.nodeName,
          body: {
            metadata: { resourceVersion: node.metadata?.resourceVersion },
            status: node.status,
          },
        },
        MERGE_PATCH,
      );
    });
  }

  #enqueue(key: string): void {
    if (this.#stopped) return;
    this.#queue.add(key);
    this.#draining ??= this.#drain().finally(() => (this.#draining = null));
  }

  /** Marks the actuation of `key` due in `ms` and reconciles it then. */
  #actuateAfter(key: string, actuation: { due: boolean }, ms: number): void {
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      actuation.due = true;
      this.#enqueue(key);
    }, ms);
    this.#timers.add(timer);
  }

  async #drain(): Promise<void> {
    while (this.#queue.size > 0) {
      const [key] = this.#queue;
      this.#queue.delete(key);
      try {
        await this.#reconcile(key);
      } catch (error) {
        // 404: the pod is gone. Connection errors: the API server is restarting; the resync retries.
        const quiet = statusCode(error) === 404 ||
          /ECONNREFUSED|ECONNRESET|socket hang up|fetch failed|Connection refused/.test(
            String(error),
          );
        if (!quiet) {
          console.error(`kubelet-sim ${this.nodeName}: ${key}: ${String(error).slice(0, 300)}`);
        }
      }
    }
  }

  async #reconcile(key: string): Promise<void> {
    const [namespace, name] = key.split("/");
    const got: { answer: ResizeAnswer | null } = { answer: null };
    await retryOnConflict(async () => {
      got.answer = null;
      const pod = toPlain(await this.#core.readNamespacedPod({ name, namespace }));
      if (pod.spec?.nodeName !== this.nodeName) return;
      if (pod.metadata?.deletionTimestamp) return;
      const response = this.#responses.get(key) ?? this.#options.defaultResponse;
      const nowMs = Date.now();
      const next = this.#desiredStatus(key, pod, response, nowMs);
      if (next.answer !== null) {
        got.answer = {
          generation: pod.metadata?.generation ?? 1,
          response: next.answer,
          atMs: nowMs,
        };
      }
      if (next.status === null) return;
      // A merge patch carrying the resourceVersion: optimistic concurrency without re-serialising dates.
      await this.#core.patchNamespacedPodStatus(
        {
          name,
          namespace,
          body: {
            metadata: { resourceVersion: pod.metadata?.resourceVersion },
            status: next.status,
          },
        },
        MERGE_PATCH,
      );
    });
    if (got.answer !== null) this.#record(key, got.answer);
  }

  /** Records an answer unless this generation already had the same one. */
  #record(key: string, answer: ResizeAnswer): void {
    const history = this.history.get(key) ?? [];
    const last = history.at(-1);
    if (last?.generation === answer.generation && last.response === answer.response) return;
    history.push(answer);
    this.history.set(key, history);
    this.answered.set(key, [...(this.answered.get(key) ?? []), answer.response]);
  }

  /** What this container's `resources` are reported as once its spec is in force. */
  #reported(c: k8s.V1Container): Resources {
    return this.#options.rounding ? reportedResources(c.resources) : plainResources(c.resources);
  }

  /**
   * The status this kubelet would write now (null when nothing changes), and
   * the answer it gives to a resize (null when none is wanted).
   */
  #desiredStatus(
    key: string,
    pod: k8s.V1Pod,
    response: ResizeResponse,
    nowMs: number,
  ): { status: k8s.V1PodStatus | null; answer: ResizeResponse | null } {
    const old = pod.status ?? {};
    const generation = pod.metadata?.generation ?? 1;
    const withGeneration = this.#options.observedGeneration;
    const containers = pod.spec?.containers ?? [];
    const now = new Date(nowMs).toISOString() as unknown as Date;
    const stamp = <T extends object>(o: T): T =>
      withGeneration ? { ...o, observedGeneration: generation } : o;
    if (old.phase !== "Running" || (old.containerStatuses ?? []).length !== containers.length) {
      this.#actuating.delete(key);
      const status: k8s.V1PodStatus = {
        ...old,
        phase: "Running",
        hostIP: "127.0.0.1",
        podIP: `10.244.0.${1 + (hash(key) % 250)}`,
        startTime: now,
        conditions: ["PodScheduled", "Initialized", "ContainersReady", "Ready"].map((type) =>
          stamp({ type, status: "True", lastTransitionTime: now })
        ),
        containerStatuses: containers.map((c) => ({
          name: c.name,
          image: c.image ?? "",
          imageID: `sha256:${hex(`${c.image}`)}`,
          containerID: `containerd://${containerID(pod, c.name)}`,
          ready: true,
          started: true,
          restartCount: 0,
          state: { running: { startedAt: now } },
          allocatedResources: plainResources(c.resources).requests,
          resources: this.#reported(c),
        })),
      };
      if (withGeneration) status.observedGeneration = generation;
      return { status, answer: null };
    }

    const statuses = old.containerStatuses ?? [];
    const differs = containers.some((c) => {
      const cs = statuses.find((s) => s.name === c.name);
      return stable(normalise(cs?.resources)) !== stable(this.#reported(c));
    });
    let containerStatuses = statuses;
    let resize: { type: string; reason?: string; message?: string } | null = null;
    let answer: ResizeResponse | null = null;
    const why = (reason: string, message: string) =>
      this.#options.omitReasons ? {} : { reason, message };
    if (!differs) {
      this.#actuating.delete(key);
    } else if (response === "accept") {
      answer = "accept";
      const allocated = statuses.map((cs) => {
        const c = containers.find((x) => x.name === cs.name);
        return c === undefined
          ? cs
          : { ...cs, allocatedResources: plainResources(c.resources).requests };
      });
      let actuation = this.#actuating.get(key);
      if (actuation === undefined && this.#options.applyDelayMs > 0) {
        actuation = { dueAtMs: nowMs + this.#options.applyDelayMs, due: false };
        this.#actuating.set(key, actuation);
        this.#actuateAfter(key, actuation, this.#options.applyDelayMs);
      }
      if (actuation !== undefined && !actuation.due && nowMs < actuation.dueAtMs) {
        // Allocated, not yet actuated: the new allocation, the old resources, and no reason.
        containerStatuses = allocated;
        resize = { type: "PodResizeInProgress" };
      } else {
        this.#actuating.delete(key);
        containerStatuses = allocated.map((cs) => {
          const c = containers.find((x) => x.name === cs.name);
          return c === undefined ? cs : { ...cs, resources: this.#reported(c) };
        });
      }
    } else {
      this.#actuating.delete(key);
      answer = response;
      if (response === "deferred") {
        resize = {
          type: "PodResizePending",
          ...why("Deferred", "Node didn't have enough resource: cpu"),
        };
      } else if (response === "infeasible") {
        resize = {
          type: "PodResizePending",
          ...why(
            "Infeasible",
            `Node didn't have enough capacity: cpu, requested: more than allocatable ${this.#options.allocatableMillicores}m`,
          ),
        };
      } else {
        resize = { type: "PodResizeInProgress", ...why("Error", "simulated resize failure") };
      }
    }

    const conditions: k8s.V1PodCondition[] = (old.conditions ?? [])
      .filter((c) => !RESIZE_CONDITIONS.has(c.type))
      .map((c) => stamp(c));
    if (resize !== null) {
      // A condition keeps its transition time while its status and reason stay.
      const previous = (old.conditions ?? []).find((c) =>
        c.type === resize!.type && c.status === "True" && c.reason === resize!.reason
      );
      conditions.push(stamp({
        ...previous,
        type: resize.type,
        status: "True",
        ...(resize.reason === undefined ? {} : { reason: resize.reason }),
        ...(resize.message === undefined ? {} : { message: resize.message }),
        lastTransitionTime: previous?.lastTransitionTime ?? now,
      }));
    }
    const status: k8s.V1PodStatus = { ...old, conditions, containerStatuses };
    if (withGeneration) status.observedGeneration = generation;
    return { status: stable(status) === stable(old) ? null : status, answer };
  }
}

/** The simulated container id of a pod's container (64 hex digits, stable). */
export function containerID(pod: k8s.V1Pod, container: string): string {
  return hex(`${pod.metadata?.uid}/${container}`);
}

function plainResources(resources: k8s.V1ResourceRequirements | undefined): Resources {
  const out: Resources = {};
  if (resources?.requests && Object.keys(resources.requests).length > 0) {
    out.requests = { ...resources.requests };
  }
  if (resources?.limits && Object.keys(resources.limits).length > 0) {
    out.limits = { ...resources.limits };
  }
  return out;
}

function normalise(resources: Resources | undefined): Resources {
  return plainResources(resources as k8s.V1ResourceRequirements);
}

/**
 * JSON with object keys sorted and null members dropped: equal for equal
 * values whatever the key order, and whether the API server wrote a null
 * (`lastProbeTime: null`) or nothing.
 */
function stable(value: unknown): string {
  return JSON.stringify(
    value,
    (_key, v) =>
      v !== null && typeof v === "object" && !Array.isArray(v)
        ? Object.fromEntries(
          Object.entries(v)
            .filter(([, x]) => x !== null)
            .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
        )
        : v,
  );
}

function hash(text: string): number {
  let h = 2166136261;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 16777619) >>> 0;
  return h;
}

function hex(text: string): string {
  let out = "";
  for (let i = 0; out.length < 64; i++) out += hash(`${text}#${i}`).toString(16).padStart(8, "0");
  return out.slice(0, 64);
}
