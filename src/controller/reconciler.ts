/**
 * The controller's imperative shell: informers on PodAllocations, pods,
 * namespaces and nodes; a work queue keyed by PodAllocation; and a level-based
 * reconcile that reads the caches, asks the pure policy what to do, patches
 * `pods/resize`, and records status. Time comes from an injected clock.
 *
 * @module
 */
import * as k8s from "@kubernetes/client-node";
import {
  formatMillicores,
  GROUP,
  PLURAL,
  type PodAllocation,
  validatePodAllocation,
  VERSION,
} from "../api/mod.ts";
import {
  errorMessage,
  Informer,
  kubeSource,
  makeApiClient,
  MERGE_PATCH,
  patchPodResize,
  plainList,
  statusCode,
} from "../k8s/mod.ts";
import { desiredAllocation, podState, statusChanged, statusFor } from "./observe.ts";
import {
  decide,
  emptyMemory,
  type PodMemory,
  recordPatch,
  type ResizePolicyConfig,
} from "./policy.ts";
import type { EventRecorder } from "./events.ts";
import { ResizeRateLimiter } from "./rate_limit.ts";
import { Counter, Gauge, Histogram, Registry } from "../metrics/mod.ts";

/** Options of the controller. */
export interface ControllerOptions {
  /** The resize policy. */
  policy: ResizePolicyConfig;
  /** Compute and record everything, patch nothing. */
  dryRun: boolean;
  /** Resize rate limits. */
  rateLimit: {
    global: { perSecond: number; burst: number };
    perNode: { perSecond: number; burst: number };
  };
  /** Wall clock, milliseconds (default Date.now). */
  now?: () => number;
  /** Structured log sink. */
  log?: (
    level: "debug" | "info" | "warn" | "error",
    message: string,
    fields?: Record<string, unknown>,
  ) => void;
  /** Informer resync period (default 30 s). */
  resyncMs?: number;
  /** Whether this replica may write now (leader election); default always. Caches stay warm either way. */
  canWrite?: () => boolean;
  /** Records Kubernetes Events for resizes and refusals. */
  events?: EventRecorder;
  /** Registers the controller's metrics here. */
  metrics?: Registry;
  /** PodAllocations reconciled concurrently (default 32; one key is never reconciled twice at once). */
  workers?: number;
}

/** The controller's Prometheus metrics. */
export class ControllerMetrics {
  readonly resizes: Counter;
  readonly reconcileSeconds: Histogram;
  readonly queueDepth: Gauge;
  readonly skipped: Counter;
  readonly apiErrors: Counter;
  readonly leader: Gauge;
  readonly resizeLatency: Histogram;

