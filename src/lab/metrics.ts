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
 * - work done: of each latency and bursty pod outside the batch role, the
 *   fraction of the work it asked for that got done (requests completed over
 *   requests that arrived; CPU a bursty pod got in its on phases over the
 *   threads it ran × 1000m);
 * - spike to limit: from each scheduled demand spike to the first kernel
 *   limit change that raises the pod's limit (0 when the limit already met
 *   the need or there is none); spikes never answered before the pod's
 *   next spike or the end are counted as unanswered, not timed;
 * - load step to elastic limits down: from each load step of a latency pod
 *   to the first kernel limit cut of each elastic-tier pod;
 * - resizes: kernel limit changes, in total, the most any pod had in any
 *   60-second window, and per pod and whole minute of the run (p95, max).
 *
 * @module
 */
import { cpuWeightFile } from "../cgroup/mod.ts";
import { type BenchRow, percentile } from "./report.ts";
import { type Scenario, type ScenarioPod, workloadSeed } from "./scenario.ts";
import type { LabCpuAccount, LabRun } from "./types.ts";
import {
  arrivalSeconds,
  isOnPhase,
  parseWorkloadArgs,
  type WorkloadPlan,
} from "./_workload_plan.ts";

/** A bench row with what the table shows beyond the chart. */
export interface LabBenchRow extends BenchRow {
  /** Spikes whose limit was raised (or needed no raise) / all spikes. */
  spikesAnswered: [number, number];
  /** Most kernel limit changes of one pod within any 60 s window. */
  maxResizesPerPodPerMinute: number;
  /** Requests completed by the latency pods. */
  requests: number;
  /**
   * Fraction of the work asked for that got done, by latency or bursty pod
   * outside the batch role (see {@link workDone}); null when nothing was asked.
   */
  workDone: Record<string, number | null>;
  /**
   * Median seconds from a latency pod's load step to the first kernel limit
   * cut of an elastic pod (see {@link elasticStepResponses}); null when none
   * was answered.
   */
  elasticStepP50S: number | null;
  /** Load step × elastic pod pairs answered by a limit cut / all such pairs. */
  elasticStepsAnswered: [number, number];
  /**
   * Load step × elastic pod pairs at which the elastic pod yielded in the
   * kernel (see {@link ElasticStepResponse.yielding}); absent in runs
   * summarised before it was.
   */
  elasticStepsYielding?: number;
  /** 95th percentile (nearest rank) of kernel resizes per pod and minute (see {@link resizesPerPodMinute}); 0 without windows. */
  resizesPerPodMinuteP95: number;
  /** Most kernel resizes of one pod in one minute of {@link resizesPerPodMinute}; 0 without windows. */
  resizesPerPodMinuteMax: number;
  /**
   * The agent's PodAllocation writes (creates and updates) per minute for the
   * node, from {@link LabRun.agentWrites}; null without them.
   */
  allocationWritesPerMinute?: number | null;
  /**
   * p99 of the latency pods' requests on a CPU of their own (see
   * {@link dedicatedLatenciesMs}): what their arrivals' queueing alone
   * costs, the same for every policy of a seed; null without latency pods.
   * Absent in runs summarised before it was.
   */
  latencyP99DedicatedMs?: number | null;
  /** Where the machine's CPU went over the run ({@link LabRun.cpuAccount}); null without it. */
  cpuAccount?: LabCpuAccount | null;
}

/**
 * The agent's writes the API server took, by operation, from the text of its
 * /metrics (`mbcas_agent_api_writes_total{operation=…,result="ok"}`); the
 * operations it has not counted yet are 0.
 */
export function agentWritesFromMetrics(
  text: string,
): { creates: number; updates: number; heartbeats: number } {
  const ok = new Map<string, number>();
  for (const line of text.split("\n")) {
    const m = /^mbcas_agent_api_writes_total\{([^}]*)\} (\S+)$/.exec(line);
    if (m === null || !/(^|,)result="ok"/.test(m[1])) continue;
    const operation = /(^|,)operation="([^"]*)"/.exec(m[1])?.[2];
    if (operation !== undefined) ok.set(operation, (ok.get(operation) ?? 0) + Number(m[2]));
  }
  return {
    creates: ok.get("create") ?? 0,
    updates: ok.get("update") ?? 0,
    heartbeats: ok.get("heartbeat") ?? 0,
  };
}

/** The kernel limit changes of one pod in one minute of a run. */
export interface PodMinute {
  /** Pod name. */
  pod: string;
  /** Start of the window, seconds since the run started (a multiple of 60). */
  fromS: number;
  /** End of the window, seconds (60 s later, or the end of the run for the last one). */
  toS: number;
  /** Kernel resizes of the pod with `fromS ≤ t < toS` (`≤ toS` in the run's last window). */
  resizes: number;
}

