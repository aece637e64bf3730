/**
 * Pure rate arithmetic: CPU signals from two samples of one container.
 *
 * @module
 */
import type { CpuSample, SignalsResult } from "./types.ts";

/**
 * Computes usage, throttling and PSI rates between two samples of the same
 * cgroup. A counter that went backwards means the cgroup was recreated (a
 * restarted container reusing the path) or the counters were reset: that is
 * reported, never turned into a negative or zero rate. A non-positive interval
 * is reported too.
 */
export function computeSignals(previous: CpuSample, current: CpuSample): SignalsResult {
  const intervalMs = current.atMs - previous.atMs;
  if (!(intervalMs > 0)) return { status: "invalid-interval", intervalMs };
  // Each counter checked in turn, without building a list to loop over: the
  // agent runs this for every container every second, without V8's
  // optimising compilers, where every allocation and iteration is paid for.
  const reset = counterReset("usage", previous.usageNanos, current.usageNanos) ??
    counterReset("nr_periods", previous.periods, current.periods) ??
    counterReset("nr_throttled", previous.throttledPeriods, current.throttledPeriods) ??
    counterReset("throttled_time", previous.throttledNanos, current.throttledNanos) ??
    (previous.psi !== null && current.psi !== null
      ? counterReset("psi some total", previous.psi.some.totalMicros, current.psi.some.totalMicros)
      : null);
  if (reset !== null) return reset;
  const nanosPerMillicore = intervalMs * 1000; // ns of CPU per ms of wall time per millicore
  const periods = current.periods - previous.periods;
  const intervalMicros = intervalMs * 1000;
  const psiFull = previous.psi?.full && current.psi?.full
    ? Math.max(0, current.psi.full.totalMicros - previous.psi.full.totalMicros) / intervalMicros
    : null;
  return {
    status: "ok",
    signals: {
      intervalMs,
      usageMillicores: (current.usageNanos - previous.usageNanos) / nanosPerMillicore,
      throttledRatio: periods > 0
        ? (current.throttledPeriods - previous.throttledPeriods) / periods
        : 0,
      throttledMillicores: (current.throttledNanos - previous.throttledNanos) / nanosPerMillicore,
      limitMillicores: limitMillicores(current),
      psiSomeStallRatio: previous.psi !== null && current.psi !== null
        ? (current.psi.some.totalMicros - previous.psi.some.totalMicros) / intervalMicros
        : null,
      psiFullStallRatio: psiFull,
      psiSomeAvg10: current.psi?.some.avg10 ?? null,
    },
  };
}

/** A counter that went backwards (the cgroup was recreated), or null. */
function counterReset(counter: string, before: number, after: number): SignalsResult | null {
  if (after >= before) return null;
  return { status: "counter-reset", counter, detail: `${counter} went from ${before} to ${after}` };
}

/** The CFS limit of a sample in millicores, or null when unlimited. */
export function limitMillicores(sample: CpuSample): number | null {
  return sample.quotaMicros === null ? null : (sample.quotaMicros * 1000) / sample.periodMicros;
}
