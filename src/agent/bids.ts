/**
 * From the node's pods and their estimated demands to the node's CPU market:
 * which pods bid, with what weight, floor and cap, and what capacity is left
 * for them once unmanaged pods are accounted for. Pure.
 *
 * @module
 */
import { parseMillicores } from "../api/core.ts";
import { limitFloorMillicores, type MinLimitRule, type Tier } from "../managed/mod.ts";
import type { Bid, Market } from "../solver/mod.ts";

/** Pod annotation: a positive number multiplying the pod's weight (default 1). */
export const PRIORITY_ANNOTATION = "mbcas.io/priority";
/** Pod annotation: a CPU quantity no container of the pod is allocated more than. */
export const MAX_CPU_ANNOTATION = "mbcas.io/max-cpu";

/** Tuning of bid construction. */
export interface BidConfig {
  /** Largest allocation of any container, millicores; null for none (node capacity still applies). */
  maxPerContainerMillicores: number | null;
  /** CPU kept out of the market, millicores (default 0). */
  reserveMillicores: number;
  /**
   * Share of the market's capacity the elastic limits leave free for the
   * protected pods to grow into before the agent lowers them (default 0.05).
   */
  elasticHeadroomFraction?: number;
}

/** The default share of the capacity the elastic limits leave free. */
export const DEFAULT_ELASTIC_HEADROOM_FRACTION = 0.05;

/** One app container as the agent sees it. */
export interface ContainerView {
  /** Container name. */
  name: string;
  /** CPU request, millicores (0 when none). */
  requestMillicores: number;
  /** CPU limit in the pod spec now, millicores; null when none. */
  limitMillicores: number | null;
  /** The limit the pod declared before MBCAS changed it (the recorded baseline), millicores; null when none. */
  declaredLimitMillicores: number | null;
  /** Measured usage, millicores; null before two samples. */
  usageMillicores: number | null;
  /** A high percentile of recent usage (what it may take under contention), millicores; null before two samples. */
  recentUsageMillicores: number | null;
  /** Estimated demand from a fresh, readable signal, millicores; null when there is none. */
  demandMillicores: number | null;
  /**
   * The most it needed in any sample of the last few seconds (usage plus
   * throttled time, no smoothing), millicores; null before two samples. For
   * a protected container, what the elastic limits must leave it.
   */
  liveNeedMillicores?: number | null;
  /** Whether MBCAS may resize it (see `containerIneligibility` in src/managed). */
  managed: boolean;
}

/** A CPU user of a pod other than its app containers (sidecar, init container, overhead). */
export interface OtherUserView {
  /** Name (container name or `overhead`). */
  name: string;
  /** CPU request, millicores. */
  requestMillicores: number;
  /** A high percentile of recent usage, millicores; null when not measured. */
  recentUsageMillicores: number | null;
}

/** One pod on the node. */
export interface PodView {
  /** `namespace/name`. */
  key: string;
  /** Whether MBCAS manages it (eligible by `podIneligibility`, and running). */
  managed: boolean;
  /** Its annotations. */
  annotations: Record<string, string>;
  /** How far below the declared limit its containers may go. */
  minLimit: MinLimitRule;
  /** Its tier (`mbcas.io/tier`); protected when absent. */
  tier?: Tier;
  /** Its app containers. */
  containers: ContainerView[];
  /** Its other CPU users. */
  others: OtherUserView[];
}

/** The market for the node, with what it was derived from. */
export interface NodeMarket {
  /** The market to clear. */
  market: Market;
  /** Allocatable CPU of the node, millicores. */
  allocatableMillicores: number;
  /** What CPU users MBCAS does not resize may take under contention, millicores. */
  unmanagedMillicores: number;
  /** Bid ids (`namespace/pod/container`) by pod key. */
  bidsByPod: Map<string, Bid[]>;
  /** Bids of containers without a fresh measurement: pinned at their current limit. */
  unmeasured: Set<string>;
  /** Pods whose annotations were invalid, with why (they bid with defaults). */
  warnings: string[];
}

/**
 * What a CPU user MBCAS does not resize may take from the managed ones under
 * contention: the larger of its request (what `cpu.shares` guarantees it) and
 * a high percentile of its recent usage. Not its limit: on an ordinary node
 * Burstable limits add up to more than the node, and counting them would
 * leave the market nothing.
 */
export function unmanagedClaim(
  requestMillicores: number,
  recentUsageMillicores: number | null,
): number {
  return Math.max(requestMillicores, Math.ceil(recentUsageMillicores ?? 0));
}

/**
 * Builds the node's market: managed containers bid with weight = request
 * (at least 1m) × priority, floor = the lowest limit the pod's
 * `mbcas.io/min-cpu-limit` rule allows (the request by default), cap = the
 * smallest of the configured maximum, the pod's `mbcas.io/max-cpu` and the
 * node's capacity (never below the floor), and their estimated demand; each
 * bid carries its pod's tier and, as its usage, its live need (what the
 * elastic limits must leave a protected bid). A container without a fresh
 * measurement is pinned at its current limit (floor = demand = cap =
 * usage), so nothing changes it. Capacity is the node's allocatable CPU
 * minus what every other CPU user may take ({@link unmanagedClaim}) minus
 * the reserve. The headroom the elastic limits leave free is the configured
 * share of the capacity plus `systemOverflowMillicores`: what the node's
 * processes outside every pod (system daemons) use beyond the CPU the node
 * keeps back from allocatable for them. Yielding elastic limits may reach
 * past the capacity to the allocatable CPU minus the reserve
 * (`yieldingCapacity`): the pods MBCAS does not manage outrank a yielding pod
 * by weight, as the protected pods do.
 */
