/**
 * The per-node agent loop, the imperative shell around the estimator, the
 * bid construction and the solver: it watches only its own node's pods (and
 * its Node, namespaces for the opt-in label, and its node's PodAllocations),
 * samples every managed container's cgroup each `samplingIntervalMs`, clears
 * the node's market each `marketIntervalMs` (and at once when a container
 * becomes heavily throttled), and publishes one PodAllocation per managed pod
 * when its allocation changed meaningfully. Clocks and timers are injected.
 *
 * @module
 */
import type * as k8s from "@kubernetes/client-node";
import {
  API_VERSION,
  formatMillicores,
  GROUP,
  KIND,
  parseMillicores,
  PLURAL,
  type PodAllocation,
  podAllocationPath,
  VERSION,
} from "../api/core.ts";
import {
  bareContainerID,
  type CgroupLayout,
  CgroupSampler,
  computeSignals,
  type CpuSample,
  cpuWeightFile,
  detectLayout,
  discover,
  readCpuUsageNanos,
  readCpuWeight,
  writeCpuWeight,
} from "../cgroup/mod.ts";
import {
  containerIneligibility,
  HEARTBEAT_LABELS,
  HEARTBEAT_PERIOD_MS,
  heartbeatLeaseName,
  minLimitRule,
  otherCpuUsers,
  podIneligibility,
  tierOf,
} from "../managed/mod.ts";
import { TokenBucket } from "../controller/rate_limit.ts";
import type { ProgressTracker } from "../serve/mod.ts";
import {
  errorMessage,
  Informer,
  LeanClient,
  type LeanConfig,
  leanConfigFromKubeConfig,
  leanSource,
  leasePath,
  microTime,
  statusCode,
  withoutManagedFields,
} from "../k8s/lean/mod.ts";
import { type ProtectedLimitMode, settleMarket, type Settlement } from "../solver/core.ts";
import { Counter, Gauge, Histogram, Registry, Series } from "../metrics/mod.ts";
import {
  type BidConfig,
  buildMarket,
  type PodView,
  recentPercentile,
  worthPublishing,
} from "./bids.ts";
import {
  DEFAULT_ESTIMATOR,
  type DemandState,
  type EstimatorConfig,
  needsPressureOnlyWhenThrottled,
  outgrewClearing,
  updateDemand,
} from "./estimator.ts";
import { weightAction } from "./yield.ts";

/** Options of the agent. */
export interface AgentOptions {
  /** This node's name (from the downward API). */
  nodeName: string;
  /** Where the host's cgroup tree is mounted. */
  cgroupRoot: string;
  /** Sampling period (default 1 s). */
  samplingIntervalMs?: number;
  /** Market period (default 5 s). */
  marketIntervalMs?: number;
  /** Throttled ratio that triggers an immediate market clearing (default 0.5). */
  heavyThrottleRatio?: number;
  /**
   * How long a protected container's need must stay lower before the CPU it
   * no longer uses goes to the elastic pods (default 5 s); a rise counts at once.
   */
  elasticReleaseMs?: number;
  /**
   * Whether elastic pods yield in the kernel (default true): the agent lowers
   * their pod cgroups' CPU weight to the lowest, so every other pod gets the
   * CPU it wants first, and their limits may then reach into all the CPU the
   * protected pods might leave (src/agent/yield.ts). Needs write access to
   * the cgroup tree; without it the elastic limits leave the protected pods'
   * live use free instead.
   */
  elasticYield?: boolean;
  /**
   * How protected pods' limits are set (default `target`): at their targets,
   * cut when the protected tier is contended, or at their caps (`cap`), so
   * a protected pod is never throttled below its cap and the kernel's CPU
   * weights share a contended node (`protectedLimit` in src/solver).
   */
  protectedLimit?: ProtectedLimitMode;
  /** Demand estimator tuning. */
  estimator?: EstimatorConfig;
  /** Bid tuning. */
  bids?: BidConfig;
  /** Publishing hysteresis and write rate (defaults 5%, 20m, 5 writes/s, burst 20). */
  publish?: {
    minChangeFraction: number;
    minChangeMillicores: number;
    writesPerSecond: number;
    burst: number;
  };
  /** Namespace of this agent's heartbeat Lease (default `mbcas-system`). */
  namespace?: string;
  /** Wall clock, ms (default Date.now). */
  now?: () => number;
  /** Registers the agent's metrics here. */
  metrics?: Registry;
  /** Records the loops' progress (readiness, metrics, watchdog). */
  progress?: ProgressTracker;
  /** Log sink. */
  log?: (
    level: "debug" | "info" | "warn" | "error",
    message: string,
    fields?: Record<string, unknown>,
  ) => void;
}

/** The agent's Prometheus metrics. */
export class AgentMetrics {
  readonly usage: Gauge;
  readonly throttledRatio: Gauge;
  readonly demand: Gauge;
  readonly allocation: Gauge;
  readonly guarantee: Gauge;
  readonly price: Gauge;
  readonly elasticBudget: Gauge;
  readonly capacity: Gauge;
  readonly clearingSeconds: Histogram;
  readonly writes: Counter;
  readonly samplingErrors: Counter;
  readonly yielding: Gauge;
  readonly weightWrites: Counter;

