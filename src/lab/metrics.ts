/**
 * The lab bench's figures from a recorded run: pure functions of a
 * {@link LabRun} and its {@link Scenario}.
 *
 * - latency p50/p99: over every request of the latency-sensitive pods;
 * - throttled seconds: CPU time the kernel held back, per pod;
 * - batch CPU-seconds: CPU the batch pods got;
 * - utilisation: CPU used by all pods over the node's allocatable × time;
 * - fairness: Jain's index (Σx)² / (n·Σx²) of the CPU the contending
 *   equal-weight pods got while all of them were busy (≥ 100m each);
 * - spike to limit: from each scheduled demand spike to the first kernel
 *   limit change that raises the pod's limit (0 when the limit already met
 *   the need or there is none); spikes never answered before the pod's
 *   next spike or the end are counted as unanswered, not timed;
 * - resizes: kernel limit changes, in total and the most any pod had in any
 *   60-second window.
 *
 * @module
 */
import { type BenchRow, percentile } from "./report.ts";
import type { Scenario } from "./scenario.ts";
import type { LabRun } from "./types.ts";

/** A bench row with what the table shows beyond the chart. */
export interface LabBenchRow extends BenchRow {
  /** Spikes whose limit was raised (or needed no raise) / all spikes. */
  spikesAnswered: [number, number];
  /** Most kernel limit changes of one pod within any 60 s window. */
  maxResizesPerPodPerMinute: number;
  /** Requests completed by the latency pods. */
  requests: number;
}

/** Jain's fairness index of non-negative shares; null for fewer than two or all zero. */
export function jainIndex(shares: number[]): number | null {
  if (shares.length < 2) return null;
  const sum = shares.reduce((a, b) => a + b, 0);
  const squares = shares.reduce((a, b) => a + b * b, 0);
  if (squares === 0) return null;
  return (sum * sum) / (shares.length * squares);
}

/** Seconds from each spike to the kernel limit answering it; null entries were never answered. */
export function spikeResponses(run: LabRun, scenario: Scenario): (number | null)[] {
  return scenario.spikes.map((spike, i) => {
    const next = scenario.spikes.slice(i + 1).find((s) => s.pod === spike.pod)?.atS ??
      run.durationSeconds;
    // The limit in force at the spike: the last sample up to it, else (a spike at
    // the start) the first sample.
    const own = run.samples.filter((s) => s.pod === spike.pod).sort((a, b) => a.t - b.t);
    const at = own.findLast((s) => s.t <= spike.atS) ?? own[0];
    const limit = at?.limitMillicores;
    if (limit === null || (limit !== undefined && limit >= spike.needMillicores)) return 0;
    const raise = run.resizes.find((r) =>
      r.pod === spike.pod && r.t >= spike.atS && r.t < next &&
      (r.toMillicores === null || r.fromMillicores === null || r.toMillicores > r.fromMillicores)
    );
    return raise === undefined ? null : Math.round((raise.t - spike.atS) * 10) / 10;
  });
}

/** Most kernel limit changes of one pod within any 60-second window. */
export function maxResizesPerMinute(run: LabRun): number {
  let most = 0;
  const byPod = Map.groupBy(run.resizes, (r) => r.pod);
  for (const resizes of byPod.values()) {
    const times = resizes.map((r) => r.t).sort((a, b) => a - b);
    for (let i = 0, j = 0; i < times.length; i++) {
      while (times[i] - times[j] >= 60) j++;
      most = Math.max(most, i - j + 1);
    }
  }
  return most;
}

/** The bench row of one run. */
export function benchRow(run: LabRun, scenario: Scenario): LabBenchRow {
  const { roles } = scenario;
  const latencies = run.latencies.filter((l) => roles.latency.includes(l.pod)).flatMap((l) =>
    l.latenciesMs
  );
  const throttledSeconds: Record<string, number> = {};
  for (const pod of run.pods) {
    const total = run.samples.filter((s) => s.pod === pod.name).reduce(
      (a, s) => a + s.throttledMillicores,
      0,
    );
    throttledSeconds[pod.name] = Math.round(total) / 1000;
  }
  const cpuSeconds = (pods: string[]) =>
    run.samples.filter((s) => pods.includes(s.pod)).reduce((a, s) => a + s.usageMillicores, 0) /
    1000;
  const used = cpuSeconds(run.pods.map((p) => p.name));
  const responses = spikeResponses(run, scenario);
  const timed = responses.filter((r): r is number => r !== null);
  return {
    policy: run.policy,
    latencyP50Ms: percentile(latencies, 50),
    latencyP99Ms: percentile(latencies, 99),
    throttledSeconds,
    batchCpuSeconds: Math.round(cpuSeconds(roles.batch) * 10) / 10,
    utilisation: run.durationSeconds === 0
      ? 0
      : used / ((run.nodeCapacityMillicores / 1000) * run.durationSeconds),
    fairness: fairness(run, roles.contending),
    resizes: run.resizes.length,
    spikeToLimitP50S: percentile(timed, 50),
    spikeToLimitP99S: percentile(timed, 99),
    spikesAnswered: [timed.length, responses.length],
    maxResizesPerPodPerMinute: maxResizesPerMinute(run),
    requests: latencies.length,
  };
}

/** Jain's index of the CPU the contending pods got in the seconds all of them were busy. */
function fairness(run: LabRun, contending: string[]): number | null {
  if (contending.length < 2) return null;
  const bySecond = Map.groupBy(run.samples.filter((s) => contending.includes(s.pod)), (s) => s.t);
  const totals = new Map(contending.map((p) => [p, 0]));
  for (const samples of bySecond.values()) {
    if (samples.length !== contending.length) continue;
    if (samples.some((s) => s.usageMillicores < 100)) continue;
    for (const s of samples) totals.set(s.pod, totals.get(s.pod)! + s.usageMillicores);
  }
  return jainIndex([...totals.values()]);
}