export function buildMarket(
  allocatableMillicores: number,
  pods: PodView[],
  config: BidConfig,
  systemOverflowMillicores = 0,
): NodeMarket {
  let unmanaged = 0;
  const warnings: string[] = [];
  const bidsByPod = new Map<string, Bid[]>();
  const unmeasured = new Set<string>();
  const bids: Bid[] = [];
  for (const pod of pods) {
    for (const other of pod.others) {
      unmanaged += unmanagedClaim(other.requestMillicores, other.recentUsageMillicores);
    }
    if (!pod.managed) {
      for (const c of pod.containers) {
        unmanaged += unmanagedClaim(c.requestMillicores, c.recentUsageMillicores);
      }
      continue;
    }
    let priority = 1;
    const rawPriority = pod.annotations[PRIORITY_ANNOTATION];
    if (rawPriority !== undefined) {
      const value = Number(rawPriority);
      if (Number.isFinite(value) && value > 0 && value <= 1000) priority = value;
      else {warnings.push(
          `${pod.key}: annotation ${PRIORITY_ANNOTATION}=${
            JSON.stringify(rawPriority)
          } is not a number in (0, 1000]; using 1`,
        );}
    }
    let podCap = Number.POSITIVE_INFINITY;
    const rawCap = pod.annotations[MAX_CPU_ANNOTATION];
    if (rawCap !== undefined) {
      const value = parseMillicores(rawCap);
      if (value !== null && value > 0) podCap = value;
      else {warnings.push(
          `${pod.key}: annotation ${MAX_CPU_ANNOTATION}=${
            JSON.stringify(rawCap)
          } is not a positive CPU quantity; ignored`,
        );}
    }
    const podBids: Bid[] = [];
    for (const c of pod.containers) {
      if (!c.managed || c.limitMillicores === null) {
        unmanaged += unmanagedClaim(c.requestMillicores, c.recentUsageMillicores);
        continue;
      }
      const id = `${pod.key}/${c.name}`;
      const weight = Math.max(1, c.requestMillicores) * priority;
      if (c.demandMillicores === null) {
        // No measurement, no resize: the bid holds exactly what the container has.
        unmeasured.add(id);
        const limit = Math.round(c.limitMillicores);
        podBids.push({
          id,
          weight,
          floor: limit,
          demand: limit,
          cap: limit,
          tier: pod.tier ?? "protected",
          usage: limit,
        });
        continue;
      }
      const floor = limitFloorMillicores(
        pod.minLimit,
        c.requestMillicores,
        c.declaredLimitMillicores ?? c.limitMillicores,
      );
      const cap = Math.max(
        floor,
        Math.min(
          podCap,
          config.maxPerContainerMillicores ?? Number.POSITIVE_INFINITY,
          allocatableMillicores,
        ),
      );
      podBids.push({
        id,
        weight,
        floor,
        demand: Math.max(0, Math.round(c.demandMillicores)),
        cap: Math.round(cap),
        tier: pod.tier ?? "protected",
        ...(c.liveNeedMillicores == null
          ? {}
          : { usage: Math.max(0, Math.ceil(c.liveNeedMillicores)) }),
      });
    }
    if (podBids.length === 0) continue;
    bidsByPod.set(pod.key, podBids);
    bids.push(...podBids);
  }
  const capacity = Math.max(
    0,
    Math.floor(allocatableMillicores - unmanaged - config.reserveMillicores),
  );
  const headroomFraction = config.elasticHeadroomFraction ?? DEFAULT_ELASTIC_HEADROOM_FRACTION;
  return {
    market: {
      capacity,
      bids,
      headroom: Math.round(capacity * headroomFraction + Math.max(0, systemOverflowMillicores)),
      yieldingCapacity: Math.max(
        capacity,
        Math.floor(allocatableMillicores - config.reserveMillicores),
      ),
    },
    allocatableMillicores,
    unmanagedMillicores: unmanaged,
    bidsByPod,
    unmeasured,
    warnings,
  };
}

/**
 * A high percentile (`q` in [0, 1], nearest rank) of recent usage samples;
 * null when there are none.
 */
export function recentPercentile(samples: readonly number[], q = 0.95): number | null {
  if (samples.length === 0) return null;
  // A typed array sorts numerically in native code: no comparator called per
  // comparison (the agent runs without V8's optimising compilers).
  const sorted = Float64Array.from(samples).sort();
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

/**
 * Whether a new allocation is worth publishing over the last one: a change of
 * at least `fraction` of the old value or `millicores`, whichever is larger,
 * in either direction. Increases that pass go out at once (never delayed
 * beyond the write budget); without a threshold on increases too, every new
 * peak of a noisy load would be a write.
 */
export function worthPublishing(
  previous: number | null,
  next: number,
  fraction = 0.05,
  millicores = 20,
): boolean {
  if (previous === null) return true;
  return Math.abs(next - previous) >= Math.max(millicores, fraction * previous);
}