  /** Creates and registers the metrics. */
  constructor(registry: Registry) {
    this.usage = registry.add(
      new Gauge("mbcas_agent_container_usage_millicores", "CPU used, per container"),
    );
    this.throttledRatio = registry.add(
      new Gauge(
        "mbcas_agent_container_throttled_ratio",
        "Share of CFS periods throttled, per container",
      ),
    );
    this.demand = registry.add(
      new Gauge(
        "mbcas_agent_container_demand_millicores",
        "Estimated CPU need (headroom included), per container",
      ),
    );
    this.allocation = registry.add(
      new Gauge(
        "mbcas_agent_container_allocation_millicores",
        "CPU limit the market set, per container",
      ),
    );
    this.guarantee = registry.add(
      new Gauge(
        "mbcas_agent_container_guarantee_millicores",
        "CPU the market guarantees under contention, per container",
      ),
    );
    this.elasticBudget = registry.add(
      new Gauge(
        "mbcas_agent_node_elastic_budget_millicores",
        "CPU the node's elastic pods may run on together",
      ),
    );
    this.capacity = registry.add(
      new Gauge(
        "mbcas_agent_node_capacity_millicores",
        "CPU the node's market divides (allocatable, less unmanaged pods' requests and the reserve)",
      ),
    );
    this.price = registry.add(
      new Gauge(
        "mbcas_agent_node_price",
        "The node market's price (weight per millicore); 0 when uncontended",
      ),
    );
    this.clearingSeconds = registry.add(
      new Histogram(
        "mbcas_agent_market_clearing_duration_seconds",
        "Time to build and clear the node's market",
        [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1],
      ),
    );
    this.writes = registry.add(
      new Counter("mbcas_agent_api_writes_total", "PodAllocation writes by operation and result"),
    );
    this.samplingErrors = registry.add(
      new Counter("mbcas_agent_sampling_errors_total", "cgroup reads that gave no signal, by kind"),
    );
    this.yielding = registry.add(
      new Gauge(
        "mbcas_agent_elastic_pods_yielding",
        "Elastic pods at the lowest CPU weight (yielding in the kernel), and those that should be",
      ),
    );
    this.weightWrites = registry.add(
      new Counter(
        "mbcas_agent_cpu_weight_writes_total",
        "Pod cgroup CPU weight writes, by action (lower, restore) and result",
      ),
    );
  }
}

/** Loop names the agent reports to its {@link ProgressTracker}. */
export const AGENT_LOOPS = { market: "market", sampling: "sampling" } as const;

/** Usage samples kept per container for {@link recentPercentile} (one minute at 1 s). */
const USAGE_WINDOW = 60;
/** A container's estimate is fresh while its last good signal is at most this many sampling intervals old. */
const FRESH_SAMPLES = 3;

/**
 * The informers keep only what the agent reads (like client-go's transforms;
 * each is idempotent): never `metadata.managedFields`, often the largest part
 * of an object; of its Node the CPU capacity, of namespaces their metadata.
 */
function metadataOnly(object: unknown): unknown {
  const o = withoutManagedFields(object) as { metadata?: unknown };
  return { metadata: o.metadata };
}

function nodeCapacity(object: unknown): unknown {
  const o = metadataOnly(object) as { metadata?: unknown };
  const status = (object as k8s.V1Node).status;
  return {
    metadata: o.metadata,
    status: { allocatable: status?.allocatable, capacity: status?.capacity },
  };
}

/** What the agent knows about one container between samples. */
interface ContainerTrack {
  path: string;
  previous: CpuSample | null;
  demand: DemandState | null;
  usageMillicores: number | null;
  throttledRatio: number;
  /** Recent usage samples, newest last (at most {@link USAGE_WINDOW}). */
  usageWindow: number[];
  /** Measured needs (usage + throttled time) of the last samples, newest last. */
  needWindow: number[];
  /** When the last good signal was computed (wall clock, ms); null before the first. */
  signalAtMs: number | null;
  /** The demand estimate the last clearing used, millicores; null before one used it. */
  clearedDemandMillicores: number | null;
  /** An "unreadable" sampling error was logged for this container. */
  warnedUnreadable?: boolean;
}

/** Counters, for metrics and tests. */
export interface AgentStats {
  /** Sampling passes. */
  samples: number;
  /** Sampling errors (vanished, missing, malformed, unreadable, resets). */
  sampleErrors: number;
  /** Market clearings. */
  clearings: number;
  /** PodAllocations created or updated. */
  writes: number;
  /** PodAllocations deleted. */
  deletes: number;
  /** Writes held back by hysteresis. */
  heldByHysteresis: number;
}