/** How fast an elastic pod's kernel limit came down after a latency pod's load step. */
export interface ElasticStepResponse {
  /** The latency pod whose load stepped up. */
  latencyPod: string;
  /** When, seconds since the run started. */
  atS: number;
  /** The elastic-tier pod. */
  elasticPod: string;
  /**
   * Seconds (one decimal) from the step to the first kernel limit cut of the
   * elastic pod before the next latency load step (or the run's end); null
   * when there was none.
   */
  seconds: number | null;
  /**
   * Whether the elastic pod yielded in the kernel at the step: its pod
   * cgroup's CPU weight, in the last sample at or before the step, was the
   * lowest the kernel takes (≤ 2: `cpu.shares` 2 on v1, `cpu.weight` 1 on
   * v2), so the latency pod's threads ran first whatever the limits.
   */
  yielding: boolean;
}

/** The highest CPU weight that is the lowest of a hierarchy (v1 shares 2, v2 weight 1). */
const LOWEST_WEIGHT = Math.max(cpuWeightFile(1).lowest, cpuWeightFile(2).lowest);

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

/**
 * The kernel resizes of each pod of `run.pods` in each whole minute of the
 * run: windows [0, 60), [60, 120), … up to `durationSeconds`; the last,
 * partial window [60k, durationSeconds] counts only when it is at least 30 s
 * long (a shorter one would read as a calmer or busier minute than it was)
 * and includes its end. Ordered by pod (as in `run.pods`), then time.
 */
export function resizesPerPodMinute(run: LabRun): PodMinute[] {
  const end = Number.isFinite(run.durationSeconds) ? run.durationSeconds : 0;
  const windows: [number, number][] = [];
  for (let from = 0; from < end; from += 60) {
    const to = Math.min(from + 60, end);
    if (to - from >= 30) windows.push([from, to]);
  }
  return run.pods.flatMap((pod) => {
    const times = run.resizes.filter((r) => r.pod === pod.name).map((r) => r.t);
    return windows.map(([fromS, toS]) => ({
      pod: pod.name,
      fromS,
      toS,
      resizes: times.filter((t) => t >= fromS && (t < toS || (toS === end && t === end))).length,
    }));
  });
}

/**
 * For each load step of a latency pod (the scenario's spikes of the pods in
 * `roles.latency`) and each elastic-tier pod (`roles.elastic`) with a sample
 * between the step and the next latency load step (or the run's end): the
 * seconds from the step to the first kernel limit cut of the elastic pod
 * (a resize to a lower limit, or from unlimited to a limit) at or after the
 * step and before the next latency load step; null when there was none.
 * Ordered by step, then elastic pod as the roles list them.
 */
export function elasticStepResponses(run: LabRun, scenario: Scenario): ElasticStepResponse[] {
  const steps = scenario.spikes.filter((s) => scenario.roles.latency.includes(s.pod))
    .sort((a, b) => a.atS - b.atS);
  const out: ElasticStepResponse[] = [];
  for (const step of steps) {
    const next = steps.find((s) => s.atS > step.atS)?.atS;
    const until = next ?? run.durationSeconds;
    for (const pod of scenario.roles.elastic) {
      const present = run.samples.some((s) => s.pod === pod && s.t >= step.atS && s.t <= until);
      if (!present) continue;
      const cuts = run.resizes.filter((r) =>
        r.pod === pod && r.t >= step.atS && (next === undefined || r.t < next) &&
        r.toMillicores !== null && (r.fromMillicores === null || r.toMillicores < r.fromMillicores)
      );
      const first = cuts.length === 0 ? null : Math.min(...cuts.map((r) => r.t));
      const atStep = run.samples.filter((s) => s.pod === pod && s.t <= step.atS).at(-1);
      out.push({
        latencyPod: step.pod,
        atS: step.atS,
        elasticPod: pod,
        seconds: first === null ? null : Math.round((first - step.atS) * 10) / 10,
        yielding: atStep?.cpuWeight != null && atStep.cpuWeight <= LOWEST_WEIGHT,
      });
    }
  }
  return out;
}

/**
 * The fraction of the work each latency or bursty pod of the scenario
 * (outside `roles.batch`) asked for that got done; null when it asked for
 * nothing.
 *
 * - bursty: every recorded second t of the pod (its sample covers
 *   (t − 1, t]) in which its workload is in an on phase at t − 0.5 (phases
 *   from its options, in seconds since the epoch, which is the run's second
 *   0) asks for parallelism × 1000m and gets min(usage, that); the fraction
 *   is what it got over what it asked, summed over those seconds.
 * - latency: requests completed (latencies the run recorded for the pod)
 *   over the arrivals its workload scheduled in [0, durationSeconds],
 *   recomputed from its rate schedule and its seed
 *   ({@link workloadSeed} of the run's seed). The run records the
 *   workload's lines of seconds 1 to durationSeconds, and the line of
 *   second 1 covers (0, 1], so arrivals count from 0. A request still
 *   queued at the end counts as not done.
 *
 * Throws an Error naming the pod and the option when a pod's workload
 * options do not parse.
 */
