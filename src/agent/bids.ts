/**
 * From the node's pods and their estimated demands to the node's CPU market:
 * which pods bid, with what weight, floor and cap, and what capacity is left
 * for them once unmanaged pods are accounted for. Pure.
 *
 * @module
 */
import { parseMillicores } from "../api/mod.ts";
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
}

/** One container as the agent sees it. */
export interface ContainerView {
  /** Container name. */
  name: string;
  /** CPU request, millicores (0 when none). */
  requestMillicores: number;
  /** CPU limit in the pod spec, millicores; null when none. */
  limitMillicores: number | null;
  /** Measured usage, millicores; null before two samples. */
  usageMillicores: number | null;
  /** Estimated demand, millicores; null before the first estimate. */
  demandMillicores: number | null;
}

/** One pod on the node. */
export interface PodView {
  /** `namespace/name`. */
  key: string;
  /** Whether MBCAS manages it (opted in and Burstable). */
  managed: boolean;
  /** Its annotations. */
  annotations: Record<string, string>;
  /** Its containers (app containers only). */
  containers: ContainerView[];
}

/** The market for the node, with what it was derived from. */
export interface NodeMarket {
  /** The market to clear. */
  market: Market;
  /** Allocatable CPU of the node, millicores. */
  allocatableMillicores: number;
  /** What unmanaged pods may use, millicores. */
  unmanagedMillicores: number;
  /** Bid ids (`namespace/pod/container`) by pod key. */
  bidsByPod: Map<string, Bid[]>;
  /** Pods whose annotations were invalid, with why (they bid with defaults). */
  warnings: string[];
}

/**
 * Builds the node's market: managed containers bid with weight = request
 * (at least 1m) × priority, floor = request, cap = the smallest of the
 * configured maximum, the pod's `mbcas.io/max-cpu` and the node's capacity
 * (never below the floor), and their estimated demand (their current limit
 * while no estimate exists, so a new container keeps what it has). Capacity is
 * the node's allocatable CPU minus what unmanaged pods may use (their limit,
 * or the larger of their request and usage) minus the reserve.
 */
export function buildMarket(
  allocatableMillicores: number,
  pods: PodView[],
  config: BidConfig,
): NodeMarket {
  let unmanaged = 0;
  const warnings: string[] = [];
  const bidsByPod = new Map<string, Bid[]>();
  const bids: Bid[] = [];
  for (const pod of pods) {
    if (!pod.managed) {
      for (const c of pod.containers) {
        unmanaged += c.limitMillicores ??
          Math.max(c.requestMillicores, Math.ceil(c.usageMillicores ?? 0));
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
      const floor = c.requestMillicores;
      const cap = Math.max(
        floor,
        Math.min(
          podCap,
          config.maxPerContainerMillicores ?? Number.POSITIVE_INFINITY,
          allocatableMillicores,
        ),
      );
      const demand = Math.round(c.demandMillicores ?? c.limitMillicores ?? floor);
      podBids.push({
        id: `${pod.key}/${c.name}`,
        weight: Math.max(1, floor) * priority,
        floor,
        demand: Math.max(0, demand),
        cap: Math.round(cap),
      });
    }
    bidsByPod.set(pod.key, podBids);
    bids.push(...podBids);
  }
  const capacity = Math.max(
    0,
    Math.floor(allocatableMillicores - unmanaged - config.reserveMillicores),
  );
  return {
    market: { capacity, bids },
    allocatableMillicores,
    unmanagedMillicores: unmanaged,
    bidsByPod,
    warnings,
  };
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