  /** Creates and registers the metrics. */
  constructor(registry: Registry) {
    this.resizes = registry.add(
      new Counter(
        "mbcas_controller_resizes_total",
        "pods/resize patches by result (accepted, rejected, dry_run, rate_limited)",
      ),
    );
    this.reconcileSeconds = registry.add(
      new Histogram(
        "mbcas_controller_reconcile_duration_seconds",
        "Time to reconcile one PodAllocation",
        [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      ),
    );
    this.queueDepth = registry.add(
      new Gauge("mbcas_controller_queue_depth", "PodAllocations waiting to be reconciled"),
    );
    this.skipped = registry.add(
      new Counter("mbcas_controller_held_total", "Changes skipped or held back, by reason"),
    );
    this.apiErrors = registry.add(
      new Counter("mbcas_controller_api_errors_total", "Failed API calls, by operation"),
    );
    this.leader = registry.add(
      new Gauge("mbcas_controller_leader", "1 when this replica is the leader"),
    );
    this.resizeLatency = registry.add(
      new Histogram(
        "mbcas_controller_resize_latency_seconds",
        "From a change seen on a watch to the accepted pods/resize patch",
        [0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10],
      ),
    );
  }
}

/** Counters for metrics and tests. */
export interface ControllerStats {
  /** Resize patches by result: applied (accepted by the API), rejected, dryRun, rateLimited. */
  resizes: Record<"accepted" | "rejected" | "dryRun" | "rateLimited", number>;
  /** Reconciles run. */
  reconciles: number;
  /** Status writes. */
  statusWrites: number;
  /** API errors. */
  apiErrors: number;
  /** Decisions that held something back, by reason. */
  reasons: Record<string, number>;
}

type PlainPodAllocation = k8s.KubernetesObject & {
  spec?: unknown;
  status?: PodAllocation["status"];
};

/** Applies PodAllocations to pods through `pods/resize`, safely. */
export class ResizeController {
  readonly stats: ControllerStats = {
    resizes: { accepted: 0, rejected: 0, dryRun: 0, rateLimited: 0 },
    reconciles: 0,
    statusWrites: 0,
    apiErrors: 0,
    reasons: {},
  };
  readonly #core: k8s.CoreV1Api;
  readonly #custom: k8s.CustomObjectsApi;
  readonly #options: ControllerOptions;
  readonly #now: () => number;
  readonly #log: NonNullable<ControllerOptions["log"]>;
  readonly #allocations: Informer<PlainPodAllocation>;
  readonly #pods: Informer<k8s.V1Pod>;
  readonly #namespaces: Informer<k8s.V1Namespace>;
  readonly #nodes: Informer<k8s.V1Node>;
  readonly #memory = new Map<string, PodMemory>();
  readonly #urgent = new Set<string>(); // keys whose objects changed
  readonly #queue = new Set<string>(); // keys re-checked by a periodic resync: after the urgent ones
  readonly #timers = new Map<string, { at: number; timer: ReturnType<typeof setTimeout> }>();
  readonly #limiter: ResizeRateLimiter;
  readonly #active = new Set<string>(); // keys being reconciled now: never two at once
  readonly #enqueuedAt = new Map<string, number>(); // when a key was first queued since its last reconcile
  readonly #workers = new Set<Promise<void>>();
  #running = false;
  readonly #metrics: ControllerMetrics;

