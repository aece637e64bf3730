/**
 * The demand estimator: from a container's stream of CPU signals, how much
 * CPU it needs. Pure: state in, state out.
 *
 * ## Reasoning
 *
 * - **Usage alone under-reports a throttled container**: it can never use
 *   more than its limit, so a recommender that only looks at usage keeps the
 *   limit where it is, or spirals down (kubernetes/autoscaler#2359). The CFS
 *   throttled time is runnable time held back by the quota, summed over CPUs,
 *   so `usage + throttled time rate` is the CPU the container would have used
 *   without the limit: a single thread at a 200m quota shows 200m of usage and
 *   ≈800m of throttled time, and needs a whole core.
 * - **PSI only together with throttling**: CPU pressure (`some`) rises both
 *   when the node is contended and when the container's own quota throttles it
 *   (kubernetes/enhancements#5062), so PSI alone cannot say the limit is too
 *   low. When the container *is* heavily throttled (half its periods or
 *   more), a task stalled for a fraction `s` of the time ran only `1 − s` of
 *   it, so `usage / (1 − s)` is a second estimate of the need; the estimator
 *   takes the larger of the two. Otherwise PSI is ignored: a lightly
 *   throttled container on a node whose limits add up to more than the node
 *   stalls mostly from contention, and counting that would double its need.
 * - **Headroom** (default 15%) keeps the limit above the need, so a container
 *   using what it needs is not throttled at the edge.
 * - **Fast attack, slow release**: a need above the current estimate is
 *   adopted at once (a throttled container's demand rises within one
 *   sample); a lower one is approached exponentially with a half-life
 *   (default 60 s), so short dips do not shrink limits and bursty loads keep
 *   the CPU their bursts need.
 *
 * @module
 */

/** Tuning of the estimator. */
export interface EstimatorConfig {
  /** Fraction added on top of the measured need (default 0.15). */
  headroom: number;
  /** Half-life of the decay towards a lower need, ms (default 60 s). */
  releaseHalfLifeMs: number;
  /**
   * Throttled ratio from which PSI is trusted as a sign of a too-low limit
   * (default 0.5: heavily throttled, so its own quota is the likely cause of
   * its stalls; with limits that add up to more than the node, a lightly
   * throttled container stalls mostly from node contention).
   */
  psiThrottleThreshold: number;
  /** A stall ratio is capped here so `usage / (1 − s)` stays finite (default 0.9: at most 10× usage). */
  maxStallRatio: number;
}

/** The defaults. */
export const DEFAULT_ESTIMATOR: EstimatorConfig = {
  headroom: 0.15,
  releaseHalfLifeMs: 60_000,
  psiThrottleThreshold: 0.5,
  maxStallRatio: 0.9,
};

/**
 * Whether the estimator can do without PSI for an interval without
 * throttling: it reads PSI only from a throttled ratio of
 * `psiThrottleThreshold`, so with a positive threshold a container whose
 * throttled-periods counter did not advance never needs it (the agent's
 * sampler then skips its `cpu.pressure`).
 */
export function needsPressureOnlyWhenThrottled(config: EstimatorConfig): boolean {
  return config.psiThrottleThreshold > 0;
}

/** One interval's signals, as the cgroup module computes them. */
export interface Observation {
  /** End of the interval, ms (monotonic or wall: only differences matter). */
  atMs: number;
  /** CPU used, millicores. */
  usageMillicores: number;
  /** Δnr_throttled / Δnr_periods. */
  throttledRatio: number;
  /** Throttled time rate, millicores. */
  throttledMillicores: number;
  /** PSI `some` stall ratio over the interval, or null without PSI. */
  psiSomeStallRatio: number | null;
}

/** The estimator's memory for one container. */
export interface DemandState {
  /** Current demand estimate, millicores (headroom included). */
  demandMillicores: number;
  /** Time of the last update, ms. */
  atMs: number;
}

/** The need one interval shows, before headroom and smoothing, millicores. */
export function measuredNeed(
  obs: Observation,
  config: EstimatorConfig = DEFAULT_ESTIMATOR,
): number {
  const unthrottled = obs.usageMillicores + Math.max(0, obs.throttledMillicores);
  if (obs.psiSomeStallRatio === null || obs.throttledRatio < config.psiThrottleThreshold) {
    return unthrottled;
  }
  const stall = Math.min(config.maxStallRatio, Math.max(0, obs.psiSomeStallRatio));
  return Math.max(unthrottled, obs.usageMillicores / (1 - stall));
}

/**
 * Folds one observation into the state. With no state yet (a container just
 * seen), the estimate starts at this observation's need; pass a state built
 * from the last published demand instead after an agent restart, so one
 * sample never cuts it.
 */
export function updateDemand(
  state: DemandState | null,
  obs: Observation,
  config: EstimatorConfig = DEFAULT_ESTIMATOR,
): DemandState {
  const target = measuredNeed(obs, config) * (1 + config.headroom);
  if (state === null || target >= state.demandMillicores) {
    return { demandMillicores: target, atMs: obs.atMs };
  }
  const elapsed = Math.max(0, obs.atMs - state.atMs);
  const keep = 2 ** (-elapsed / config.releaseHalfLifeMs);
  return { demandMillicores: target + (state.demandMillicores - target) * keep, atMs: obs.atMs };
}

/**
 * How much a heavily throttled container's demand must exceed the demand its
 * last clearing used before the market is cleared again at once: a quarter
 * more ({@link outgrewClearing}), and at least {@link OUTGREW_MIN_MILLICORES}.
 */
export const OUTGREW_FACTOR = 1.25;

/** The least growth, millicores, that {@link outgrewClearing} counts. */
export const OUTGREW_MIN_MILLICORES = 50;

/**
 * Whether a heavily throttled container's demand estimate has outgrown the
 * one its last clearing used, so the market should be cleared again now
 * rather than at its next interval. The step into heavy throttling clears at
 * once, but from the first interval's measurement, which sees only part of a
 * burst that began within it; fast attack adopts the whole need one sample
 * later, and this lets the limits follow then. Each such clearing raises the
 * demand it is measured against by at least a quarter, so a growing need
 * causes at most log₁.₂₅ of its growth in extra clearings. False without
 * both figures.
 */
export function outgrewClearing(
  clearedMillicores: number | null,
  demandMillicores: number | null,
): boolean {
  if (clearedMillicores === null || demandMillicores === null) return false;
  return demandMillicores >= clearedMillicores * OUTGREW_FACTOR &&
    demandMillicores - clearedMillicores >= OUTGREW_MIN_MILLICORES;
}
