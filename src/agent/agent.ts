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
import * as k8s from "@kubernetes/client-node";
import {
  API_VERSION,
  formatMillicores,
  GROUP,
  KIND,
  parseMillicores,
  PLURAL,
  type PodAllocation,
  VERSION,
} from "../api/mod.ts";
import {
  bareContainerID,
  type CgroupLayout,
  CgroupSampler,
  computeSignals,
  type CpuSample,
  detectLayout,
  discover,
} from "../cgroup/mod.ts";
import { optedIn } from "../controller/observe.ts";
import { TokenBucket } from "../controller/rate_limit.ts";
import {
  errorMessage,
  Informer,
  kubeSource,
  makeApiClient,
  MERGE_PATCH,
  plainList,
  statusCode,
} from "../k8s/mod.ts";
import { type Clearing, clearMarket } from "../solver/mod.ts";
import { Counter, Gauge, Histogram, Registry } from "../metrics/mod.ts";
import { type BidConfig, buildMarket, type PodView, worthPublishing } from "./bids.ts";
import {
  DEFAULT_ESTIMATOR,
  type DemandState,
  type EstimatorConfig,
  updateDemand,
} from "./estimator.ts";

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
  /** Wall clock, ms (default Date.now). */
  now?: () => number;
  /** Registers the agent's metrics here. */
  metrics?: Registry;
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
  readonly price: Gauge;
  readonly clearingSeconds: Histogram;
  readonly writes: Counter;
  readonly samplingErrors: Counter;

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
        "CPU the market allocated, per container",
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
  }
}

/** What the agent knows about one container between samples. */
interface ContainerTrack {
  path: string;
  previous: CpuSample | null;
  demand: DemandState | null;
  usageMillicores: number | null;
  throttledRatio: number;
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
  /** The last clearing, for `explain` and metrics. */
  lastClearing: { at: number; clearing: Clearing; views: PodView[] } | null = null;
  readonly #o: Required<Omit<AgentOptions, "log" | "now" | "metrics">> & Pick<AgentOptions, "log">;
  readonly #now: () => number;
  readonly #custom: k8s.CustomObjectsApi;
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
  #discoveredAt = 0;
  #timers: ReturnType<typeof setInterval>[] = [];
  #clearing: Promise<void> | null = null;