export function workDone(run: LabRun, scenario: Scenario): Record<string, number | null> {
  const end = Number.isFinite(run.durationSeconds) ? run.durationSeconds : 0;
  const out: Record<string, number | null> = {};
  const pods = workDonePods(scenario);
  for (const pod of scenario.pods) {
    if (!pods.includes(pod.name)) continue;
    const plan = workloadPlan(pod, workloadSeed(run.seed, pod.name));
    let asked = 0;
    let done = 0;
    if (plan.kind === "bursty") {
      const perSecond = plan.parallelism * 1000;
      for (const s of run.samples) {
        if (s.pod !== pod.name || !isOnPhase(s.t - 0.5, plan.phases)) continue;
        asked += perSecond;
        const usage = Number.isFinite(s.usageMillicores) ? Math.max(0, s.usageMillicores) : 0;
        done += Math.min(usage, perSecond);
      }
    } else if (plan.kind === "latency") {
      for (const t of arrivalSeconds(plan.schedule, plan.seed)) {
        if (t > end) break;
        asked++;
      }
      for (const l of run.latencies) if (l.pod === pod.name) done += l.latenciesMs.length;
    }
    out[pod.name] = asked === 0 ? null : done / asked;
  }
  return out;
}

/**
 * Latencies (ms) the latency pods' requests would have on a CPU of their own:
 * each latency pod's arrivals in `[0, durationSeconds)`, by its plan and
 * seed, served in arrival order by one server that runs each request's
 * `costMs` without interruption, as soon as the request before it is done.
 * What remains is the queueing the Poisson arrivals cause by themselves, a
 * reference for the run's latencies that no policy sharing the CPU can beat
 * by much (a request's cost is the process's CPU time, so its other threads
 * can shorten one a little). Pods in `roles.latency` only.
 *
 * Throws an Error naming the pod and the option when a pod's workload
 * options do not parse.
 */
export function dedicatedLatenciesMs(
  scenario: Scenario,
  durationSeconds: number,
  runSeed: number,
): number[] {
  const latencies: number[] = [];
  for (const pod of scenario.pods) {
    if (!scenario.roles.latency.includes(pod.name) || pod.workload !== "latency") continue;
    const plan = workloadPlan(pod, workloadSeed(runSeed, pod.name));
    if (plan.kind !== "latency") continue;
    let freeMs = 0;
    for (const t of arrivalSeconds(plan.schedule, plan.seed)) {
      if (t >= durationSeconds) break;
      const arrivalMs = t * 1000;
      freeMs = Math.max(freeMs, arrivalMs) + plan.costMs;
      latencies.push(freeMs - arrivalMs);
    }
  }
  return latencies;
}

/** The pods {@link workDone} is about: latency and bursty pods outside `roles.batch`, in scenario order. */
export function workDonePods(scenario: Scenario): string[] {
  return scenario.pods.filter((p) =>
    (p.workload === "latency" || p.workload === "bursty") && !scenario.roles.batch.includes(p.name)
  ).map((p) => p.name);
}

/** A scenario pod's workload plan, as its workload parses its options. */
function workloadPlan(pod: ScenarioPod, seed: number): WorkloadPlan {
  const outcome = parseWorkloadArgs([
    "--kind",
    pod.workload,
    "--out",
    "x",
    "--epoch-ms",
    "0",
    "--seed",
    String(seed),
    ...pod.args,
  ], 0);
  if (outcome.status === "plan") return outcome.plan;
  const why = outcome.status === "error" ? outcome.message : "--help is not a workload";
  throw new Error(`pod ${JSON.stringify(pod.name)}: args ${JSON.stringify(pod.args)}: ${why}`);
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
  const steps = elasticStepResponses(run, scenario);
  const stepTimes = steps.map((s) => s.seconds).filter((s): s is number => s !== null);
  const perMinute = resizesPerPodMinute(run).map((w) => w.resizes);
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
    workDone: workDone(run, scenario),
    elasticStepP50S: percentile(stepTimes, 50),
    elasticStepsAnswered: [stepTimes.length, steps.length],
    elasticStepsYielding: steps.filter((s) => s.yielding).length,
    resizesPerPodMinuteP95: percentile(perMinute, 95) ?? 0,
    resizesPerPodMinuteMax: Math.max(0, ...perMinute),
    latencyP99DedicatedMs: percentile(
      dedicatedLatenciesMs(scenario, run.durationSeconds, run.seed),
      99,
    ),
    cpuAccount: run.cpuAccount ?? null,
    allocationWritesPerMinute: run.agentWrites === undefined || run.agentWrites.seconds <= 0
      ? null
      : ((run.agentWrites.creates + run.agentWrites.updates) / run.agentWrites.seconds) * 60,
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
