/**
 * Plausible synthetic lab runs for the report's tests: a latency pod, a
 * bursty pod, a batch pod and an idle pod sharing a node, one sample a second,
 * from a seeded generator (the same options give the same run); and small
 * hand-built runs and bench rows for the bench figures' tests.
 */
import type {
  LabLatencies,
  LabPod,
  LabPolicy,
  LabPrice,
  LabResize,
  LabRun,
  LabSample,
  WorkloadKind,
} from "../../src/lab/types.ts";
import type { BenchRow } from "../../src/lab/report.ts";
import type { LabBenchRow } from "../../src/lab/metrics.ts";
import { mulberry32 } from "../../src/lab/_workload_plan.ts";

/** Options of {@link syntheticRun}. */
export interface SyntheticOptions {
  /** Seed of the generator (default 7). */
  seed?: number;
  /** Policy (default "mbcas"): only MBCAS records demand, allocation and prices. */
  policy?: LabPolicy;
  /** Run length, seconds (default 120). */
  seconds?: number;
  /** Names of the pods, by workload (defaults: latency-api, bursty-worker, batch-crunch, idle-sidecar). */
  names?: Partial<Record<WorkloadKind, string>>;
  /** Leave the idle pod out (3 pods instead of 4). */
  withoutIdle?: boolean;
}

const CAPACITY = 4000;

/** A synthetic run of 3–4 pods over `seconds` seconds. */
export function syntheticRun(options: SyntheticOptions = {}): LabRun {
  const seed = options.seed ?? 7;
  const policy = options.policy ?? "mbcas";
  const seconds = options.seconds ?? 120;
  const random = mulberry32(seed);
  const name = (w: WorkloadKind, fallback: string) => options.names?.[w] ?? fallback;
  const pods: LabPod[] = [
    {
      name: name("latency", "latency-api"),
      workload: "latency",
      requestMillicores: 500,
      limitMillicores: 1000,
    },
    {
      name: name("bursty", "bursty-worker"),
      workload: "bursty",
      requestMillicores: 300,
      limitMillicores: 800,
    },
    {
      name: name("batch", "batch-crunch"),
      workload: "batch",
      requestMillicores: 200,
      limitMillicores: null,
    },
  ];
  if (!options.withoutIdle) {
    pods.push({
      name: name("idle", "idle-sidecar"),
      workload: "idle",
      requestMillicores: 100,
      limitMillicores: 200,
    });
  }
  const mbcas = policy === "mbcas";
  const samples: LabSample[] = [];
  const latencies: LabLatencies[] = [];
  const prices: LabPrice[] = [];
  const resizes: LabResize[] = [];
  const limits = new Map<string, number | null>(pods.map((p) => [p.name, p.limitMillicores]));
  const demandEstimate = new Map<string, number>(pods.map((p) => [p.name, p.requestMillicores]));

  for (let t = 1; t <= seconds; t++) {
    // What each workload would use without limits this second.
    const want = new Map<string, number>();
    for (const pod of pods) {
      const noise = 0.9 + random() * 0.2;
      let w: number;
      switch (pod.workload) {
        case "latency":
          w = (350 + 250 * Math.sin(t / 9)) * noise + (t % 40 >= 30 ? 700 : 0);
          break;
        case "bursty":
          w = (t % 25 < 8 ? 1600 : 120) * noise;
          break;
        case "batch":
          w = 2600 * noise;
          break;
        default:
          w = 15 * noise;
      }
      want.set(pod.name, w);
    }
    // Allocation: a proportional market over the requests when MBCAS runs.
    const total = [...want.values()].reduce((a, b) => a + b, 0);
    const scale = total > CAPACITY ? CAPACITY / total : 1;
    let contended = false;
    for (const pod of pods) {
      const w = want.get(pod.name)!;
      let allocation: number | null = null;
      let guarantee: number | null = null;
      let demand: number | null = null;
      if (mbcas) {
        const est = demandEstimate.get(pod.name)! * 0.6 + w * 0.4;
        demandEstimate.set(pod.name, est);
        demand = Math.round(est);
        allocation = Math.round(Math.max(pod.requestMillicores, est * scale * 1.15));
        // What the pod keeps under contention: its request, up to its scaled demand.
        guarantee = Math.min(allocation, Math.round(Math.max(pod.requestMillicores, est * scale)));
        if (total > CAPACITY) contended = true;
        const previous = limits.get(pod.name) ?? null;
        if (t % 5 === 0 && previous !== allocation) {
          resizes.push({ t, pod: pod.name, fromMillicores: previous, toMillicores: allocation });
          limits.set(pod.name, allocation);
        }
      }
      const limit = limits.get(pod.name) ?? null;
      const usage = Math.min(w * scale, limit ?? Infinity);
      const throttled = limit !== null && w > limit ? w - limit : 0;
      samples.push({
        t,
        pod: pod.name,
        usageMillicores: Math.round(usage),
        throttledRatio: throttled > 0 ? Math.min(1, throttled / w + 0.2) : 0,
        throttledMillicores: Math.round(throttled),
        demandMillicores: demand,
        allocationMillicores: allocation,
        guaranteeMillicores: guarantee,
        limitMillicores: limit,
      });
      if (pod.workload === "latency") {
        const n = 30 + Math.floor(random() * 20);
        const slow = throttled > 0 ? 1 + (throttled / w) * 20 : 1;
        const values: number[] = [];
        for (let i = 0; i < n; i++) {
          const base = 4 + random() * 6;
          const tail = random() < 0.03 ? 40 + random() * 80 : 0;
          values.push(Math.round((base + tail) * slow * 100) / 100);
        }
        latencies.push({ t, pod: pod.name, latenciesMs: t % 37 === 0 ? [] : values });
      }
    }
    if (mbcas) {
      prices.push({ t, price: contended ? Math.round(random() * 1000 + 500) / 1e6 : null });
    }
  }
  return {
    scenario: "mixed-bursts",
    policy,
    seed,
    startedAt: "2025-01-02T03:04:05.000Z",
    durationSeconds: seconds,
    nodeCapacityMillicores: CAPACITY,
    pods,
    samples,
    prices,
    latencies,
    resizes,
  };
}