  /** Creates the agent; call {@link NodeAgent.start}. */
  constructor(kc: k8s.KubeConfig, options: AgentOptions) {
    this.#o = {
      samplingIntervalMs: 1000,
      marketIntervalMs: 5000,
      heavyThrottleRatio: 0.5,
      estimator: DEFAULT_ESTIMATOR,
      bids: { maxPerContainerMillicores: null, reserveMillicores: 0 },
      publish: { minChangeFraction: 0.05, minChangeMillicores: 20, writesPerSecond: 5, burst: 20 },
      ...options,
    };
    this.#now = options.now ?? Date.now;
    this.#metrics = new AgentMetrics(options.metrics ?? new Registry());
    this.#bucket = new TokenBucket(
      this.#o.publish.writesPerSecond,
      this.#o.publish.burst,
      this.#now(),
    );
    const core = makeApiClient(kc, k8s.CoreV1Api);
    this.#custom = makeApiClient(kc, k8s.CustomObjectsApi);
    const node = options.nodeName;
    const informer = <T extends k8s.KubernetesObject>(
      name: string,
      path: string,
      list: () => Promise<{ items: T[]; resourceVersion: string }>,
      fieldSelector?: string,
    ) =>
      new Informer<T>(kubeSource<T>(kc, { path, list, fieldSelector }), { name, resyncMs: 60_000 });
    this.#pods = informer(
      "pods",
      "/api/v1/pods",
      plainList(() => core.listPodForAllNamespaces({ fieldSelector: `spec.nodeName=${node}` })),
      `spec.nodeName=${node}`,
    );
    this.#node = informer(
      "node",
      "/api/v1/nodes",
      plainList(() => core.listNode({ fieldSelector: `metadata.name=${node}` })),
      `metadata.name=${node}`,
    );
    this.#namespaces = informer(
      "namespaces",
      "/api/v1/namespaces",
      plainList(() => core.listNamespace()),
    );
    const custom = this.#custom;
    this.#allocations = informer(
      "podallocations",
      `/apis/${GROUP}/${VERSION}/${PLURAL}`,
      async () => {
        const list = await custom.listClusterCustomObject({
          group: GROUP,
          version: VERSION,
          plural: PLURAL,
          fieldSelector: `spec.nodeName=${node}`,
        }) as {
          items: (PodAllocation & k8s.KubernetesObject)[];
          metadata: { resourceVersion: string };
        };
        return { items: list.items, resourceVersion: list.metadata.resourceVersion };
      },
      `spec.nodeName=${node}`,
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
    this.#sampler = new CgroupSampler(this.#layout);
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

  /** Stops everything. */
  async stop(): Promise<void> {
    for (const t of this.#timers) clearInterval(t);
    this.#timers = [];
    await this.#clearing;
    await Promise.all(
      [this.#pods, this.#node, this.#namespaces, this.#allocations].map((i) => i.stop()),
    );
    this.#sampler?.close();
  }

  /** Samples every container on the node once and updates its demand estimate. */
  sampleOnce(): void {
    if (this.#layout === null || this.#sampler === null) return;
    const now = this.#now();
    // Rediscover when the node's pods changed (the pod watch resets the time), else once a minute.
    if (now - this.#discoveredAt > 60_000) this.#rediscover(now);
    let heavy = false;
    for (const [id, path] of this.#paths) {
      const track = this.#tracks.get(id) ?? this.#newTrack(id, path);
      const result = this.#sampler.read(path, performance.now());
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
        continue;
      }
      if (track.previous !== null) {
        const signals = computeSignals(track.previous, result.sample);
        if (signals.status === "ok") {
          const s = signals.signals;
          // The previous interval's ratio: only the step into heavy throttling triggers a clearing.
          const wasThrottled = track.throttledRatio >= this.#o.heavyThrottleRatio;
          track.usageMillicores = s.usageMillicores;
          track.throttledRatio = s.throttledRatio;
          track.demand = updateDemand(track.demand, {
            atMs: now,
            usageMillicores: s.usageMillicores,
            throttledRatio: s.throttledRatio,
            throttledMillicores: s.throttledMillicores,
            psiSomeStallRatio: s.psiSomeStallRatio,
          }, this.#o.estimator);
          if (s.throttledRatio >= this.#o.heavyThrottleRatio && !wasThrottled) heavy = true;
        } else {
          this.stats.sampleErrors++;
          this.#metrics.samplingErrors.inc({ kind: signals.status });
        }
      }
      track.previous = result.sample;
    }
    this.stats.samples++;
    if (heavy) void this.clearAndPublish(); // a container just became heavily throttled: react now
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
    };
    this.#tracks.set(id, track);
    return track;
  }

  #rediscover(now: number): void {
    const ids = new Set<string>();
    for (const pod of this.#pods.list()) {
      for (const s of pod.status?.containerStatuses ?? []) {
        if (s.containerID) ids.add(bareContainerID(s.containerID));
      }
    }
    const found = discover(this.#layout!, { knownContainerIDs: ids });
    this.#paths = new Map();
    for (const pod of found.pods) {
      for (const c of pod.containers) if (ids.has(c.id)) this.#paths.set(c.id, c.relativePath);
    }
    for (const id of [...this.#tracks.keys()]) if (!this.#paths.has(id)) this.#tracks.delete(id);
    this.#sampler!.retain(new Set(this.#paths.values()));
    // A running container whose cgroup is not there yet: look again in 2 s, not in a minute.
    const incomplete = [...ids].some((id) => !this.#paths.has(id));
    this.#discoveredAt = incomplete ? now - 58_000 : now;
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
    const views: PodView[] = [];
    const tracks = new Map<string, ContainerTrack>(); // by bid id (namespace/pod/container)
    const podsByKey = new Map<string, k8s.V1Pod>();
    for (const pod of this.#pods.list()) {
      if (pod.status?.phase !== "Running") continue;
      const key = `${pod.metadata!.namespace}/${pod.metadata!.name}`;
      podsByKey.set(key, pod);
      const managed = optedIn(pod, this.#namespaces.get(pod.metadata!.namespace!)) &&
        pod.status?.qosClass === "Burstable";
      views.push({
        key,
        managed,
        annotations: pod.metadata?.annotations ?? {},
        containers: (pod.spec?.containers ?? []).map((c) => {
          const status = pod.status?.containerStatuses?.find((s) => s.name === c.name);
          const track = status?.containerID
            ? this.#tracks.get(bareContainerID(status.containerID))
            : undefined;
          if (track !== undefined) tracks.set(`${key}/${c.name}`, track);
          return {
            name: c.name,
            requestMillicores: parseMillicores(c.resources?.requests?.cpu ?? "") ?? 0,
            limitMillicores: parseMillicores(c.resources?.limits?.cpu ?? "") ?? null,
            usageMillicores: track?.usageMillicores ?? null,
            demandMillicores: track?.demand?.demandMillicores ?? null,
          };
        }),
      });
    }
    const started = performance.now();
    const built = buildMarket(allocatable, views, this.#o.bids);
    for (const warning of built.warnings) this.#o.log?.("warn", warning);
    const clearing = clearMarket(built.market);
    this.#metrics.clearingSeconds.observe((performance.now() - started) / 1000);
    this.#record(views, clearing, tracks);
    this.stats.clearings++;
    const now = this.#now();
    this.lastClearing = { at: now, clearing, views };
    for (const [key, bids] of built.bidsByPod) {
      const pod = podsByKey.get(key)!;
      const existing = this.#allocations.get(key);
      const limits = bids.map((b) => ({ bid: b, limit: Math.max(1, clearing.allocations[b.id]) }));
      const worth = existing === undefined || existing.spec.podUID !== pod.metadata?.uid ||
        limits.some(({ bid, limit }) => {
          const name = bid.id.slice(key.length + 1);
          const previous = existing.spec.containers.find((c) => c.name === name);
          return previous === undefined ||
            worthPublishing(
              parseMillicores(previous.cpuLimit),
              limit,
              this.#o.publish.minChangeFraction,
              this.#o.publish.minChangeMillicores,
            );
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
        containers: limits.map(({ bid, limit }) => {
          const name = bid.id.slice(key.length + 1);
          const t = tracks.get(bid.id);
          return {
            name,
            cpuLimit: formatMillicores(limit),
            evidence: {
              demandMillicores: bid.demand,
              weight: bid.weight,
              floorMillicores: bid.floor,
              capMillicores: bid.cap,
              ...(t?.usageMillicores != null
                ? { usageMillicores: Math.round(t.usageMillicores) }
                : {}),
              throttledRatio: Math.min(1, Math.max(0, t?.throttledRatio ?? 0)),
            },
          };
        }),
        market: {
          price: clearing.price,
          capacityMillicores: built.market.capacity,
          contended: clearing.contended,
          computedAt: new Date(now).toISOString(),
        },
      };
      await this.#publish(pod, spec, existing);
    }
    // PodAllocations whose pod is gone, recreated elsewhere, or no longer managed.
    for (const pa of this.#allocations.list()) {
      const key = `${pa.metadata.namespace}/${pa.metadata.name}`;
      if (built.bidsByPod.has(key)) continue;
      const pod = this.#pods.get(key);
      if (
        pod !== undefined && pod.status?.phase !== "Running" && pod.metadata?.uid === pa.spec.podUID
      ) continue; // starting: keep
      try {
        await this.#custom.deleteNamespacedCustomObject({
          group: GROUP,
          version: VERSION,
          namespace: pa.metadata.namespace!,
          plural: PLURAL,
          name: pa.metadata.name,
        });
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

  async #publish(
    pod: k8s.V1Pod,
    spec: PodAllocation["spec"],
    existing: PodAllocation | undefined,
  ): Promise<void> {
    const namespace = pod.metadata!.namespace!;
    const name = pod.metadata!.name!;
    try {
      if (existing === undefined) {
        await this.#custom.createNamespacedCustomObject({
          group: GROUP,
          version: VERSION,
          namespace,
          plural: PLURAL,
          body: {
            apiVersion: API_VERSION,
            kind: KIND,
            metadata: {
              name,
              namespace,
              labels: { "app.kubernetes.io/managed-by": "mbcas-agent" },
              ownerReferences: [{
                apiVersion: "v1",
                kind: "Pod",
                name,
                uid: pod.metadata!.uid!,
                controller: true,
                blockOwnerDeletion: false,
              }],
            },
            spec,
          },
        });
      } else {
        await this.#custom.patchNamespacedCustomObject(
          {
            group: GROUP,
            version: VERSION,
            namespace,
            plural: PLURAL,
            name,
            body: {
              metadata: {
                ownerReferences: [{
                  apiVersion: "v1",
                  kind: "Pod",
                  name,
                  uid: pod.metadata!.uid!,
                  controller: true,
                  blockOwnerDeletion: false,
                }],
              },
              spec,
            },
          },
          MERGE_PATCH,
        );
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
  #record(views: PodView[], clearing: Clearing, tracks: Map<string, ContainerTrack>): void {
    const m = this.#metrics;
    for (const gauge of [m.usage, m.throttledRatio, m.demand, m.allocation]) gauge.clear();
    m.price.set(clearing.price ?? Number.POSITIVE_INFINITY);
    for (const view of views) {
      const [namespace, pod] = view.key.split("/");
      for (const c of view.containers) {
        const labels = { namespace, pod, container: c.name };
        if (c.usageMillicores !== null) m.usage.set(Math.round(c.usageMillicores), labels);
        if (c.demandMillicores !== null) m.demand.set(Math.round(c.demandMillicores), labels);
        const track = tracks.get(`${view.key}/${c.name}`);
        if (track !== undefined) m.throttledRatio.set(track.throttledRatio, labels);
        const allocation = clearing.allocations[`${view.key}/${c.name}`];
        if (allocation !== undefined) m.allocation.set(allocation, labels);
      }
    }
  }
}