  /** Creates the controller; call {@link ResizeController.start}. */
  constructor(kc: k8s.KubeConfig, options: ControllerOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
    this.#log = options.log ?? (() => {});
    this.#core = makeApiClient(kc, k8s.CoreV1Api);
    this.#custom = makeApiClient(kc, k8s.CustomObjectsApi);
    this.#limiter = new ResizeRateLimiter(
      options.rateLimit.global,
      options.rateLimit.perNode,
      this.#now(),
    );
    this.#metrics = new ControllerMetrics(options.metrics ?? new Registry());
    const informerOptions = (name: string) => ({
      name,
      resyncMs: options.resyncMs ?? 30_000,
      log: (level: "info" | "warn", message: string, fields?: Record<string, unknown>) =>
        this.#log(level, message, fields),
    });
    const core = this.#core;
    const custom = this.#custom;
    this.#allocations = new Informer(
      kubeSource<PlainPodAllocation>(kc, {
        path: `/apis/${GROUP}/${VERSION}/${PLURAL}`,
        list: async () => {
          const list = await custom.listClusterCustomObject({
            group: GROUP,
            version: VERSION,
            plural: PLURAL,
          }) as {
            items: PlainPodAllocation[];
            metadata: { resourceVersion: string };
          };
          return { items: list.items, resourceVersion: list.metadata.resourceVersion };
        },
      }),
      informerOptions("podallocations"),
    );
    this.#pods = new Informer(
      kubeSource<k8s.V1Pod>(kc, {
        path: "/api/v1/pods",
        list: plainList(() => core.listPodForAllNamespaces()),
      }),
      informerOptions("pods"),
    );
    this.#namespaces = new Informer(
      kubeSource<k8s.V1Namespace>(kc, {
        path: "/api/v1/namespaces",
        list: plainList(() => core.listNamespace()),
      }),
      informerOptions("namespaces"),
    );
    this.#nodes = new Informer(
      kubeSource<k8s.V1Node>(kc, { path: "/api/v1/nodes", list: plainList(() => core.listNode()) }),
      informerOptions("nodes"),
    );
  }

  /** Whether every cache holds a complete list. */
  get synced(): boolean {
    return [this.#allocations, this.#pods, this.#namespaces, this.#nodes].every((i) => i.hasSynced);
  }

  /** Starts the informers and the work queue; resolves once the caches are synced. */
  async start(): Promise<void> {
    this.#running = true;
    this.#allocations.subscribe((e) => this.#enqueue(keyOf(e.object), e.type !== "resync"));
    this.#pods.subscribe((e) => this.#enqueue(keyOf(e.object), e.type !== "resync"));
    this.#namespaces.subscribe((e) => {
      if (e.type === "resync") return;
      const ns = e.object.metadata?.name;
      for (const pa of this.#allocations.list()) {
        if (pa.metadata?.namespace === ns) this.#enqueue(keyOf(pa));
      }
    });
    for (const informer of [this.#namespaces, this.#nodes, this.#pods, this.#allocations]) {
      informer.start();
    }
    await Promise.all(
      [this.#allocations, this.#pods, this.#namespaces, this.#nodes].map((i) => i.synced()),
    );
  }

  /** Stops everything. */
  async stop(): Promise<void> {
    this.#running = false;
    for (const { timer } of this.#timers.values()) clearTimeout(timer);
    this.#timers.clear();
    await Promise.all(
      [this.#allocations, this.#pods, this.#namespaces, this.#nodes].map((i) => i.stop()),
    );
    await Promise.all(this.#workers);
  }

  /** Queues every PodAllocation (e.g. on becoming leader). */
  resyncAll(): void {
    for (const pa of this.#allocations.list()) this.#enqueue(keyOf(pa));
  }

  /** Queues a key; changes go ahead of periodic re-checks. */
  #enqueue(key: string, urgent = true): void {
    if (!this.#running) return;
    if (urgent) {
      this.#queue.delete(key);
      this.#urgent.add(key);
      if (!this.#enqueuedAt.has(key)) this.#enqueuedAt.set(key, performance.now());
    } else if (!this.#urgent.has(key)) {
      this.#queue.add(key);
    }
    this.#metrics.queueDepth.set(this.#queued);
    this.#spawnWorkers();
  }

  get #queued(): number {
    return this.#urgent.size + this.#queue.size;
  }

  /** Starts workers up to the configured concurrency while there is work. */
  #spawnWorkers(): void {
    const limit = this.#options.workers ?? 32;
    while (this.#workers.size < limit && this.#workers.size < this.#queued) {
      const worker: Promise<void> = this.#work().finally(() => {
        this.#workers.delete(worker);
        if (this.#queued > 0 && this.#running) this.#spawnWorkers();
      });
      this.#workers.add(worker);
    }
  }

  #schedule(key: string, afterMs: number): void {
    const at = this.#now() + afterMs;
    const existing = this.#timers.get(key);
    if (existing !== undefined && existing.at <= at) return;
    if (existing !== undefined) clearTimeout(existing.timer);
    this.#timers.set(key, {
      at,
      timer: setTimeout(() => {
        this.#timers.delete(key);
        this.#enqueue(key);
      }, Math.max(0, afterMs)),
    });
  }

  /** Removes and returns the first key of `set` that no worker holds. */
  #next(set: Set<string>): string | undefined {
    for (const candidate of set) {
      if (!this.#active.has(candidate)) {
        set.delete(candidate);
        return candidate;
      }
    }
    return undefined;
  }

  /** One worker: takes keys no other worker holds, urgent ones first, until none is left. */
  async #work(): Promise<void> {
    while (this.#running) {
      const key = this.#next(this.#urgent) ?? this.#next(this.#queue);
      if (key === undefined) return; // queued keys are all in progress; their workers re-check
      this.#metrics.queueDepth.set(this.#queued);
      if (this.#options.canWrite !== undefined && !this.#options.canWrite()) continue; // standby: caches only
      this.#active.add(key);
      const queuedAt = this.#enqueuedAt.get(key);
      this.#enqueuedAt.delete(key);
      const started = performance.now();
      try {
        await this.reconcile(key, queuedAt);
        this.#metrics.reconcileSeconds.observe((performance.now() - started) / 1000);
      } catch (error) {
        this.stats.apiErrors++;
        this.#metrics.apiErrors.inc({ operation: "reconcile" });
        this.#log("error", "reconcile failed", { podAllocation: key, error: errorMessage(error) });
        this.#schedule(key, 5_000);
      } finally {
        this.#active.delete(key);
      }
    }
  }

  /** Reconciles one PodAllocation (`namespace/name`) from the caches: level-based and idempotent. */
  async reconcile(key: string, queuedAt?: number): Promise<void> {
    this.stats.reconciles++;
    const raw = this.#allocations.get(key);
    if (raw === undefined) {
      this.#memory.delete(key);
      return;
    }
    const [namespace, name] = key.split("/");
    const now = this.#now();
    const validated = validatePodAllocation(raw);
    if (!validated.ok) {
      // Garbage from a buggy agent or an old schema: refuse it, record why, never crash.
      this.#count("InvalidSpec");
      await this.#writeStatus(
        namespace,
        name,
        raw.status,
        {
          state: "Skipped",
          conditions: [
            { type: "Applied", status: "False", reason: "InvalidSpec", message: validated.error },
            {
              type: "ResizePending",
              status: "False",
              reason: "None",
              message: "no resize pending",
            },
            {
              type: "Skipped",
              status: "True",
              reason: "InvalidSpec",
              message: `refused: ${validated.error}`,
            },
          ],
        },
        undefined,
        raw.metadata?.generation ?? 0,
        now,
        null,
      );
      return;
    }
    const pa = validated.value;
    const pod = this.#pods.get(key);
    const node = pod?.spec?.nodeName ? this.#nodes.get(pod.spec.nodeName) : undefined;
    const state = pod === undefined
      ? undefined
      : podState(pod, this.#namespaces.get(namespace), node);
    const lastResize = pa.status?.lastResizeTime ? Date.parse(pa.status.lastResizeTime) : null;
    const memory = this.#memory.get(key) ?? emptyMemory(lastResize);
    const decision = decide(now, desiredAllocation(pa), state, memory, this.#options.policy);
    let nextMemory = decision.memory;
    for (const reason of decision.reasons) this.#count(reason);
    let resizedAt: Date | null = null;
    let conditions = decision.conditions;
    const podRef = { apiVersion: "v1", kind: "Pod", namespace, name, uid: pod?.metadata?.uid };
    const paRef = {
      apiVersion: raw.apiVersion ?? "",
      kind: raw.kind ?? "",
      namespace,
      name,
      uid: raw.metadata?.uid,
    };
    if (
      (decision.state === "Skipped" || decision.state === "Failed") &&
      pa.status?.state !== decision.state
    ) {
      // A refusal: tell the pod's and the allocation's owners, once per transition.
      const why = decision.conditions.find((c) => c.type !== "Applied" && c.status === "True") ??
        decision.conditions[0];
      this.#options.events?.record(paRef, "Warning", why.reason, why.message);
      if (pod !== undefined) {
        this.#options.events?.record(podRef, "Warning", `MBCAS${why.reason}`, why.message);
      }
    }
    if (decision.patch !== null && pod !== undefined) {
      const patch = decision.patch.map((p) => ({
        name: p.name,
        cpuLimit: formatMillicores(p.cpuLimitMillicores),
      }));
      const fields = {
        pod: name,
        namespace,
        resize: patch.map((p) => `${p.name}=${p.cpuLimit}`).join(","),
      };
      if (this.#options.dryRun) {
        this.stats.resizes.dryRun++;
        this.#metrics.resizes.inc({ result: "dry_run" });
        this.#log("info", "dry run: would resize", fields);
        conditions = conditions.map((c) =>
          c.type === "Applied" ? { ...c, reason: "DryRun", message: `dry run: ${c.message}` } : c
        );
      } else {
        const wait = this.#limiter.tryTake(pod.spec?.nodeName ?? "", now);
        if (wait > 0) {
          this.stats.resizes.rateLimited++;
          this.#metrics.resizes.inc({ result: "rate_limited" });
          this.#count("RateLimited");
          this.#schedule(key, wait);
          return; // nothing changed yet: no status write
        }
        try {
          await patchPodResize(this.#core, namespace, name, patch);
          this.stats.resizes.accepted++;
          this.#metrics.resizes.inc({ result: "accepted" });
          if (queuedAt !== undefined) {
            this.#metrics.resizeLatency.observe((performance.now() - queuedAt) / 1000);
          }
          nextMemory = recordPatch(nextMemory, now);
          resizedAt = new Date(now);
          this.#log("info", "resized", fields);
          const message = `CPU limits set to ${fields.resize}`;
          this.#options.events?.record(podRef, "Normal", "MBCASResized", message);
          this.#options.events?.record(paRef, "Normal", "Resized", message);
        } catch (error) {
          this.stats.resizes.rejected++;
          this.#metrics.resizes.inc({ result: "rejected" });
          this.#metrics.apiErrors.inc({ operation: "resize" });
          const message = errorMessage(error);
          this.#options.events?.record(podRef, "Warning", "MBCASResizeRejected", message);
          this.#options.events?.record(paRef, "Warning", "ResizeRejected", message);
          this.#log("warn", "resize rejected", {
            ...fields,
            code: statusCode(error),
            reason: message,
          });
          conditions = conditions.map((c) =>
            c.type === "Applied" ? { ...c, reason: "ResizeRejected", message } : c
          );
          this.#schedule(key, 30_000);
        }
      }
    }
    this.#memory.set(key, nextMemory);
    if (decision.requeueAfterMs !== null) this.#schedule(key, decision.requeueAfterMs);
    if (resizedAt !== null) {
      // The patch changes the pod, and the kubelet answers on it: the reconciles those
      // updates trigger record the status (and coalesce under load). One write saved.
      this.#schedule(key, this.#options.policy.confirmTimeoutMs);
      return;
    }
    const lastResizeTime = nextMemory.lastResizeAtMs === null
      ? null
      : new Date(nextMemory.lastResizeAtMs);
    await this.#writeStatus(
      namespace,
      name,
      pa.status,
      { state: decision.state, conditions },
      pod,
      pa.metadata.generation ?? 0,
      now,
      lastResizeTime,
    );
  }

  async #writeStatus(
    namespace: string,
    name: string,
    previous: PodAllocation["status"],
    decision: Parameters<typeof statusFor>[0],
    pod: k8s.V1Pod | undefined,
    generation: number,
    now: number,
    resizedAt: Date | null,
  ): Promise<void> {
    const status = statusFor(decision, pod, generation, previous, new Date(now), resizedAt);
    if (!statusChanged(previous, status)) return;
    try {
      await this.#custom.patchNamespacedCustomObjectStatus(
        { group: GROUP, version: VERSION, namespace, plural: PLURAL, name, body: { status } },
        MERGE_PATCH,
      );
      this.stats.statusWrites++;
    } catch (error) {
      if (statusCode(error) === 404) return; // deleted meanwhile
      throw error;
    }
  }

  #count(reason: string): void {
    this.stats.reasons[reason] = (this.stats.reasons[reason] ?? 0) + 1;
    this.#metrics.skipped.inc({ reason });
  }

  /** The metrics (for the leader gauge and tests). */
  get metrics(): ControllerMetrics {
    return this.#metrics;
  }
}

function keyOf(object: k8s.KubernetesObject): string {
  return `${object.metadata?.namespace}/${object.metadata?.name}`;
}
