/**
 * The controller's imperative shell: informers on PodAllocations, pods,
 * namespaces and nodes; a work queue keyed by PodAllocation; and a level-based
 * reconcile that reads the caches, asks the pure policy what to do, patches
 * `pods/resize`, and records status. Time comes from an injected clock.
 *
 * @module
 */
import type * as k8s from "@kubernetes/client-node";
import {
  formatMillicores,
  GROUP,
  PLURAL,
  type PodAllocation,
  podAllocationPath,
  RESTORE_FINALIZER,
  validatePodAllocation,
  VERSION,
} from "../api/mod.ts";
import {
  errorMessage,
  Informer,
  LeanClient,
  type LeanConfig,
  leanSource,
  leasePath,
  resizePod,
  statusCode,
  withoutManagedFields,
} from "../k8s/lean/mod.ts";
import {
  baselineFromStatus,
  desiredAllocation,
  freshnessSpec,
  lastKnownStatus,
  memoryFromStatus,
  podState,
  resizePendingReason,
  slimNamespace,
  slimNode,
  slimPod,
  staleness,
  statusChanged,
  statusFor,
  type WrittenStatus,
} from "./observe.ts";
import {
  cacheBehind,
  decide,
  type Decision,
  newestResizes,
  nodeAgreement,
  type PodMemory,
  recordPatch,
  RESIZE_BUDGET_WINDOW_MS,
  type ResizePolicyConfig,
  type RestoreIntent,
} from "./policy.ts";
import { HEARTBEAT_LABEL_SELECTOR, heartbeatNode } from "../managed/mod.ts";
import type { ProgressTracker } from "../serve/mod.ts";
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
  /**
   * Whether this replica may write now (leader election); default always.
   * Checked before every write, so no write leaves a replica that has lost,
   * or could have lost, the Lease. Caches stay warm either way.
   */
  canWrite?: () => boolean;
  /**
   * A PodAllocation neither refreshed by its agent nor vouched for by the
   * agent's heartbeat Lease for this many of the agent's market intervals
   * (at least 30 s) is stale: its pod gets its declared limits back (default 12).
   */
  staleAfterIntervals?: number;
  /** Namespace of the agents' heartbeat Leases (default `mbcas-system`). */
  heartbeatNamespace?: string;
  /** A PodAllocation being deleted keeps its finalizer at most this long while its restore fails (default 5 min). */
  restoreGiveUpMs?: number;
  /** Records the reconcile loop's progress (readiness, metrics, watchdog). */
  progress?: ProgressTracker;
  /**
   * Timeout of each write, ms, read per request (default 30 s). With leader
   * election, the time left on this replica's Lease, so that no write is still
   * in flight when a standby could take over.
   */
  writeTimeoutMs?: () => number;
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
  readonly heartbeatAge: Gauge;
  readonly allocations: Gauge;
  readonly resizePending: Gauge;

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
    this.heartbeatAge = registry.add(
      new Gauge(
        "mbcas_controller_agent_heartbeat_age_seconds",
        "Seconds since this replica saw the node agent's heartbeat Lease renewed (renewed every 10 s), by node",
      ),
    );
    this.allocations = registry.add(
      new Gauge(
        "mbcas_controller_allocations",
        "PodAllocations in this replica's cache by state: fresh, stale (neither it nor its agent's heartbeat refreshed in time: declared limits restored), invalid (spec unreadable)",
      ),
    );
    this.resizePending = registry.add(
      new Gauge(
        "mbcas_controller_resize_pending_pods",
        "Pods with a PodAllocation whose PodResizePending condition has this reason (Deferred, Infeasible)",
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

/** Loop names the controller reports to its {@link ProgressTracker}. */
export const CONTROLLER_LOOPS = { informers: "informers" } as const;

/**
 * Pods per list page: a page of whole pods (~20 KB each with a mesh sidecar
 * and managedFields) is parsed before it is slimmed, so the page, not the
 * cache, sets the controller's peak memory while it lists.
 */
const POD_PAGE_SIZE = 100;

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
  readonly #reads: LeanClient;
  readonly #writes: LeanClient;
  readonly #options: ControllerOptions;
  readonly #now: () => number;
  readonly #log: NonNullable<ControllerOptions["log"]>;
  readonly #allocations: Informer<PlainPodAllocation>;
  readonly #pods: Informer<k8s.V1Pod>;
  readonly #namespaces: Informer<k8s.V1Namespace>;
  readonly #nodes: Informer<k8s.V1Node>;
  readonly #heartbeats: Informer<k8s.V1Lease>;
  /** Per node: the agent heartbeat's renewTime last seen, and when (this replica's clock) it changed. */
  readonly #beats = new Map<string, { renewTime: string; seenAtMs: number }>();
  readonly #memory = new Map<string, PodMemory>();
  /**
   * The status this replica last wrote, by `namespace/name`, with the
   * resourceVersion the cache showed when it wrote it: while the cache still
   * shows that version, the write is not in it yet, and the next reconcile
   * compares with what was written (no second write of the same status).
   * Dropped as soon as the cache moves on (so it holds only writes in flight).
   */
  readonly #written = new Map<string, WrittenStatus>();
  /**
   * The resizes of the last minute of pods whose PodAllocation went away (opt-out,
   * a pod that stopped being managed), by `namespace/name`: a PodAllocation
   * created again for the pod within the minute starts with them, so opting out
   * and in again does not reset the pod's resize budget.
   */
  readonly #departed = new Map<string, Pick<PodMemory, "lastResizeAtMs" | "recentResizesAtMs">>();
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
  constructor(connection: LeanConfig, options: ControllerOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
    this.#log = options.log ?? (() => {});
    // Writes are fenced by their own timeout; the informers read with the default one.
    this.#writes = new LeanClient(
      connection,
      options.writeTimeoutMs ? { timeoutMs: options.writeTimeoutMs } : {},
    );
    this.#limiter = new ResizeRateLimiter(
      options.rateLimit.global,
      options.rateLimit.perNode,
      this.#now(),
    );
    const registry = options.metrics ?? new Registry();
    this.#metrics = new ControllerMetrics(registry);
    registry.onRender(() => this.#collectGauges());
    const informerOptions = (name: string) => ({
      name,
      resyncMs: options.resyncMs ?? 30_000,
      log: (level: "info" | "warn", message: string, fields?: Record<string, unknown>) =>
        this.#log(level, message, fields),
    });
    // The informers list and watch through the lean client (src/k8s/lean/):
    // each page is parsed once and every object slimmed as its page arrives,
    // with no client-node (de)serialisation, so a list of 10,000 pods never
    // holds more than a page of whole objects. Every list is paginated, each
    // page bounded by the request timeout, and pods, nodes and namespaces are
    // cached only with the fields the controller reads (a cluster's pods in
    // full would be hundreds of MB: managedFields, env, volumes, images).
    const lean = new LeanClient(connection);
    this.#reads = lean;
    const source = <T>(
      path: string,
      transform: (item: unknown) => T,
      more: { labelSelector?: string; pageSize?: number } = {},
    ) => leanSource<T>(lean, { path, transform, listTimeoutMs: Infinity, ...more });
    this.#allocations = new Informer(
      source(`/apis/${GROUP}/${VERSION}/${PLURAL}`, withoutManagedFields<PlainPodAllocation>),
      { ...informerOptions("podallocations"), transform: withoutManagedFields },
    );
    this.#pods = new Informer(
      source("/api/v1/pods", slimPod, { pageSize: POD_PAGE_SIZE }),
      { ...informerOptions("pods"), transform: slimPod },
    );
    this.#namespaces = new Informer(
      source("/api/v1/namespaces", slimNamespace),
      { ...informerOptions("namespaces"), transform: slimNamespace },
    );
    this.#nodes = new Informer(
      source("/api/v1/nodes", slimNode),
      { ...informerOptions("nodes"), transform: slimNode },
    );
    const heartbeatNamespace = options.heartbeatNamespace ?? "mbcas-system";
    this.#heartbeats = new Informer(
      source(
        leasePath(heartbeatNamespace),
        withoutManagedFields<k8s.V1Lease>,
        { labelSelector: HEARTBEAT_LABEL_SELECTOR },
      ),
      { ...informerOptions("heartbeats"), transform: withoutManagedFields },
    );
  }

  get #informers(): Informer<k8s.KubernetesObject>[] {
    return [this.#allocations, this.#pods, this.#namespaces, this.#nodes, this.#heartbeats];
  }

  /** Whether every cache holds a complete list. */
  get synced(): boolean {
    return this.#informers.every((i) => i.hasSynced);
  }

  /**
   * Starts the informers and the work queue; resolves once the caches are
   * synced. No PodAllocation is reconciled before every cache is synced.
   */
  async start(): Promise<void> {
    this.#running = true;
    this.#allocations.subscribe((e) => {
      const key = keyOf(e.object);
      // The cache moved past a status write of ours: it holds the write (or something newer).
      const written = this.#written.get(key);
      if (written !== undefined && written.basedOn !== e.object.metadata?.resourceVersion) {
        this.#written.delete(key);
      }
      this.#enqueue(key, e.type !== "resync");
    });
    // A pod matters only with a PodAllocation of the same key; any other pod's
    // event costs the cache update alone. (A PodAllocation created later is
    // queued by its own event.)
    this.#pods.subscribe((e) => {
      const key = keyOf(e.object);
      if (this.#allocations.get(key) !== undefined) this.#enqueue(key, e.type !== "resync");
    });
    this.#namespaces.subscribe((e) => {
      if (e.type === "resync") return;
      const ns = e.object.metadata?.name;
      for (const pa of this.#allocations.list()) {
        if (pa.metadata?.namespace === ns) this.#enqueue(keyOf(pa));
      }
    });
    this.#heartbeats.subscribe((e) => {
      const node = heartbeatNode(e.object);
      if (node === null) return;
      const renewTime = e.object.spec?.renewTime ? String(e.object.spec.renewTime) : "";
      if (this.#beats.get(node)?.renewTime !== renewTime) {
        this.#beats.set(node, { renewTime, seenAtMs: this.#now() });
      }
    });
    // The watches are alive as long as every informer heard from the API server lately
    // (an event, a bookmark, a completed list): checked at every event, resyncs included
    // (they come from a timer, so a dead watch cannot hide behind them).
    const beat = () => {
      const now = performance.now();
      const oldest = Math.min(...this.#informers.map((i) => i.stats.lastActivityMs));
      this.#options.progress?.beat(CONTROLLER_LOOPS.informers, this.#now() - (now - oldest));
    };
    for (const informer of this.#informers) informer.subscribe(beat);
    for (const informer of [this.#heartbeats, this.#namespaces, this.#nodes, this.#pods]) {
      informer.start();
    }
    this.#allocations.start();
    await Promise.all(this.#informers.map((i) => i.synced()));
    beat();
    this.#spawnWorkers(); // what was queued while the caches filled
  }

  /** Stops everything. */
  async stop(): Promise<void> {
    this.#running = false;
    for (const { timer } of this.#timers.values()) clearTimeout(timer);
    this.#timers.clear();
    await Promise.all(this.#informers.map((i) => i.stop()));
    await Promise.all(this.#workers);
    this.#reads.close();
    this.#writes.close();
  }

  /**
   * Forgets what this replica remembered of every pod (on becoming leader):
   * the next reconciles rebuild it from status, which the previous leader
   * kept up to date.
   */
  forgetMemory(): void {
    this.#memory.clear();
    this.#written.clear();
  }

  /** A new memory with the resizes of the pod's earlier PodAllocation, if it went away within the budget's window. */
  #withDeparted(key: string, memory: PodMemory, nowMs: number): PodMemory {
    const departed = this.#departed.get(key);
    this.#departed.delete(key);
    const earlier = (departed?.recentResizesAtMs ?? []).filter((t) =>
      t > nowMs - RESIZE_BUDGET_WINDOW_MS
    );
    if (earlier.length === 0) return memory;
    const last = Math.max(
      memory.lastResizeAtMs ?? -Infinity,
      departed!.lastResizeAtMs ?? -Infinity,
    );
    return {
      ...memory,
      lastResizeAtMs: Number.isFinite(last) ? last : null,
      recentResizesAtMs: newestResizes([...(memory.recentResizesAtMs ?? []), ...earlier]),
    };
  }

  /** Drops departed pods whose resizes have all left the budget's window. */
  #forgetDeparted(nowMs: number): void {
    for (const [key, departed] of this.#departed) {
      if ((departed.recentResizesAtMs ?? []).every((t) => t <= nowMs - RESIZE_BUDGET_WINDOW_MS)) {
        this.#departed.delete(key);
      }
    }
  }

  /** Whether this replica may write now. */
  #mayWrite(): boolean {
    return this.#options.canWrite === undefined || this.#options.canWrite();
  }

  /** Why a PodAllocation is stale (its agent stopped vouching for it), or null. */
  #staleness(pa: PodAllocation, now: number): RestoreIntent | null {
    return staleness(
      pa.spec,
      this.#beats.get(pa.spec.nodeName)?.seenAtMs,
      this.#options.staleAfterIntervals ?? 12,
      now,
    );
  }

  /**
   * Refreshes the gauges read from the caches, just before each scrape: the
   * age of every node's agent heartbeat, the PodAllocations by freshness and
   * the managed pods whose resize the kubelet holds pending.
   */
  #collectGauges(): void {
    const now = this.#now();
    const { heartbeatAge, allocations, resizePending } = this.#metrics;
    heartbeatAge.clear();
    for (const lease of this.#heartbeats.list()) {
      const node = heartbeatNode(lease);
      const seen = node === null ? undefined : this.#beats.get(node)?.seenAtMs;
      if (seen !== undefined) heartbeatAge.set(Math.max(0, (now - seen) / 1000), { node: node! });
    }
    const states = { fresh: 0, stale: 0, invalid: 0 };
    const pending: Record<string, number> = { Deferred: 0, Infeasible: 0 };
    for (const raw of this.#allocations.list()) {
      const spec = freshnessSpec(raw.spec);
      if (spec === null) {
        states.invalid++;
      } else {
        const stale = staleness(
          spec,
          this.#beats.get(spec.nodeName)?.seenAtMs,
          this.#options.staleAfterIntervals ?? 12,
          now,
        );
        states[stale === null ? "fresh" : "stale"]++;
      }
      const pod = this.#pods.get(keyOf(raw));
      const reason = pod === undefined ? null : resizePendingReason(pod);
      if (reason !== null) pending[reason] = (pending[reason] ?? 0) + 1;
    }
    for (const [state, count] of Object.entries(states)) allocations.set(count, { state });
    for (const [reason, count] of Object.entries(pending)) resizePending.set(count, { reason });
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
    // Nothing is judged from partial caches: a pod whose namespace is not listed yet
    // would look opted out (and be restored), one not listed yet would look gone.
    if (!this.synced) return;
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
      const gone = this.#memory.get(key);
      this.#memory.delete(key);
      this.#written.delete(key);
      if ((gone?.recentResizesAtMs ?? []).length > 0) {
        this.#departed.set(key, {
          lastResizeAtMs: gone!.lastResizeAtMs,
          recentResizesAtMs: gone!.recentResizesAtMs,
        });
      }
      this.#forgetDeparted(this.#now());
      return;
    }
    const [namespace, name] = key.split("/");
    const now = this.#now();
    const deletedAt = raw.metadata?.deletionTimestamp;
    const ours = raw.metadata?.finalizers?.includes(RESTORE_FINALIZER) ?? false;
    if (deletedAt !== undefined && deletedAt !== null && !ours) return; // going, nothing of ours
    const validated = validatePodAllocation(raw);
    if (!validated.ok) {
      // Garbage from a buggy agent or an old schema: refuse it, record why, never crash.
      this.#count("InvalidSpec");
      if (ours && deletedAt) {
        await this.#releaseFinalizer(
          raw,
          "its spec is invalid, so nothing can be restored from it",
        );
        return;
      }
      if (!this.#mayWrite()) return;
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
    // A replica new to this allocation rebuilds its memory from status; resizes of this pod
    // that status never recorded count from now.
    const memory = this.#memory.get(key) ?? this.#withDeparted(
      key,
      memoryFromStatus(
        pa.status,
        pod !== undefined && pod.metadata?.uid === pa.spec.podUID
          ? { generation: pod.metadata?.generation ?? 0, nowMs: now }
          : undefined,
      ),
      now,
    );
    if (
      pod !== undefined &&
      cacheBehind(memory, {
        uid: pod.metadata?.uid ?? "",
        generation: pod.metadata?.generation ?? 0,
      })
    ) {
      // Our own resize is not in the pod cache yet: judge the pod once it is.
      this.#count("CacheBehind");
      this.#schedule(key, 500);
      return;
    }
    const restore: RestoreIntent | null = deletedAt
      ? { reason: "Deleted", message: "the PodAllocation is being deleted" }
      : this.#staleness(pa, now);
    const desired = desiredAllocation(pa);
    const agreement = nodeAgreement(desired, state);
    const decision = decide(now, desired, state, memory, this.#options.policy, {
      baseline: baselineFromStatus(pa.status),
      restore,
    });
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
    if (!this.#mayWrite()) return; // fenced: lost (or may have lost) the Lease
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
      // Before MBCAS first changes the pod: the finalizer (deleting the allocation
      // restores the pod) and the declared limits to restore, both in the API.
      if (!deletedAt && !ours) await this.#addFinalizer(raw);
      if (pa.status?.baseline === undefined) {
        await this.#writeStatus(
          namespace,
          name,
          pa.status,
          { ...decision, memory: nextMemory, nodeAgreement: agreement },
          pod,
          pa.metadata.generation ?? 0,
          now,
          null,
        );
      }
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
        // Restores are never rate limited: they give back what MBCAS took.
        const wait = decision.restoring
          ? 0
          : this.#limiter.tryTake(pod.spec?.nodeName ?? "", now, decision.urgency ?? "protective");
        if (wait > 0) {
          this.stats.resizes.rateLimited++;
          this.#metrics.resizes.inc({ result: "rate_limited" });
          this.#count("RateLimited");
          this.#schedule(key, wait);
          return; // nothing changed yet: no status write
        }
        if (!this.#mayWrite()) return;
        try {
          const patched = await resizePod(this.#writes, namespace, name, patch);
          this.stats.resizes.accepted++;
          this.#metrics.resizes.inc({ result: "accepted" });
          if (queuedAt !== undefined) {
            this.#metrics.resizeLatency.observe((performance.now() - queuedAt) / 1000);
          }
          const generation = patched.metadata?.generation;
          nextMemory = recordPatch(
            nextMemory,
            now,
            generation === undefined ? null : { uid: patched.metadata?.uid ?? "", generation },
          );
          resizedAt = new Date(now);
          this.#log("info", decision.restoring ? "restored declared limits" : "resized", {
            ...fields,
            ...(decision.restoring ? { why: restoreReason(decision) } : {}),
          });
          const message = decision.restoring
            ? `CPU limits restored to the declared ${fields.resize} (${restoreReason(decision)})`
            : `CPU limits set to ${fields.resize}`;
          const reason = decision.restoring ? "Restored" : "Resized";
          this.#options.events?.record(podRef, "Normal", `MBCAS${reason}`, message);
          this.#options.events?.record(paRef, "Normal", reason, message);
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
    if (deletedAt) {
      // The restore is done (or there is nothing to restore): let the object go.
      const since = now - Date.parse(String(deletedAt));
      const giveUp = this.#options.restoreGiveUpMs ?? 300_000;
      if (decision.patch === null && decision.state !== "Pending") {
        await this.#releaseFinalizer(
          raw,
          decision.state === "Restored"
            ? "the declared limits are back in force"
            : decision.conditions.find((c) => c.type === "Skipped")?.message ?? decision.state,
        );
        return;
      }
      if (since > giveUp) {
        await this.#releaseFinalizer(
          raw,
          `the restore did not complete within ${Math.round(giveUp / 1000)} s; giving up`,
        );
        return;
      }
      this.#schedule(key, 5_000);
    }
    if (resizedAt !== null) {
      // The patch changes the pod, and the kubelet answers on it: the reconciles those
      // updates trigger record the status (and coalesce under load). One write saved.
      this.#schedule(key, this.#options.policy.confirmTimeoutMs);
      return;
    }
    const lastResizeTime = nextMemory.lastResizeAtMs === null
      ? null
      : new Date(nextMemory.lastResizeAtMs);
    if (!this.#mayWrite()) return;
    await this.#writeStatus(
      namespace,
      name,
      pa.status,
      {
        state: decision.state,
        conditions,
        baseline: decision.baseline,
        memory: nextMemory,
        nodeAgreement: agreement,
      },
      pod,
      pa.metadata.generation ?? 0,
      now,
      lastResizeTime,
    );
  }

  /** Adds the restore finalizer (optimistic concurrency: a conflict retries the reconcile). */
  async #addFinalizer(raw: PlainPodAllocation): Promise<void> {
    if (!this.#mayWrite()) throw new Error("not the leader any more");
    await this.#patchFinalizers(raw, [...(raw.metadata?.finalizers ?? []), RESTORE_FINALIZER]);
  }

  /** Removes the restore finalizer, with a log line saying why. */
  async #releaseFinalizer(raw: PlainPodAllocation, why: string): Promise<void> {
    if (!this.#mayWrite()) return;
    try {
      await this.#patchFinalizers(
        raw,
        (raw.metadata?.finalizers ?? []).filter((f) => f !== RESTORE_FINALIZER),
      );
      this.#log("info", "released a deleted PodAllocation", { podAllocation: keyOf(raw), why });
    } catch (error) {
      if (statusCode(error) !== 404) throw error;
    }
  }

  /** Sets a PodAllocation's finalizers, at the resourceVersion they were read at. */
  async #patchFinalizers(raw: PlainPodAllocation, finalizers: string[]): Promise<void> {
    await this.#writes.mergePatch(
      podAllocationPath(raw.metadata!.namespace!, raw.metadata!.name!),
      { metadata: { resourceVersion: raw.metadata?.resourceVersion, finalizers } },
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
    const key = `${namespace}/${name}`;
    const basedOn = this.#allocations.get(key)?.metadata?.resourceVersion;
    const last = lastKnownStatus(this.#written.get(key), basedOn, previous);
    if (last === previous) this.#written.delete(key);
    const status = statusFor(decision, pod, generation, last, new Date(now), resizedAt);
    if (!statusChanged(last, status)) return;
    try {
      await this.#writes.mergePatch(`${podAllocationPath(namespace, name)}/status`, { status });
      this.stats.statusWrites++;
      this.#written.set(key, { basedOn, status });
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

function restoreReason(decision: Decision): string {
  return decision.conditions.find((c) => c.type === "Skipped")?.reason ?? "restore";
}

function keyOf(object: k8s.KubernetesObject): string {
  return `${object.metadata?.namespace}/${object.metadata?.name}`;
}
