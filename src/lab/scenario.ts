/**
 * Lab scenarios: which pods run on the lab node, with which workloads and
 * timing. Pure data, scaled to the run's length, so every policy of the lab
 * bench sees the same schedule.
 *
 * @module
 */
import type { WorkloadKind } from "./types.ts";

/** A pod of a scenario. */
export interface ScenarioPod {
  /** Pod name. */
  name: string;
  /** Workload kind. */
  workload: WorkloadKind;
  /** CPU request, millicores. */
  requestMillicores: number;
  /** CPU limit as declared, millicores. */
  limitMillicores: number;
  /** Workload options (`--name value` words). */
  args: string[];
  /** `mbcas.io/priority` (the market weight is request × priority); default 1. */
  priority?: number;
  /** `mbcas.io/tier`; default protected. */
  tier?: "protected" | "elastic";
}

/** A moment a pod's demand jumps (the lab bench times the kernel limit's answer). */
export interface DemandSpike {
  /** Pod name. */
  pod: string;
  /** Seconds since the run started. */
  atS: number;
  /** What the pod needs from then on, millicores. */
  needMillicores: number;
}

/** Which pods each figure of the lab bench is about. */
export interface ScenarioRoles {
  /** Latency-sensitive services (latency percentiles). */
  latency: string[];
  /** Pods whose throttling MBCAS should remove (latency-sensitive and bursty). */
  protected: string[];
  /** Batch pods (throughput). */
  batch: string[];
  /** Equal-weight pods that contend for CPU at the same time (fairness). */
  contending: string[];
  /** Pods of the elastic tier (their limits should come down when a latency pod's load steps up). */
  elastic: string[];
}

/** A scenario at a given length. */
export interface Scenario {
  /** Name. */
  name: string;
  /** One line on what it shows. */
  description: string;
  /** Length, seconds. */
  durationSeconds: number;
  /** Node allocatable CPU, millicores. */
  allocatableMillicores: number;
  /** Pods. */
  pods: ScenarioPod[];
  /** Demand spikes. */
  spikes: DemandSpike[];
  /** Roles of the pods. */
  roles: ScenarioRoles;
}

/**
 * The seed a pod's workload runs with (`--seed`): the run's seed plus a hash
 * of the pod's name, so pods of one run draw different schedules and a run
 * can be replayed (the lab bench recomputes a latency pod's arrivals from it).
 */
export function workloadSeed(runSeed: number, podName: string): number {
  let h = 2166136261;
  for (let i = 0; i < podName.length; i++) {
    h = Math.imul(h ^ podName.charCodeAt(i), 16777619) >>> 0;
  }
  return runSeed + (h % 1_000_000);
}

/** Scenario names. */
export const SCENARIOS = ["mixed", "spike"] as const;
/** A scenario name. */
export type ScenarioName = typeof SCENARIOS[number];

/** Milliseconds of CPU per request of the latency-sensitive service. */
const COST_MS = 8;

/**
 * Builds a scenario for a run of `durationSeconds` on a node with
 * `allocatableMillicores`.
 *
 * - `mixed`: a latency-critical service (priority 4) whose request rate
 *   steps up twice past its limit, a bursty service (priority 2, on/off), an
 *   always-hungry batch job, a second batch job that arrives at 30% and leaves
 *   at 80% of the run (equal weights, both elastic), and an idle pod; total
 *   demand swings above and below the node's capacity.
 * - `spike`: an idle service whose load steps up past its limit, then
 *   stops, next to an elastic batch job (the CI run): the batch job's limit
 *   rises into the idle CPU and comes down when the service needs it.
 */
export function buildScenario(
  name: ScenarioName,
  durationSeconds: number,
  allocatableMillicores: number,
): Scenario {
  const d = durationSeconds;
  const at = (fraction: number) => Math.round(d * fraction);
  if (name === "spike") {
    // The service is idle for the first 40% of the run, needs 500m against a
    // 150m limit until 75%, then nothing; next to it an elastic batch job of
    // two threads that takes whatever is left.
    const rate = (500 / COST_MS).toFixed(1);
    return {
      name,
      description:
        "an idle service whose load steps up past its limit, then stops, next to an elastic batch job",
      durationSeconds: d,
      allocatableMillicores,
      pods: [{
        name: "web",
        workload: "latency",
        requestMillicores: 100,
        limitMillicores: 150,
        args: [
          "--rate-schedule",
          `0:0,${at(0.4)}:${rate},${at(0.75)}:0`,
          "--cost-ms",
          String(COST_MS),
        ],
      }, {
        name: "batch",
        workload: "batch",
        requestMillicores: 100,
        limitMillicores: 150,
        tier: "elastic",
        // Two threads: it wants more than the node has.
        args: ["--parallelism", "2"],
      }],
      spikes: [{ pod: "web", atS: at(0.4), needMillicores: 500 }],
      roles: {
        latency: ["web"],
        protected: ["web"],
        batch: ["batch"],
        contending: [],
        elastic: ["batch"],
      },
    };
  }
  const base = 25; // requests/s: 200m
  const peak = 70; // requests/s: 560m
  const schedule = [[0, base], [at(0.25), peak], [at(0.5), base], [at(0.7), peak], [
    at(0.85),
    base,
  ]];
  const onS = Math.max(5, at(0.1));
  const spikes: DemandSpike[] = [
    { pod: "web", atS: at(0.25), needMillicores: peak * COST_MS },
    { pod: "web", atS: at(0.7), needMillicores: peak * COST_MS },
  ];
  for (let t = 0; t < d; t += 2 * onS) spikes.push({ pod: "bursty", atS: t, needMillicores: 1000 });
  return {
    name,
    description:
      "latency service with load steps, bursty service, batch job, late batch job, idle pod",
    durationSeconds: d,
    allocatableMillicores,
    pods: [
      {
        // Latency-critical: its request covers the usual load, not the peaks.
        name: "web",
        workload: "latency",
        requestMillicores: 300,
        limitMillicores: 400,
        priority: 4,
        args: [
          "--rate-schedule",
          schedule.map(([s, r]) => `${s}:${r}`).join(","),
          "--cost-ms",
          String(COST_MS),
        ],
      },
      {
        name: "bursty",
        workload: "bursty",
        requestMillicores: 200,
        limitMillicores: 300,
        priority: 2,
        args: ["--on-s", String(onS), "--off-s", String(onS), "--parallelism", "1"],
      },
      {
        // Batch takes what is left: small requests, equal weights.
        name: "batch-a",
        workload: "batch",
        requestMillicores: 100,
        limitMillicores: 500,
        tier: "elastic",
        args: ["--parallelism", "1"],
      },
      {
        name: "batch-b",
        workload: "bursty",
        requestMillicores: 100,
        limitMillicores: 500,
        tier: "elastic",
        args: [
          "--on-s",
          String(at(0.5)),
          "--off-s",
          String(d - at(0.5)),
          "--phase-offset-s",
          String(at(0.3)),
          "--parallelism",
          "1",
        ],
      },
      {
        name: "idle",
        workload: "idle",
        requestMillicores: 100,
        limitMillicores: 200,
        args: [],
      },
    ],
    spikes: spikes.sort((a, b) => a.atS - b.atS),
    roles: {
      latency: ["web"],
      protected: ["web", "bursty"],
      batch: ["batch-a", "batch-b"],
      contending: ["batch-a", "batch-b"],
      elastic: ["batch-a", "batch-b"],
    },
  };
}