/** The node agent. */
export class NodeAgent {
  readonly stats: AgentStats = {
    samples: 0,
    sampleErrors: 0,
    clearings: 0,
    writes: 0,
    deletes: 0,
    heldByHysteresis: 0,
  };
  /** The last settlement of the market, for tests and metrics. */
  lastClearing: { at: number; clearing: Settlement; views: PodView[] } | null = null;
  readonly #o:
    & Required<Omit<AgentOptions, "log" | "now" | "metrics" | "progress">>
    & Pick<AgentOptions, "log" | "progress">;
  readonly #now: () => number;
  readonly #api: LeanClient;
  readonly #pods: Informer<k8s.V1Pod>;
  readonly #node: Informer<k8s.V1Node>;
  readonly #namespaces: Informer<k8s.V1Namespace>;
  readonly #allocations: Informer<PodAllocation & k8s.KubernetesObject>;
  readonly #tracks = new Map<string, ContainerTrack>(); // by bare container id
  readonly #bucket: TokenBucket;
  readonly #metrics: AgentMetrics;
  #layout: CgroupLayout | null = null;
  #sampler: CgroupSampler | null = null;
  #paths = new Map<string, string>(); // bare container id -> cgroup path
  #kubepodsRoots: string[] = [];
  /** The last reading of the machine's and the pods' CPU time, for the system's usage. */
  #machine: { atMs: number; rootNs: number; podsNs: number } | null = null;
  /** CPU used outside every pod over the last samples, millicores, newest last. */
  #systemWindow: number[] = [];
  #discoveredAt = 0;
  #timers: ReturnType<typeof setInterval>[] = [];
  #clearing: Promise<void> | null = null;
  #heartbeatAt = Number.NEGATIVE_INFINITY;
  /**
   * The protected containers' tracks at the last clearing, the sum of their
   * live needs then, and the rise that clears the market at once; null when
   * no elastic pod bid (nothing to lower).
   */
  #protectedAtClearing: { tracks: ContainerTrack[]; need: number; threshold: number } | null = null;
  /** Pod cgroup paths by pod UID, from the last discovery. */
  #podPaths = new Map<string, string>();
  /** Managed elastic pods (by namespace/name) at the last clearing: the ones that should yield. */
  #elasticPods = new Set<string>();
  /** Elastic pods whose weight is at the lowest and recorded (by namespace/name), at the last reconciliation. */
  #yielding = new Set<string>();
  /** The kubelet's weight per pod UID, as recorded or read before lowering, for this process's life. */
  #remembered = new Map<string, number>();
  /** What each pod's PodAllocation should record as its kubelet weight (null: nothing), by namespace/name. */
  #records = new Map<string, number | null>();
  /** Pods whose weight could not be written, warned about once (by UID). */
  #weightWarned = new Set<string>();