/** The number of `svg[data-chart]` a report of `run` must contain, worked out from the data. */
export function expectedChartCount(run: LabRun): number {
  const declared = new Set(run.pods.map((p) => p.name));
  const sampled = new Set(run.samples.filter((s) => declared.has(s.pod)).map((s) => s.pod));
  const cpu = run.pods.filter((p) => sampled.has(p.name)).length;
  const throttling = sampled.size > 0 ? 1 : 0;
  const latencyPods = new Set(run.pods.filter((p) => p.workload === "latency").map((p) => p.name));
  for (const l of run.latencies) if (declared.has(l.pod)) latencyPods.add(l.pod);
  const latency = run.latencies.some((l) => latencyPods.has(l.pod) && l.latenciesMs.length > 0)
    ? 1
    : 0;
  const price = run.prices.some((p) => p.price !== null) ? 1 : 0;
  return cpu + throttling + latency + price;
}

/** Two bench rows (static and MBCAS) for the comparison chart's tests. */
export function syntheticBenchRows(): BenchRow[] {
  return [
    {
      policy: "static",
      latencyP50Ms: 12,
      latencyP99Ms: 240,
      throttledSeconds: { latency: 12.5, bursty: 30.1 },
      batchCpuSeconds: 210,
      utilisation: 0.52,
      fairness: 0.71,
      resizes: 0,
      spikeToLimitP50S: null,
      spikeToLimitP99S: null,
    },
    {
      policy: "mbcas",
      latencyP50Ms: 8,
      latencyP99Ms: 60,
      throttledSeconds: { latency: 0.8, bursty: 3.2 },
      batchCpuSeconds: 330,
      utilisation: 0.88,
      fairness: 0.93,
      resizes: 48,
      spikeToLimitP50S: 2.1,
      spikeToLimitP99S: 4.8,
    },
  ];
}

/** The chart ids a report of the default synthetic run draws, in page order. */
export const SYNTHETIC_CHART_IDS = [
  "cpu-0",
  "cpu-1",
  "cpu-2",
  "cpu-3",
  "throttling",
  "latency",
  "price",
];

/** A sample of `pod` at second `t`: `usage` millicores under `limit`, nothing else recorded. */
export function handSample(
  t: number,
  pod: string,
  usage: number,
  limit: number | null = null,
): LabSample {
  return {
    t,
    pod,
    usageMillicores: usage,
    throttledRatio: 0,
    throttledMillicores: 0,
    demandMillicores: null,
    allocationMillicores: null,
    limitMillicores: limit,
  };
}

/** A hand-built run: the given parts, nothing else recorded (seed 1, 2000m node, 120 s). */
export function handRun(parts: Partial<LabRun> = {}): LabRun {
  return {
    scenario: "mixed",
    policy: "mbcas",
    seed: 1,
    startedAt: "2026-01-01T00:00:00.000Z",
    durationSeconds: 120,
    nodeCapacityMillicores: 2000,
    pods: [],
    samples: [],
    prices: [],
    latencies: [],
    resizes: [],
    ...parts,
  };
}

/**
 * A bench row of the `mixed` scenario's pods (web, bursty, batch-a, batch-b,
 * idle) with middling figures, `overrides` on top.
 */
export function labBenchRow(policy: LabPolicy, overrides: Partial<LabBenchRow> = {}): LabBenchRow {
  return {
    policy,
    latencyP50Ms: 10,
    latencyP99Ms: 100,
    throttledSeconds: { web: 10, bursty: 20, "batch-a": 0, "batch-b": 0, idle: 0 },
    batchCpuSeconds: 100,
    utilisation: 0.8,
    fairness: 0.99,
    resizes: 0,
    spikeToLimitP50S: null,
    spikeToLimitP99S: null,
    spikesAnswered: [0, 7],
    maxResizesPerPodPerMinute: 0,
    requests: 5000,
    workDone: { web: 0.99, bursty: 0.95 },
    elasticStepP50S: null,
    elasticStepsAnswered: [0, 4],
    resizesPerPodMinuteP95: 0,
    resizesPerPodMinuteMax: 0,
    ...overrides,
  };
}