  /**
   * Creates the agent; call {@link NodeAgent.start}. It talks to the API
   * server through the lean client (src/k8s/lean/): `connection` says where
   * (a client-node `KubeConfig` is read for its current cluster and user).
   */
  constructor(connection: LeanConfig | k8s.KubeConfig, options: AgentOptions) {
    this.#o = {
      samplingIntervalMs: 1000,
      marketIntervalMs: 5000,
      heavyThrottleRatio: 0.5,
      elasticReleaseMs: 5000,
      elasticYield: true,
      protectedLimit: "target",
      estimator: DEFAULT_ESTIMATOR,
      bids: { maxPerContainerMillicores: null, reserveMillicores: 0 },
      publish: { minChangeFraction: 0.05, minChangeMillicores: 20, writesPerSecond: 5, burst: 20 },
      namespace: "mbcas-system",
      ...options,
    };
    this.#now = options.now ?? Date.now;
    this.#metrics = new AgentMetrics(options.metrics ?? new Registry());
    this.#bucket = new TokenBucket(
      this.#o.publish.writesPerSecond,
      this.#o.publish.burst,
      this.#now(),
    );
    const api = new LeanClient(
      "getCurrentCluster" in connection ? leanConfigFromKubeConfig(connection) : connection,
    );
    this.#api = api;
    const node = options.nodeName;
    const informer = <T extends k8s.KubernetesObject>(
      name: string,
      path: string,
      fieldSelector: string | undefined,
      transform: (object: unknown) => unknown,
    ) =>
      new Informer<T>(leanSource<T>(api, { path, fieldSelector }), {
        name,
        resyncMs: 60_000,
        transform,
      });
    this.#pods = informer("pods", "/api/v1/pods", `spec.nodeName=${node}`, withoutManagedFields);
    this.#node = informer("node", "/api/v1/nodes", `metadata.name=${node}`, nodeCapacity);
    this.#namespaces = informer("namespaces", "/api/v1/namespaces", undefined, metadataOnly);
    this.#allocations = informer(
      "podallocations",
      `/apis/${GROUP}/${VERSION}/${PLURAL}`,
      `spec.nodeName=${node}`,
      withoutManagedFields,
    );
  }

  /** Whether the caches are synced and the cgroup tree was found. */
  get ready(): boolean {
    return this.#layout !== null &&
      [this.#pods, this.#node, this.#namespaces, this.#allocations].every((i) => i.hasSynced);
  }

  /** Starts watching, sampling and clearing. */
  async start(): Promise<void> {
    this.#layout = detectLayout(this.#o.cgroupRoot);
    // The agent takes limits from the pod spec: the CFS quota need not be read every second;
    // nor PSI, which the estimator uses only for a throttled container.
    this.#sampler = new CgroupSampler(this.#layout, {
      slowLimits: true,
      pressureWhenThrottled: needsPressureOnlyWhenThrottled(this.#o.estimator),
    });
    for (const i of [this.#pods, this.#node, this.#namespaces, this.#allocations]) i.start();
    await Promise.all(
      [this.#pods, this.#node, this.#namespaces, this.#allocations].map((i) => i.synced()),
    );
    this.#pods.subscribe((e) => {
      if (e.type !== "resync") this.#discoveredAt = 0; // pods changed: rediscover cgroups
    });
    this.sampleOnce();
    this.#timers.push(setInterval(() => this.sampleOnce(), this.#o.samplingIntervalMs));
    this.#timers.push(setInterval(() => void this.clearAndPublish(), this.#o.marketIntervalMs));
  }

  /**
   * Stops everything. Every pod this agent lowered gets the kubelet's weight
   * back first (their records stay: a new agent lowers them again).
   */
  async stop(): Promise<void> {
    for (const t of this.#timers) clearInterval(t);
    this.#timers = [];
    await this.#clearing;
    this.#restoreAllWeights();
    await Promise.all(
      [this.#pods, this.#node, this.#namespaces, this.#allocations].map((i) => i.stop()),
    );
    this.#sampler?.close();
    this.#api.close();
  }

  /** Samples every container on the node once and updates its demand estimate. */
  sampleOnce(): void {
    if (this.#layout === null || this.#sampler === null) return;
    const now = this.#now();
    // Rediscover when the node's pods changed (the pod watch resets the time), else once a minute.
    if (now - this.#discoveredAt > 60_000) this.#rediscover(now);
    let heavy = false;
    const sampler = this.#sampler;
    const needSamples = this.#needSamples();
    // forEach, not for-of: no entry array per container (the agent runs
    // without V8's optimising compilers, which would remove them).
    this.#paths.forEach((path, id) => {
      if (this.#sampleContainer(sampler, id, path, now, needSamples)) heavy = true;
    });
    this.#sampleSystem();
    this.#reconcileWeights();
    this.stats.samples++;
    this.#o.progress?.beat(AGENT_LOOPS.sampling, now);
    // React now when a container just became heavily throttled (or, heavily
    // throttled, outgrew what its last clearing gave it), or when the protected
    // pods' need rose enough that the elastic limits must come down.
    if (heavy || this.#protectedNeedRose()) void this.clearAndPublish();
  }

  /**
   * Samples one container and updates its track; true when it just became
   * heavily throttled, or, heavily throttled, outgrew its last clearing.
   */
  #sampleContainer(
    sampler: CgroupSampler,
    id: string,
    path: string,
    now: number,
    needSamples: number,
  ): boolean {
    let heavy = false;
    const track = this.#tracks.get(id) ?? this.#newTrack(id, path);
    const result = sampler.read(path, performance.now());
    if (result.status !== "ok") {
      this.stats.sampleErrors++;
      this.#metrics.samplingErrors.inc({ kind: result.status });
      if (result.status === "unreadable" && !track.warnedUnreadable) {
        // Once per container: a node whose cgroup files this user may not read.
        track.warnedUnreadable = true;
        this.#o.log?.("warn", "cannot read a container's cgroup files", {
          container: id,
          detail: result.detail,
        });
      }
      track.previous = null;
      return false;
    }
    if (track.previous !== null) {
      const signals = computeSignals(track.previous, result.sample);
      if (signals.status === "ok") {
        const s = signals.signals;
        // The previous interval's ratio: only the step into heavy throttling triggers a clearing.
        const wasThrottled = track.throttledRatio >= this.#o.heavyThrottleRatio;
        track.usageMillicores = s.usageMillicores;
        track.throttledRatio = s.throttledRatio;
        track.signalAtMs = now;
        track.usageWindow.push(s.usageMillicores);
        if (track.usageWindow.length > USAGE_WINDOW) track.usageWindow.shift();
        const observation = {
          atMs: now,
          usageMillicores: s.usageMillicores,
          throttledRatio: s.throttledRatio,
          throttledMillicores: s.throttledMillicores,
          psiSomeStallRatio: s.psiSomeStallRatio,
        };
        // What it takes now: usage plus throttled time (PSI, which also
        // rises with contention the elastic pods cause, is left out here).
        track.needWindow.push(s.usageMillicores + Math.max(0, s.throttledMillicores));
        if (track.needWindow.length > needSamples) track.needWindow.shift();
        track.demand = updateDemand(track.demand, observation, this.#o.estimator);
        if (
          s.throttledRatio >= this.#o.heavyThrottleRatio &&
          (!wasThrottled ||
            outgrewClearing(track.clearedDemandMillicores, track.demand.demandMillicores))
        ) heavy = true;
      } else {
        this.stats.sampleErrors++;
        this.#metrics.samplingErrors.inc({ kind: signals.status });
      }
    }
    track.previous = result.sample;
    return heavy;
  }

  /**
   * The CPU the machine used outside every pod since the last sample (the
   * root cgroup's usage minus the kubelet trees'), kept for the window of
   * live needs; nothing when the root's counter is unreadable.
   */
  #sampleSystem(): void {
    const layout = this.#layout!;
    const atMs = performance.now();
    const rootNs = readCpuUsageNanos(layout, "/");
    let podsNs = 0;
    for (const root of this.#kubepodsRoots) podsNs += readCpuUsageNanos(layout, root) ?? 0;
    const previous = this.#machine;
    this.#machine = rootNs === null ? null : { atMs, rootNs, podsNs };
    if (rootNs === null || previous === null || atMs <= previous.atMs) return;
    const system = ((rootNs - previous.rootNs) - (podsNs - previous.podsNs)) /
      (atMs - previous.atMs) / 1000;
    if (!Number.isFinite(system)) return;
    this.#systemWindow.push(Math.max(0, system));
    if (this.#systemWindow.length > this.#needSamples()) this.#systemWindow.shift();
  }

  /** Samples in the window of live needs: the elastic release time, at least one sample. */
  #needSamples(): number {
    return Math.max(1, Math.round(this.#o.elasticReleaseMs / this.#o.samplingIntervalMs) + 1);
  }

  /**
   * Whether the protected containers' newest needs add up to more than at the
   * last clearing by at least 5% of the elastic pods' market (at least 50m):
   * the elastic limits may be in their way.
   */
  #protectedNeedRose(): boolean {
    const last = this.#protectedAtClearing;
    if (last === null) return false;
    let now = 0;
    for (const track of last.tracks) now += track.needWindow.at(-1) ?? 0;
    return now - last.need >= last.threshold;
  }

  #newTrack(id: string, path: string): ContainerTrack {
    // After an agent restart, start from the demand last published, so one sample never cuts it.
    let demand: DemandState | null = null;
    for (const pa of this.#allocations.list()) {
      const pod = this.#pods.list().find((p) => p.metadata?.uid === pa.spec.podUID);
      const status = pod?.status?.containerStatuses?.find((s) =>
        s.containerID && bareContainerID(s.containerID) === id
      );
      const evidence = pa.spec.containers.find((c) => c.name === status?.name)?.evidence;
      if (evidence !== undefined) {
        demand = { demandMillicores: evidence.demandMillicores, atMs: this.#now() };
      }
    }
    const track: ContainerTrack = {
      path,
      previous: null,
      demand,
      usageMillicores: null,
      throttledRatio: 0,
      usageWindow: [],
      needWindow: [],
      signalAtMs: null,
      clearedDemandMillicores: null,
    };
    this.#tracks.set(id, track);
    return track;
  }

  #rediscover(now: number): void {
    const ids = new Set<string>();
    for (const pod of this.#pods.list()) {
      const statuses = [
        ...(pod.status?.containerStatuses ?? []),
        ...(pod.status?.initContainerStatuses ?? []), // sidecars and init containers use CPU too
      ];
      for (const s of statuses) {
        if (s.containerID && s.state?.running !== undefined) {
          ids.add(bareContainerID(s.containerID));
        }
      }
    }
    const found = discover(this.#layout!, { knownContainerIDs: ids });
    if (found.kubepodsRoots.join() !== this.#kubepodsRoots.join()) this.#machine = null;
    this.#kubepodsRoots = found.kubepodsRoots;
    this.#paths = new Map();
    this.#podPaths = new Map(found.pods.map((p) => [p.podUID, p.relativePath]));
    for (const pod of found.pods) {
      for (const c of pod.containers) if (ids.has(c.id)) this.#paths.set(c.id, c.relativePath);
    }
    for (const id of [...this.#tracks.keys()]) if (!this.#paths.has(id)) this.#tracks.delete(id);
    this.#sampler!.retain(new Set(this.#paths.values()));
    // A running container whose cgroup is not there yet: look again in 2 s, not in a minute.
    const incomplete = [...ids].some((id) => !this.#paths.has(id));
    this.#discoveredAt = incomplete ? now - 58_000 : now;
  }

  /**
   * Brings every elastic pod's cgroup CPU weight, and every pod's this agent
   * lowered before, to what {@link weightAction} says: lowered only once the
   * pod's PodAllocation records the kubelet's weight, restored when the pod no
   * longer yields. A record to write makes the market clear now.
   */
  #reconcileWeights(): void {
    // Which pods are elastic is known from the first clearing on: before it, a
    // restarted agent would take every pod it lowered for one that should not yield.
    if (this.stats.clearings === 0) return;
    const layout = this.#layout!;
    const lowest = cpuWeightFile(layout.version).lowest;
    const keys = new Set(this.#elasticPods);
    for (const pa of this.#allocations.list()) {
      if (pa.spec.originalCpuWeight !== undefined) {
        keys.add(`${pa.metadata.namespace}/${pa.metadata.name}`);
      }
    }
    const yielding = new Set<string>();
    let recordNeeded = false;
    for (const key of keys) {
      const pod = this.#pods.get(key);
      const uid = pod?.metadata?.uid;
      const path = uid === undefined ? undefined : this.#podPaths.get(uid);
      if (uid === undefined || path === undefined) continue; // gone, or no cgroup yet
      const pa = this.#allocations.get(key);
      const recorded = pa?.spec.podUID === uid ? pa.spec.originalCpuWeight ?? null : null;
      const current = readCpuWeight(layout, path);
      if (current.status !== "ok") continue;
      const yields = this.#o.elasticYield && this.#elasticPods.has(key) &&
        pa?.spec.podUID === uid;
      const action = weightAction({
        yields,
        recorded,
        remembered: this.#remembered.get(uid) ?? null,
        current: current.value,
        lowest,
      });
      switch (action.kind) {
        case "none":
          if (yields) yielding.add(key);
          this.#records.set(key, recorded);
          if (recorded !== null) this.#remembered.set(uid, recorded);
          break;
        case "record":
          this.#remembered.set(uid, action.original);
          this.#records.set(key, action.original);
          recordNeeded = true;
          break;
        case "lower":
          if (this.#writeWeight(uid, path, lowest, "lower")) yielding.add(key);
          this.#records.set(key, recorded);
          break;
        case "restore":
          this.#writeWeight(uid, path, action.original, "restore");
          this.#records.set(key, recorded);
          break;
        case "forget":
          this.#remembered.delete(uid);
          this.#records.set(key, null);
          if (recorded !== null) recordNeeded = true;
          break;
      }
    }
    for (const key of [...this.#records.keys()]) if (!keys.has(key)) this.#records.delete(key);
    for (const uid of [...this.#remembered.keys()]) {
      if (!this.#podPaths.has(uid)) this.#remembered.delete(uid); // the pod is gone
    }
    this.#yielding = yielding;
    this.#metrics.yielding.set(yielding.size, { state: "yielding" });
    this.#metrics.yielding.set(this.#o.elasticYield ? this.#elasticPods.size : 0, {
      state: "elastic",
    });
    if (recordNeeded) void this.clearAndPublish();
  }

  /** Writes a pod cgroup's weight; false (counted, warned once per pod) when the kernel or the mount refuses. */
  #writeWeight(uid: string, path: string, value: number, action: "lower" | "restore"): boolean {
    const result = writeCpuWeight(this.#layout!, path, value);
    this.#metrics.weightWrites.inc({ action, result: result.status });
    if (result.status === "ok") {
      this.#weightWarned.delete(uid);
      return true;
    }
    if (result.status !== "missing" && !this.#weightWarned.has(uid)) {
      this.#weightWarned.add(uid);
      this.#o.log?.("warn", "cannot write a pod cgroup's CPU weight", {
        podUID: uid,
        action,
        detail: result.detail,
      });
    }
    return false;
  }

  /** Gives every pod this agent lowered the kubelet's weight back (at stop). */
  #restoreAllWeights(): void {
    if (this.#layout === null) return;
    const recorded = new Map(
      this.#allocations.list().map((pa) => [pa.spec.podUID, pa.spec.originalCpuWeight]),
    );
    for (const [uid, path] of this.#podPaths) {
      this.#restoreWeight(uid, path, this.#remembered.get(uid) ?? recorded.get(uid));
    }
  }

  /**
   * Writes `original` back to a pod cgroup when {@link weightAction} says so
   * for a pod that no longer yields (it is at the lowest weight).
   */
  #restoreWeight(uid: string, path: string, original: number | undefined): void {
    const current = readCpuWeight(this.#layout!, path);
    if (current.status !== "ok") return;
    const action = weightAction({
      yields: false,
      recorded: original ?? null,
      remembered: null,
      current: current.value,
      lowest: cpuWeightFile(this.#layout!.version).lowest,
    });
    if (action.kind === "restore") this.#writeWeight(uid, path, action.original, "restore");
  }

  /** Clears the node's market and publishes what changed meaningfully; one at a time. */
  clearAndPublish(): Promise<void> {
    this.#clearing ??= this.#clearAndPublish().finally(() => (this.#clearing = null));
    return this.#clearing;
  }

  async #clearAndPublish(): Promise<void> {
    const node = this.#node.list()[0];
    const allocatable = parseMillicores(node?.status?.allocatable?.cpu ?? "") ?? null;
    if (allocatable === null) return;
    const now = this.#now();
    const views: PodView[] = [];
    const tracks = new Map<string, ContainerTrack>(); // by bid id (namespace/pod/container)
    const podsByKey = new Map<string, k8s.V1Pod>();
    const trackOf = (statuses: k8s.V1ContainerStatus[] | undefined, name: string) => {
      const id = statuses?.find((s) => s.name === name)?.containerID;
      return id ? this.#tracks.get(bareContainerID(id)) : undefined;
    };
    const recent = (t: ContainerTrack | undefined) =>
      t === undefined ? null : recentPercentile(t.usageWindow);
    const freshAfter = now - FRESH_SAMPLES * this.#o.samplingIntervalMs - 500;
    for (const pod of this.#pods.list()) {
      const phase = pod.status?.phase;
      if (phase !== "Running" && phase !== "Pending") continue; // finished pods use no CPU
      const key = `${pod.metadata!.namespace}/${pod.metadata!.name}`;
      podsByKey.set(key, pod);
      const namespace = this.#namespaces.get(pod.metadata!.namespace!);
      const managed = phase === "Running" && podIneligibility(pod, namespace) === null;
      const { rule, warning } = minLimitRule(pod, namespace);
      if (managed && warning !== null) this.#o.log?.("warn", `${key}: ${warning}`);
      const tier = tierOf(pod, namespace);
      if (managed && tier.warning !== null) this.#o.log?.("warn", `${key}: ${tier.warning}`);
      const baseline = this.#allocations.get(key)?.status?.baseline;
      views.push({
        key,
        managed,
        annotations: pod.metadata?.annotations ?? {},
        minLimit: rule,
        tier: tier.tier,
        containers: (pod.spec?.containers ?? []).map((c) => {
          const track = trackOf(pod.status?.containerStatuses, c.name);
          if (track !== undefined) tracks.set(`${key}/${c.name}`, track);
          const declared = baseline?.containers.find((b) => b.name === c.name)?.cpuLimit;
          const fresh = track !== undefined && track.signalAtMs !== null &&
            track.signalAtMs >= freshAfter;
          if (fresh) track.clearedDemandMillicores = track.demand?.demandMillicores ?? null;
          return {
            name: c.name,
            requestMillicores: parseMillicores(c.resources?.requests?.cpu ?? "") ?? 0,
            limitMillicores: parseMillicores(c.resources?.limits?.cpu ?? "") ?? null,
            declaredLimitMillicores: declared === undefined ? null : parseMillicores(declared),
            usageMillicores: track?.usageMillicores ?? null,
            recentUsageMillicores: recent(track),
            demandMillicores: fresh ? track.demand?.demandMillicores ?? null : null,
            liveNeedMillicores: fresh && track.needWindow.length > 0
              ? Math.max(...track.needWindow)
              : null,
            managed: containerIneligibility(c, pod) === null,
          };
        }),
        others: otherCpuUsers(pod).map((u) => ({
          name: u.name,
          requestMillicores: u.requestMillicores,
          recentUsageMillicores: recent(trackOf(pod.status?.initContainerStatuses, u.name)),
        })),
      });
    }
    const started = performance.now();
    // System daemons' CPU beyond what the node keeps back for them is not
    // there for elastic pods either, unless they yield (below).
    const nodeCapacity = parseMillicores(node?.status?.capacity?.cpu ?? "") ?? allocatable;
    // Elastic pods that yield in the kernel leave the daemons their CPU as
    // they leave it to the protected pods: by weight, not by limit.
    const elasticPods = new Set(
      views.filter((v) => v.managed && v.tier === "elastic").map((v) => v.key),
    );
    this.#elasticPods = elasticPods;
    const yields = this.#o.elasticYield && elasticPods.size > 0 &&
      [...elasticPods].every((key) => this.#yielding.has(key));
    const systemOverflow = this.#systemWindow.length === 0 || yields
      ? 0
      : Math.max(...this.#systemWindow) - Math.max(0, nodeCapacity - allocatable);
    const built = buildMarket(allocatable, views, this.#o.bids, systemOverflow);
    for (const warning of built.warnings) this.#o.log?.("warn", warning);
    built.market.elasticYields = yields;
    built.market.protectedLimit = this.#o.protectedLimit;
    const clearing = settleMarket(built.market);
    this.#metrics.clearingSeconds.observe((performance.now() - started) / 1000);
    this.#record(views, built.market.capacity, clearing, tracks);
    const protectedTracks = built.market.bids.flatMap((b) =>
      b.tier === "elastic" ? [] : tracks.get(b.id) ?? []
    );
    // Yielding elastic limits do not depend on the protected pods' need: no reason to clear early.
    this.#protectedAtClearing = !yields && built.market.bids.some((b) => b.tier === "elastic")
      ? {
        tracks: protectedTracks,
        need: protectedTracks.reduce((sum, t) => sum + (t.needWindow.at(-1) ?? 0), 0),
        threshold: Math.max(50, 0.05 * built.market.capacity),
      }
      : null;
    this.stats.clearings++;
    this.lastClearing = { at: now, clearing, views };
    this.#o.progress?.beat(AGENT_LOOPS.market, now);
    await this.#heartbeat(now);
    for (const [key, bids] of built.bidsByPod) {
      const pod = podsByKey.get(key)!;
      const existing = this.#allocations.get(key);
      const limits = bids.map((b) => ({
        bid: b,
        limit: Math.max(1, clearing.limits[b.id]),
        guarantee: clearing.guarantees[b.id],
      }));
      const tier = bids[0].tier ?? "protected"; // every bid of a pod carries the pod's tier
      const changed = (previous: string | undefined, next: number) =>
        previous === undefined ||
        worthPublishing(
          parseMillicores(previous),
          next,
          this.#o.publish.minChangeFraction,
          this.#o.publish.minChangeMillicores,
        );
      // What the reconciliation says, or, for a pod it has not looked at yet
      // (no cgroup found yet), the record as it is: never dropped unseen.
      const record = this.#records.has(key)
        ? this.#records.get(key)!
        : existing?.spec.podUID === pod.metadata?.uid
        ? existing?.spec.originalCpuWeight ?? null
        : null;
      const worth = existing === undefined || existing.spec.podUID !== pod.metadata?.uid ||
        existing.spec.tier !== tier ||
        (existing.spec.originalCpuWeight ?? null) !== record ||
        limits.some(({ bid, limit, guarantee }) => {
          const name = bid.id.slice(key.length + 1);
          const previous = existing.spec.containers.find((c) => c.name === name);
          return previous === undefined || changed(previous.cpuLimit, limit) ||
            changed(previous.cpuGuarantee, guarantee);
        });
      if (!worth) {
        this.stats.heldByHysteresis++;
        continue;
      }
      if (this.#bucket.waitMs(now) > 0) continue; // per-node write rate limit: the next clearing retries
      this.#bucket.take(now);
      const spec: PodAllocation["spec"] = {
        podName: pod.metadata!.name!,
        podUID: pod.metadata!.uid!,
        nodeName: this.#o.nodeName,
        tier,
        containers: limits.map(({ bid, limit, guarantee }) => {
          const name = bid.id.slice(key.length + 1);
          const t = tracks.get(bid.id);
          return {
            name,
            cpuLimit: formatMillicores(limit),
            cpuGuarantee: formatMillicores(Math.min(limit, guarantee)),
            evidence: {
              demandMillicores: bid.demand,
              weight: bid.weight,
              floorMillicores: bid.floor,
              capMillicores: bid.cap,
              ...(t?.usageMillicores != null
                ? { usageMillicores: Math.round(t.usageMillicores) }
                : {}),
              throttledRatio: Math.min(1, Math.max(0, t?.throttledRatio ?? 0)),
              measured: !built.unmeasured.has(bid.id),
            },
          };
        }),
        market: {
          price: clearing.price,
          capacityMillicores: built.market.capacity,
          contended: clearing.contended,
          computedAt: new Date(now).toISOString(),
          intervalSeconds: this.#o.marketIntervalMs / 1000,
          elasticBudgetMillicores: clearing.elasticBudget,
        },
        ...(record === null ? {} : { originalCpuWeight: record }),
      };
      await this.#publish(pod, spec, existing);
    }
    // PodAllocations whose pod is gone, recreated elsewhere, or no longer managed.
    for (const pa of this.#allocations.list()) {
      const key = `${pa.metadata.namespace}/${pa.metadata.name}`;
      if (built.bidsByPod.has(key)) continue;
      if (pa.metadata.deletionTimestamp) continue; // being deleted: the controller restores the pod
      const pod = this.#pods.get(key);
      if (
        pod !== undefined && pod.status?.phase !== "Running" && pod.metadata?.uid === pa.spec.podUID
      ) continue; // starting: keep
      // A pod this agent lowered gets the kubelet's weight back before its record goes.
      const uid = pod?.metadata?.uid;
      const podPath = uid === pa.spec.podUID && uid !== undefined
        ? this.#podPaths.get(uid)
        : undefined;
      if (podPath !== undefined && this.#layout !== null) {
        this.#restoreWeight(uid!, podPath, pa.spec.originalCpuWeight ?? this.#remembered.get(uid!));
      }
      try {
        await this.#api.delete(podAllocationPath(pa.metadata.namespace!, pa.metadata.name));
        this.stats.deletes++;
      } catch (error) {
        if (statusCode(error) !== 404) {
          this.#o.log?.("warn", "deleting a PodAllocation failed", {
            podAllocation: key,
            error: errorMessage(error),
          });
        }
      }
    }
  }

  /**
   * Renews this node's heartbeat Lease (at most every {@link HEARTBEAT_PERIOD_MS}),
   * after a clearing: while it is renewed, the controller treats every
   * PodAllocation of the node as current even when it was not rewritten.
   */
  async #heartbeat(now: number): Promise<void> {
    if (now - this.#heartbeatAt < HEARTBEAT_PERIOD_MS) return;
    const namespace = this.#o.namespace;
    const name = heartbeatLeaseName(this.#o.nodeName);
    const spec = {
      holderIdentity: this.#o.nodeName,
      leaseDurationSeconds: Math.ceil((HEARTBEAT_PERIOD_MS * 3) / 1000),
      renewTime: microTime(new Date(now)),
    };
    try {
      try {
        await this.#api.mergePatch(leasePath(namespace, name), { spec });
      } catch (error) {
        if (statusCode(error) !== 404) throw error;
        await this.#api.create(leasePath(namespace), {
          apiVersion: "coordination.k8s.io/v1",
          kind: "Lease",
          metadata: { name, namespace, labels: { ...HEARTBEAT_LABELS } },
          spec: {
            holderIdentity: spec.holderIdentity,
            leaseDurationSeconds: spec.leaseDurationSeconds,
          },
        });
        await this.#api.mergePatch(leasePath(namespace, name), { spec });
      }
      this.#heartbeatAt = now;
      this.#metrics.writes.inc({ operation: "heartbeat", result: "ok" });
    } catch (error) {
      this.#metrics.writes.inc({ operation: "heartbeat", result: "error" });
      this.#o.log?.("warn", "renewing the heartbeat Lease failed", {
        lease: `${namespace}/${name}`,
        error: errorMessage(error),
      });
    }
  }

  async #publish(
    pod: k8s.V1Pod,
    spec: PodAllocation["spec"],
    existing: PodAllocation | undefined,
  ): Promise<void> {
    const namespace = pod.metadata!.namespace!;
    const name = pod.metadata!.name!;
    // Owned by its pod, so deleted with it (blockOwnerDeletion true would need the right to delete pods).
    const ownerReferences = [{
      apiVersion: "v1",
      kind: "Pod",
      name,
      uid: pod.metadata!.uid!,
      controller: true,
      blockOwnerDeletion: false,
    }];
    try {
      if (existing === undefined) {
        await this.#api.create(podAllocationPath(namespace), {
          apiVersion: API_VERSION,
          kind: KIND,
          metadata: {
            name,
            namespace,
            labels: { "app.kubernetes.io/managed-by": "mbcas-agent" },
            ownerReferences,
          },
          spec,
        });
      } else {
        // A merge patch keeps what it leaves out: a dropped record is written as null.
        const dropped = existing.spec.originalCpuWeight !== undefined &&
          spec.originalCpuWeight === undefined;
        await this.#api.mergePatch(podAllocationPath(namespace, name), {
          metadata: { ownerReferences },
          spec: dropped ? { ...spec, originalCpuWeight: null } : spec,
        });
      }
      this.stats.writes++;
      this.#metrics.writes.inc({
        operation: existing === undefined ? "create" : "update",
        result: "ok",
      });
    } catch (error) {
      this.#metrics.writes.inc({
        operation: existing === undefined ? "create" : "update",
        result: "error",
      });
      this.#o.log?.("warn", "publishing a PodAllocation failed", {
        pod: name,
        namespace,
        error: errorMessage(error),
      });
    }
  }

  /** Per-container gauges for the pods on the node, rebuilt at each clearing. */
  #record(
    views: PodView[],
    capacity: number,
    clearing: Settlement,
    tracks: Map<string, ContainerTrack>,
  ): void {
    const m = this.#metrics;
    for (const gauge of [m.usage, m.throttledRatio, m.demand, m.allocation, m.guarantee]) {
      gauge.clear();
    }
    m.price.set(clearing.price ?? Number.POSITIVE_INFINITY);
    m.elasticBudget.set(clearing.elasticBudget);
    m.capacity.set(capacity);
    for (const view of views) {
      const [namespace, pod] = view.key.split("/");
      for (const c of view.containers) {
        const labels = new Series({ namespace, pod, container: c.name });
        if (c.usageMillicores !== null) m.usage.set(Math.round(c.usageMillicores), labels);
        if (c.demandMillicores !== null) m.demand.set(Math.round(c.demandMillicores), labels);
        const track = tracks.get(`${view.key}/${c.name}`);
        if (track !== undefined) m.throttledRatio.set(track.throttledRatio, labels);
        const limit = clearing.limits[`${view.key}/${c.name}`];
        if (limit !== undefined) m.allocation.set(limit, labels);
        const guarantee = clearing.guarantees[`${view.key}/${c.name}`];
        if (guarantee !== undefined) m.guarantee.set(guarantee, labels);
      }
    }
  }
}
