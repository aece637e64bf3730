/**
 * The lab bench's pure parts: the scenarios, the VPA-style recommender
 * model, the figures computed from a run, the target checks and summaries
 * of `lab-bench`, and its `--repeat` and `--from` options.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  agentWritesFromMetrics,
  benchRow,
  dedicatedLatenciesMs,
  elasticStepResponses,
  jainIndex,
  type LabBenchRow,
  maxResizesPerMinute,
  resizesPerPodMinute,
  spikeResponses,
  workDone,
  workDonePods,
} from "../../src/lab/metrics.ts";
import {
  buildScenario,
  type DemandSpike,
  type Scenario,
  type ScenarioPod,
  type ScenarioRoles,
  SCENARIOS,
  workloadSeed,
} from "../../src/lab/scenario.ts";
import { parseRateSchedule, poissonArrivals } from "../../src/lab/_workload_plan.ts";
import { handRun, handSample, labBenchRow } from "./_synthetic_run.ts";
import {
  checkTargets,
  cpuAccountLines,
  formatSpread,
  formatTable,
  groupRepetitions,
  median,
  medianRows,
  type RecordedRun,
  resultsJson,
  summaryMarkdown,
  targetChecks,
  targetSpread,
} from "../../src/cli/lab_bench.ts";
import { percentile, renderComparisonSvg } from "../../src/lab/report.ts";
import { taskRunFlags } from "../_support/task_flags.ts";
import {
  addSample,
  emptyHistogram,
  histogramPercentile,
  recommendedLimit,
} from "../../src/lab/vpa.ts";
import type { LabRun, LabSample } from "../../src/lab/types.ts";

Deno.test("scenarios: requests fit the node, spikes are in order, roles name real pods", () => {
  for (const name of SCENARIOS) {
    for (const duration of [60, 150, 600]) {
      const s = buildScenario(name, duration, 1600);
      const names = new Set(s.pods.map((p) => p.name));
      assert.ok(s.pods.reduce((a, p) => a + p.requestMillicores, 0) <= 1600);
      for (const p of s.pods) assert.ok(p.limitMillicores >= p.requestMillicores);
      assert.deepEqual(s.spikes, [...s.spikes].sort((a, b) => a.atS - b.atS));
      for (const spike of s.spikes) {
        assert.ok(names.has(spike.pod) && spike.atS >= 0 && spike.atS < duration);
      }
      for (const list of Object.values(s.roles)) for (const p of list) assert.ok(names.has(p));
    }
  }
  assert.deepEqual(buildScenario("mixed", 150, 1600), buildScenario("mixed", 150, 1600));
});

Deno.test("VPA model: p90 of a decaying histogram plus 15%, never below the request", () => {
  assert.equal(recommendedLimit(emptyHistogram(), 100), null);
  let h = emptyHistogram();
  for (let t = 0; t < 100; t++) h = addSample(h, t < 95 ? 200 : 1000, 250, t);
  const p90 = histogramPercentile(h, 0.9)!;
  assert.ok(p90 >= 200 && p90 <= 200 * 1.1, `p90 ${p90} is the end of the 200m bucket`);
  assert.equal(recommendedLimit(h, 250), 250, "200m × 1.15 is below the request");
  assert.equal(recommendedLimit(h, 100), Math.ceil(p90 * 1.15));
  fc.assert(
    fc.property(
      fc.array(fc.integer({ min: 0, max: 4000 }), { minLength: 1, maxLength: 50 }),
      (xs) => {
        let hist = emptyHistogram();
        xs.forEach((x, t) => (hist = addSample(hist, x, 100, t)));
        const p50 = histogramPercentile(hist, 0.5)!;
        const p90b = histogramPercentile(hist, 0.9)!;
        const max = Math.max(...xs);
        return p50 <= p90b && p90b >= Math.min(...xs) && p90b <= Math.max(10, max * 1.1 + 10);
      },
    ),
    { endOnFailure: true },
  );
});

Deno.test("bench figures: Jain's index", () => {
  assert.equal(jainIndex([5, 5]), 1);
  assert.equal(jainIndex([1, 0]), 0.5);
  assert.equal(jainIndex([3]), null);
  assert.equal(jainIndex([0, 0]), null);
});

function sample(t: number, pod: string, usage: number, limit: number | null): LabSample {
  return {
    t,
    pod,
    usageMillicores: usage,
    throttledRatio: 0,
    throttledMillicores: pod === "web" && limit !== null && limit < 500 ? 100 : 0,
    demandMillicores: null,
    allocationMillicores: null,
    limitMillicores: limit,
  };
}

function run(policy: LabRun["policy"], resizes: LabRun["resizes"]): LabRun {
  const samples: LabSample[] = [];
  for (let t = 1; t <= 150; t++) {
    const webLimit = resizes.filter((r) => r.pod === "web" && r.t <= t).at(-1)?.toMillicores ??
      300;
    samples.push(sample(t, "web", 250, webLimit));
    samples.push(sample(t, "bursty", 100, 300));
    samples.push(sample(t, "batch-a", 500, 500));
    samples.push(sample(t, "batch-b", t >= 45 && t < 120 ? 400 : 0, 500));
    samples.push(sample(t, "idle", 1, 200));
  }
  return {
    scenario: "mixed",
    policy,
    seed: 1,
    startedAt: "2026-11-27T00:00:00Z",
    durationSeconds: 150,
    nodeCapacityMillicores: 1600,
    pods: buildScenario("mixed", 150, 1600).pods.map((p) => ({ ...p })),
    samples,
    prices: [],
    latencies: [{ t: 1, pod: "web", latenciesMs: [1, 2, 3, 4, 100] }],
    resizes,
  };
}

Deno.test("bench figures: spike to limit, resizes per minute, throttling, batch, fairness", () => {
  const scenario = buildScenario("mixed", 150, 1600);
  const webSpikes = scenario.spikes.filter((s) => s.pod === "web").map((s) => s.atS);
  assert.deepEqual(webSpikes, [38, 105]);
  const none = spikeResponses(run("static", []), scenario);
  assert.ok(none.every((r) => r === null || r === 0), "static never raises");
  const mbcas = run("mbcas", [
    { t: 40.5, pod: "web", fromMillicores: 300, toMillicores: 650 },
    { t: 70, pod: "web", fromMillicores: 650, toMillicores: 400 },
    { t: 106, pod: "web", fromMillicores: 400, toMillicores: 650 },
  ]);
  const responses = spikeResponses(mbcas, scenario);
  const web = scenario.spikes.map((s, i) => [s, responses[i]] as const).filter(([s]) =>
    s.pod === "web"
  );
  assert.deepEqual(web.map(([, r]) => r), [2.5, 1]);
  assert.equal(maxResizesPerMinute(mbcas), 2, "40.5 and 70 in one minute; 106 with 70");
  const row = benchRow(mbcas, scenario);
  assert.equal(row.latencyP50Ms, 3);
  assert.equal(row.latencyP99Ms, 100);
  assert.equal(row.requests, 5);
  assert.equal(row.batchCpuSeconds, (150 * 500 + 75 * 400) / 1000);
  assert.equal(row.resizes, 3);
  // 40 s at 300m and 400m-limited web seconds are "throttled" in this synthetic run.
  assert.ok(row.throttledSeconds.web > 0 && row.throttledSeconds.bursty === 0);
  const expectedJain = (500 + 400) ** 2 / (2 * (500 ** 2 + 400 ** 2));
  assert.ok(Math.abs(row.fairness! - expectedJain) < 1e-9);
  const used = 150 * (250 + 100 + 500 + 1) + 75 * 400;
  assert.ok(Math.abs(row.utilisation - used / (1.6 * 150 * 1000)) < 1e-9);
});

// --- work done, elastic step responses, resizes per pod-minute ---

function scenarioOf(
  pods: ScenarioPod[],
  roles: Partial<ScenarioRoles> = {},
  spikes: DemandSpike[] = [],
  durationSeconds = 40,
): Scenario {
  return {
    name: "mixed",
    description: "hand-built",
    durationSeconds,
    allocatableMillicores: 2000,
    pods,
    spikes,
    roles: { latency: [], protected: [], batch: [], contending: [], elastic: [], ...roles },
  };
}

function scenarioPod(name: string, workload: ScenarioPod["workload"], args: string[]): ScenarioPod {
  return { name, workload, requestMillicores: 100, limitMillicores: 500, args };
}

/** Phases: on in (0, 10], (20, 30] (seconds whose middle is on), two threads. */
const BURST = scenarioPod("burst", "bursty", [
  "--on-s",
  "10",
  "--off-s",
  "10",
  "--parallelism",
  "2",
]);
const SVC = scenarioPod("svc", "latency", ["--rate-schedule", "0:20,30:0", "--cost-ms", "5"]);

/** Samples of `pod` for t = 1..40: `on` millicores in the seconds of an on phase, `off` otherwise. */
function burstSamples(pod: string, on: (t: number) => number, off = 0): LabSample[] {
  return Array.from({ length: 40 }, (_, i) => i + 1).map((t) => {
    const isOn = (t >= 1 && t <= 10) || (t >= 21 && t <= 30);
    return handSample(t, pod, isOn ? on(t) : off);
  });
}

Deno.test("work done: a bursty pod fully served, half served, over-served seconds capped", () => {
  const scenario = scenarioOf([BURST]);
  const full = handRun({ durationSeconds: 40, samples: burstSamples("burst", () => 2000, 900) });
  assert.deepEqual(workDone(full, scenario), { burst: 1 }, "off seconds neither ask nor count");
  const half = handRun({ durationSeconds: 40, samples: burstSamples("burst", () => 1000) });
  assert.deepEqual(workDone(half, scenario), { burst: 0.5 });
  // 3000m in one second does not make up for 1000m in the next: min(usage, 2000) each.
  const uneven = handRun({
    durationSeconds: 40,
    samples: burstSamples("burst", (t) => (t % 2 === 0 ? 3000 : 1000)),
  });
  assert.deepEqual(workDone(uneven, scenario), { burst: 0.75 });
  // Only the recorded seconds count: 5 of the 20 on seconds recorded, all served.
  const sparse = handRun({
    durationSeconds: 40,
    samples: [1, 2, 3, 21, 22].map((t) => handSample(t, "burst", 2000)),
  });
  assert.deepEqual(workDone(sparse, scenario), { burst: 1 });
  // The phase offset moves the on seconds: on in (5, 15] now.
  const shifted = scenarioOf([{ ...BURST, args: [...BURST.args, "--phase-offset-s", "5"] }]);
  const early = handRun({
    durationSeconds: 40,
    samples: Array.from(
      { length: 15 },
      (_, i) => handSample(i + 1, "burst", i + 1 <= 5 ? 0 : 2000),
    ),
  });
  assert.deepEqual(workDone(early, shifted), { burst: 1 });
  assert.deepEqual(workDone(early, scenario), { burst: 0.5 }, "(0, 10] half idle");
});

Deno.test("work done: a latency pod with every arrival completed, and half of them", () => {
  const scenario = scenarioOf([SVC]);
  const arrivals = (runSeed: number, end: number) =>
    poissonArrivals(parseRateSchedule("0:20,30:0"), workloadSeed(runSeed, "svc"), 0, end + 1e-9)
      .length;
  const n = arrivals(1, 40);
  assert.ok(n > 450 && n < 750, `about 20/s for 30 s: ${n}`);
  const completed = (
    count: number,
  ): LabRun["latencies"] => [{
    t: 1,
    pod: "svc",
    latenciesMs: Array(count - Math.floor(count / 2)).fill(5),
  }, {
    t: 2,
    pod: "svc",
    latenciesMs: Array(Math.floor(count / 2)).fill(7),
  }];
  const all = handRun({ seed: 1, durationSeconds: 40, latencies: completed(n) });
  assert.deepEqual(workDone(all, scenario), { svc: 1 });
  const half = handRun({ seed: 1, durationSeconds: 40, latencies: completed(Math.floor(n / 2)) });
  assert.deepEqual(workDone(half, scenario), { svc: Math.floor(n / 2) / n });
  // Arrivals are the pod's workload seed's (run seed + hash of the name), not the run seed's.
  const rawSeed = poissonArrivals(parseRateSchedule("0:20,30:0"), 1, 0, 40).length;
  assert.notEqual(rawSeed, n, "the test tells the two seeds apart");
  // A shorter run asks for the arrivals up to its end only.
  const short = handRun({ seed: 1, durationSeconds: 12, latencies: completed(arrivals(1, 12)) });
  assert.deepEqual(workDone(short, scenario), { svc: 1 });
  // Other latencies (another pod's) do not count.
  const other = handRun({
    seed: 1,
    durationSeconds: 40,
    latencies: [{ t: 1, pod: "web", latenciesMs: Array(n).fill(1) }],
  });
  assert.deepEqual(workDone(other, scenario), { svc: 0 });
});

Deno.test("dedicated latencies: each latency pod's arrivals served in order on a CPU of its own", () => {
  const other = scenarioPod("other", "latency", ["--rate-schedule", "0:50", "--cost-ms", "9"]);
  const scenario = scenarioOf([SVC, other], { latency: ["svc"] });
  const arrivalsMs = poissonArrivals(parseRateSchedule("0:20,30:0"), workloadSeed(1, "svc"), 0, 40)
    .map((t) => t * 1000);
  const latencies = dedicatedLatenciesMs(scenario, 40, 1);
  // Only `svc` (the latency role), every arrival of the run, none after its end.
  assert.equal(latencies.length, arrivalsMs.length);
  assert.equal(
    dedicatedLatenciesMs(scenario, 12, 1).length,
    arrivalsMs.filter((t) => t < 12_000).length,
  );
  // A request takes its 5 ms, after what the one before it still had left when it arrived.
  latencies.forEach((l, i) => {
    const left = i === 0 ? 0 : Math.max(0, latencies[i - 1] - (arrivalsMs[i] - arrivalsMs[i - 1]));
    assert.ok(Math.abs(l - (5 + left)) < 1e-6, `request ${i}: ${l} ms, expected ${5 + left}`);
  });
  assert.ok(
    latencies.some((l) => l > 5 + 1e-6),
    "some request queued (the test exercises queueing)",
  );
  // A costlier request waits at least as long, request by request.
  const costly = scenarioOf([
    scenarioPod("svc", "latency", ["--rate-schedule", "0:20,30:0", "--cost-ms", "20"]),
  ], { latency: ["svc"] });
  dedicatedLatenciesMs(costly, 40, 1).forEach((l, i) => assert.ok(l >= latencies[i] + 15 - 1e-6));
  // The bench row's reference is their p99; without latency pods there is none.
  assert.equal(
    benchRow(handRun({ seed: 1, durationSeconds: 40 }), scenario).latencyP99DedicatedMs,
    percentile(latencies, 99),
  );
  assert.equal(
    benchRow(handRun({ seed: 1, durationSeconds: 40 }), scenarioOf([other])).latencyP99DedicatedMs,
    null,
  );
});

Deno.test("work done: which pods, null when nothing was asked, bad options named", () => {
  const scenario = scenarioOf([
    SVC,
    BURST,
    scenarioPod("late", "bursty", ["--on-s", "10", "--off-s", "10"]),
    scenarioPod("crunch", "batch", []),
    scenarioPod("sleepy", "idle", []),
  ], { batch: ["late", "crunch"] });
  assert.deepEqual(workDonePods(scenario), ["svc", "burst"]);
  const quiet = handRun({ durationSeconds: 0 });
  assert.deepEqual(workDone(quiet, scenario), { svc: null, burst: null });
  const mixed = buildScenario("mixed", 150, 2000);
  assert.deepEqual(workDonePods(mixed), ["web", "bursty"], "batch-b is bursty but batch");
  const bad = scenarioOf([scenarioPod("oops", "bursty", ["--on-s", "0"])]);
  assert.throws(
    () => workDone(handRun(), bad),
    /pod "oops": args \["--on-s","0"\]: --on-s must be greater than 0, got "0"/,
  );
});

/** A mixed-scenario run of 150 s: every pod sampled each second unless `only` says otherwise. */
function mixedRun(
  resizes: LabRun["resizes"],
  only: Record<string, (t: number) => boolean> = {},
): LabRun {
  const scenario = buildScenario("mixed", 150, 2000);
  const samples: LabSample[] = [];
  for (let t = 1; t <= 150; t++) {
    for (const p of scenario.pods) {
      if (only[p.name]?.(t) ?? true) samples.push(handSample(t, p.name, 100, 500));
    }
  }
  return handRun({
    durationSeconds: 150,
    pods: scenario.pods.map((p) => ({ ...p, tier: p.tier ?? "protected" })),
    samples,
    resizes,
  });
}

Deno.test("elastic step responses: first cut of each elastic pod after each latency step", () => {
  const scenario = buildScenario("mixed", 150, 2000);
  assert.deepEqual(
    scenario.spikes.filter((s) => scenario.roles.latency.includes(s.pod)).map((s) => s.atS),
    [38, 105],
  );
  const run = mixedRun([
    { t: 39.5, pod: "batch-a", fromMillicores: 500, toMillicores: 300 },
    { t: 40, pod: "batch-b", fromMillicores: 300, toMillicores: 500 }, // a raise: not an answer
    { t: 60, pod: "batch-b", fromMillicores: 500, toMillicores: 250 },
    { t: 70, pod: "web", fromMillicores: 400, toMillicores: 300 }, // not an elastic pod
    { t: 105, pod: "batch-a", fromMillicores: 300, toMillicores: 250 }, // at the step: the next one's
    { t: 107, pod: "batch-b", fromMillicores: null, toMillicores: 400 }, // unlimited to a limit
  ]);
  assert.deepEqual(elasticStepResponses(run, scenario), [
    { latencyPod: "web", atS: 38, elasticPod: "batch-a", seconds: 1.5, yielding: false },
    { latencyPod: "web", atS: 38, elasticPod: "batch-b", seconds: 22, yielding: false },
    { latencyPod: "web", atS: 105, elasticPod: "batch-a", seconds: 0, yielding: false },
    { latencyPod: "web", atS: 105, elasticPod: "batch-b", seconds: 2, yielding: false },
  ]);
  const row = benchRow(run, scenario);
  assert.equal(row.elasticStepP50S, 1.5, "nearest rank of 0, 1.5, 2, 22");
  assert.deepEqual(row.elasticStepsAnswered, [4, 4]);
});

Deno.test("elastic step responses: a step never answered, a pod without samples then", () => {
  const scenario = buildScenario("mixed", 150, 2000);
  const run = mixedRun([
    { t: 39.5, pod: "batch-a", fromMillicores: 500, toMillicores: 300 },
    { t: 105, pod: "batch-a", fromMillicores: 300, toMillicores: 250 },
    { t: 104, pod: "batch-b", fromMillicores: 500, toMillicores: 200 }, // before the step
    { t: 120, pod: "batch-b", fromMillicores: 200, toMillicores: 300 }, // a raise
  ], { "batch-b": (t) => t >= 110 });
  assert.deepEqual(elasticStepResponses(run, scenario), [
    { latencyPod: "web", atS: 38, elasticPod: "batch-a", seconds: 1.5, yielding: false },
    { latencyPod: "web", atS: 105, elasticPod: "batch-a", seconds: 0, yielding: false },
    { latencyPod: "web", atS: 105, elasticPod: "batch-b", seconds: null, yielding: false },
  ]);
  const row = benchRow(run, scenario);
  assert.equal(row.elasticStepP50S, 0);
  assert.deepEqual(row.elasticStepsAnswered, [2, 3]);
  // No cut at all: every step unanswered, no median.
  const never = benchRow(mixedRun([]), scenario);
  assert.equal(never.elasticStepP50S, null);
  assert.deepEqual(never.elasticStepsAnswered, [0, 4]);
});

Deno.test("elastic step responses: an elastic pod at the lowest CPU weight at a step yielded in the kernel", () => {
  const scenario = buildScenario("mixed", 150, 2000);
  const run = mixedRun([{ t: 39.5, pod: "batch-a", fromMillicores: 500, toMillicores: 300 }]);
  // batch-a is lowered from t = 10 on; batch-b keeps the kubelet's weight; web's is never read.
  run.samples = run.samples.map((x) =>
    x.pod === "batch-a"
      ? { ...x, cpuWeight: x.t >= 10 ? 2 : 102 }
      : x.pod === "batch-b"
      ? { ...x, cpuWeight: 102 }
      : x
  );
  assert.deepEqual(
    elasticStepResponses(run, scenario).map((r) => [r.atS, r.elasticPod, r.yielding]),
    [[38, "batch-a", true], [38, "batch-b", false], [105, "batch-a", true], [
      105,
      "batch-b",
      false,
    ]],
  );
  assert.equal(benchRow(run, scenario).elasticStepsYielding, 2);
  // Lowered only after the first step: yielding at the second step only.
  const late = mixedRun([]);
  late.samples = late.samples.map((x) =>
    x.pod === "batch-a" ? { ...x, cpuWeight: x.t > 38 ? 2 : 102 } : x
  );
  assert.deepEqual(
    elasticStepResponses(late, scenario).filter((r) => r.elasticPod === "batch-a").map((r) =>
      r.yielding
    ),
    [false, true],
  );
});

Deno.test("elastic step responses: no elastic pods, or no latency steps, give none", () => {
  const mixed = buildScenario("mixed", 150, 2000);
  const run = mixedRun([{ t: 39.5, pod: "batch-a", fromMillicores: 500, toMillicores: 300 }]);
  const noElastic = { ...mixed, roles: { ...mixed.roles, elastic: [] } };
  assert.deepEqual(elasticStepResponses(run, noElastic), []);
  const row = benchRow(run, noElastic);
  assert.equal(row.elasticStepP50S, null);
  assert.deepEqual(row.elasticStepsAnswered, [0, 0]);
  const noSteps = { ...mixed, spikes: mixed.spikes.filter((s) => s.pod !== "web") };
  assert.deepEqual(elasticStepResponses(run, noSteps), [], "bursty spikes are not load steps");
});

Deno.test("resizes per pod-minute: whole minutes, the partial last one from 30 s, idle pods", () => {
  const pods = ["a", "b"].map((name) => ({
    name,
    workload: "batch" as const,
    requestMillicores: 100,
    limitMillicores: 500,
  }));
  const resize = (t: number, pod = "a") => ({ t, pod, fromMillicores: 500, toMillicores: 400 });
  const resizes = [resize(10), resize(59.9), resize(60), resize(125), resize(150), resize(7, "x")];
  const windows = (durationSeconds: number) =>
    resizesPerPodMinute(handRun({ durationSeconds, pods, resizes })).map((w) =>
      `${w.pod} ${w.fromS}-${w.toS}: ${w.resizes}`
    );
  assert.deepEqual(windows(150), [
    "a 0-60: 2",
    "a 60-120: 1",
    "a 120-150: 2", // the run's end counts in its last window
    "b 0-60: 0",
    "b 60-120: 0",
    "b 120-150: 0",
  ]);
  assert.deepEqual(windows(140), ["a 0-60: 2", "a 60-120: 1", "b 0-60: 0", "b 60-120: 0"]);
  assert.deepEqual(windows(90), ["a 0-60: 2", "a 60-90: 1", "b 0-60: 0", "b 60-90: 0"]);
  assert.deepEqual(windows(0), []);
  // p95 (nearest rank) and max in the row: 20 minutes, one of them busy.
  const scenario = scenarioOf([], {}, [], 1200);
  const busy = [1, 2, 3, 4, 5].map((t) => resize(600 + t));
  const spread = Array.from({ length: 20 }, (_, k) => resize(k * 60 + 30)).filter((r) =>
    r.t !== 630
  );
  const row = benchRow(
    handRun({ durationSeconds: 1200, pods: [pods[0]], resizes: [...busy, ...spread] }),
    scenario,
  );
  assert.equal(row.resizesPerPodMinuteP95, 1);
  assert.equal(row.resizesPerPodMinuteMax, 5);
  assert.equal(row.maxResizesPerPodPerMinute, 6, "a sliding 60 s also takes 570 with 601..605");
  const calm = benchRow(handRun({ durationSeconds: 0, pods }), scenario);
  assert.equal(calm.resizesPerPodMinuteP95, 0);
  assert.equal(calm.resizesPerPodMinuteMax, 0);
});

// --- lab-bench: targets, tables, repetitions ---

/** Rows where MBCAS meets some targets and misses others, against static and no limits. */
function verdictRows(): LabBenchRow[] {
  const zero = { web: 0, bursty: 0, "batch-a": 0, "batch-b": 0, idle: 0 };
  return [
    labBenchRow("static", {
      batchCpuSeconds: 80,
      throttledSeconds: { ...zero, web: 20, bursty: 40 },
      workDone: { web: 0.5, bursty: 0.3 },
    }),
    labBenchRow("none", {
      utilisation: 0.9,
      batchCpuSeconds: 120,
      latencyP99Ms: 80,
      throttledSeconds: zero,
    }),
    labBenchRow("mbcas", {
      utilisation: 0.8, // 0.89× none: met
      batchCpuSeconds: 96, // 80% of none, 1.2× static: both met
      latencyP99Ms: 50, // 0.63× none: missed
      throttledSeconds: { ...zero, web: 5, bursty: 20 }, // 75% and 50% below static
      workDone: { web: 0.99, bursty: 0.85 },
      elasticStepP50S: 1.5,
      elasticStepsAnswered: [3, 4],
      resizesPerPodMinuteP95: 2,
      resizesPerPodMinuteMax: 5,
      fairness: 0.96,
      allocationWritesPerMinute: 12.5,
    }),
  ];
}

Deno.test("checkTargets: MET and MISS against the other policies of the run", () => {
  const scenario = buildScenario("mixed", 150, 2000);
  assert.deepEqual(checkTargets(verdictRows(), scenario), [
    "MET   node use 80% vs no limits 90% (0.89×; target ≥ 0.85×)",
    "MET   batch 96.0 CPU-s vs no limits 120.0 (80%; target ≥ 75%)",
    "MET   batch 96.0 CPU-s vs static 80.0 (1.20×; target ≥ 1.2×)",
    "MISS  latency p99 50.0 ms vs no limits 80.0 ms (0.63×; target ≤ 0.5×)",
    "MET   web: throttled time 5.0 s vs static 20.0 s (75% lower; target ≥ 60% lower)",
    "MISS  bursty: throttled time 20.0 s vs static 40.0 s (50% lower; target ≥ 60% lower)",
    "MET   web: work done 99% of the requests that arrived (target ≥ 90%)",
    "MISS  bursty: work done 85% of its busy threads' CPU (target ≥ 90%)",
    "MET   latency load step → elastic limits down in the kernel: p50 1.5 s (3/4 answered; target ≤ 2 s)",
    "MET   kernel resizes per pod-minute: p95 2 (target ≤ 2)",
    "MISS  kernel resizes per pod-minute: max 5 (target ≤ 4)",
    "MISS  fairness 0.960 (target ≥ 0.97)",
  ]);
  // The p99 line gives the same arrivals' p99 on a CPU of their own, and its ratio to no limits.
  const referenced = verdictRows();
  referenced[2].latencyP99DedicatedMs = 36;
  assert.equal(
    checkTargets(referenced, scenario)[3],
    "MISS  latency p99 50.0 ms vs no limits 80.0 ms (0.63×; target ≤ 0.5×); " +
      "on a CPU of its own the same arrivals give 36.0 ms (0.45× of no limits)",
  );
  // The same figures met: every line MET.
  const better = verdictRows();
  Object.assign(better[2], {
    latencyP99Ms: 40,
    throttledSeconds: { ...better[2].throttledSeconds, bursty: 16 },
    workDone: { web: 0.9, bursty: 0.9 },
    resizesPerPodMinuteMax: 4,
    fairness: 0.97,
  });
  assert.ok(checkTargets(better, scenario).every((l) => l.startsWith("MET   ")));
});

Deno.test("checkTargets: n/a without a baseline or a figure; nothing without MBCAS", () => {
  const scenario = buildScenario("mixed", 150, 2000);
  const mbcas = verdictRows()[2];
  const alone = checkTargets(
    [{ ...mbcas, elasticStepsAnswered: [0, 0], elasticStepP50S: null }],
    scenario,
  );
  assert.deepEqual(alone.slice(0, 6), [
    "n/a   node use 80% vs no limits no none run (–; target ≥ 0.85×)",
    "n/a   batch 96.0 CPU-s vs no limits no none run (–; target ≥ 75%)",
    "n/a   batch 96.0 CPU-s vs static no static run (–; target ≥ 1.2×)",
    "n/a   latency p99 50.0 ms vs no limits no none run (–; target ≤ 0.5×)",
    "n/a   web: throttled time 5.0 s vs static no static run (-; target ≥ 60% lower)",
    "n/a   bursty: throttled time 20.0 s vs static no static run (-; target ≥ 60% lower)",
  ]);
  assert.equal(
    alone[8],
    "n/a   latency load step → elastic limits down in the kernel: p50 – (0/0 answered; target ≤ 2 s)",
  );
  // Steps there were, none answered: missed, not n/a.
  const unanswered = checkTargets([{
    ...mbcas,
    elasticStepP50S: null,
    elasticStepsAnswered: [0, 4],
  }], scenario);
  assert.equal(
    unanswered[8],
    "MISS  latency load step → elastic limits down in the kernel: p50 – (0/4 answered; target ≤ 2 s)",
  );
  const noWork = checkTargets([{ ...mbcas, workDone: { web: null, bursty: null } }], scenario);
  assert.equal(noWork[6], "n/a   web: work done – of the requests that arrived (target ≥ 90%)");
  assert.deepEqual(checkTargets(verdictRows().slice(0, 2), scenario), []);
});

Deno.test("formatTable: work done of the non-batch pods, step to elastic cut, resizes per pod-minute, the agent's writes", () => {
  const scenario = buildScenario("mixed", 150, 2000);
  const table = formatTable(verdictRows(), scenario);
  const [outcomes, control] = table.split("\n\n").map((block) => block.split("\n"));
  assert.equal(outcomes.length, 4);
  assert.equal(control.length, 4);
  const head = outcomes[0].split(/\s{2,}/);
  assert.deepEqual(head.slice(-2), ["done web", "done bursty"]);
  assert.ok(!outcomes[0].includes("done batch-b"), "batch-b is a batch pod");
  assert.deepEqual(outcomes[3].split(/\s{2,}/).slice(-2), ["99%", "85%"]);
  assert.deepEqual(control[0].split(/\s{2,}/), [
    "policy",
    "resizes",
    "max/pod/60s",
    "resizes/pod-min p95/max",
    "spike→limit p50/p99 s (answered)",
    "step→elastic↓ p50 s (answered)",
    "PodAllocation writes/min",
  ]);
  assert.deepEqual(control[3].split(/\s{2,}/), [
    "mbcas",
    "0",
    "0",
    "2/5",
    "-/- (0/7)",
    "1.5 (3/4)",
    "12.5",
  ]);
  assert.equal(control[1].split(/\s{2,}/).at(-1), "-", "static limits: no agent, no figure");
  // Columns line up: each cell starts where its header does.
  const at = control[0].indexOf("step→elastic↓");
  assert.equal(control[3].indexOf("1.5 (3/4)"), at);
});

/** Three repetitions' rows: MBCAS's p99 and fairness vary. */
function repeatedRows(): LabBenchRow[][] {
  return [[50, 0.96], [40, 0.98], [2000, 0.99]].map(([p99, fairness]) =>
    verdictRows().map((r) => r.policy === "mbcas" ? { ...r, latencyP99Ms: p99, fairness } : r)
  );
}

Deno.test("targetSpread and formatSpread: median, min–max and met count over repetitions", () => {
  const scenario = buildScenario("mixed", 150, 2000);
  const spread = targetSpread(repeatedRows().map((rows) => targetChecks(rows, scenario)));
  const latency = spread.find((s) => s.key === "latency-p99")!;
  assert.deepEqual(
    { median: latency.median, min: latency.min, max: latency.max, met: latency.met },
    { median: 50 / 80, min: 40 / 80, max: 2000 / 80, met: 1 },
  );
  const fairness = spread.find((s) => s.key === "fairness")!;
  assert.equal(fairness.met, 2);
  const lines = formatSpread(spread);
  assert.ok(
    lines.includes("latency p99 vs no limits: 0.63× (0.50×–25.00×) (target ≤ 0.5×): met in 1 of 3"),
  );
  assert.ok(lines.includes("fairness (Jain): 0.980 (0.960–0.990) (target ≥ 0.97): met in 2 of 3"));
  assert.ok(
    lines.includes("node use vs no limits: 0.89× (target ≥ 0.85×): met in 3 of 3"),
    "equal: one value",
  );
  // A target not applicable in one repetition (no static run there) says so.
  const reps = repeatedRows();
  reps[1] = reps[1].filter((r) => r.policy !== "static");
  const partial = targetSpread(reps.map((rows) => targetChecks(rows, scenario)));
  const batch = partial.find((s) => s.key === "batch-vs-static")!;
  assert.deepEqual([batch.met, batch.notApplicable, batch.repetitions], [2, 1, 3]);
  assert.ok(
    formatSpread(partial).includes(
      "batch CPU-s vs static: 1.20× (target ≥ 1.2×): met in 2 of 3 (n/a in 1)",
    ),
  );
  assert.deepEqual(targetSpread([]), []);
});

Deno.test("median: odd and even counts, nulls and non-finite values left out", () => {
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.equal(median([null, 5, NaN]), 5);
  assert.equal(median([null]), null);
  assert.equal(median([]), null);
});

Deno.test("summaryMarkdown: per-policy medians with min–max, and the targets met", () => {
  const scenario = buildScenario("mixed", 150, 2000);
  const md = summaryMarkdown(repeatedRows(), scenario, {
    durationSeconds: 150,
    seed: 1,
    nodeMillicores: 2000,
  });
  const lines = md.split("\n");
  assert.equal(
    lines[0],
    "Scenario `mixed`, 150 s per policy, seed 1, node 2000m; median (min–max) over 3 repetitions.",
  );
  assert.equal(
    lines[2],
    "| policy | web p99 | batch CPU-s | node use | bursty work done | throttled web s | throttled bursty s | resizes/pod-min p95 | resizes/pod-min max | fairness |",
  );
  assert.ok(lines.includes("| static | 100 ms | 80.0 | 80% | 30% | 20.0 | 40.0 | 0 | 0 | 0.990 |"));
  assert.ok(
    lines.includes(
      "| mbcas | 50 ms (40 ms–2.0 s) | 96.0 | 80% | 85% | 5.0 | 20.0 | 2 | 5 | 0.980 (0.960–0.990) |",
    ),
    md,
  );
  assert.ok(
    lines.includes("| latency p99 vs no limits ≤ 0.5× | 0.63× (0.50×–25.00×) | 1 of 3 |"),
    md,
  );
  assert.ok(lines.includes("| kernel resizes per pod-minute, max ≤ 4 | 5 | 0 of 3 |"), md);
  const one = summaryMarkdown([verdictRows()], scenario, {
    durationSeconds: 150,
    seed: 1,
    nodeMillicores: 2000,
  });
  assert.ok(one.startsWith("Scenario `mixed`, 150 s per policy, seed 1, node 2000m; one run."));
  assert.ok(one.includes("| mbcas | 50 ms | 96.0 |"));
  assert.ok(!one.includes("On a CPU of its own"), "no reference line without the figure");
  const rows = verdictRows().map((r) => ({ ...r, latencyP99DedicatedMs: 36.2 }));
  const referenced = summaryMarkdown([rows], scenario, {
    durationSeconds: 150,
    seed: 1,
    nodeMillicores: 2000,
  });
  assert.ok(
    referenced.includes(
      "On a CPU of its own, with nothing else running, `web` would serve the same arrivals with " +
        "a p99 of 36 ms: their queueing alone, the same under every policy.",
    ),
    referenced,
  );
});

Deno.test("medianRows: the comparison chart's figures, per policy, over repetitions", () => {
  const rows = repeatedRows();
  rows[1] = rows[1].map((r) => ({ ...r, resizes: r.policy === "mbcas" ? 10 : r.resizes }));
  const medians = medianRows(rows);
  assert.deepEqual(medians.map((r) => r.policy), ["static", "none", "mbcas"]);
  const mbcas = medians[2];
  assert.equal(mbcas.latencyP99Ms, 50);
  assert.equal(mbcas.fairness, 0.98);
  assert.equal(mbcas.resizes, 0, "median of 0, 10, 0");
  assert.equal(mbcas.throttledSeconds.bursty, 20);
  const two = medianRows(repeatedRows().slice(0, 2));
  assert.equal(two[2].latencyP99Ms, 45, "even count: mean of the middle two");
  assert.match(renderComparisonSvg(medians), /data-series="3"/);
});

Deno.test("groupRepetitions and resultsJson: old files are one repetition, new ones keep theirs", () => {
  const policies: LabRun["policy"][] = ["static", "none", "vpa", "mbcas"];
  const old = policies.map((policy) => handRun({ policy }));
  assert.deepEqual(groupRepetitions(old).map((g) => g.map((r) => r.policy)), [policies]);
  // Old runs appended twice: a policy seen again starts the next repetition.
  assert.deepEqual(groupRepetitions([...old, ...old]).map((g) => g.length), [4, 4]);
  // Recorded repetitions win, in their order, whatever the file order.
  const tagged = [
    { ...handRun({ policy: "mbcas" }), repetition: 2 },
    { ...handRun({ policy: "static" }), repetition: 1 },
    { ...handRun({ policy: "static", seed: 9 }), repetition: 2 },
  ];
  assert.deepEqual(
    groupRepetitions(tagged).map((g) => g.map((r) => `${r.policy}/${r.seed}`)),
    [["static/1"], ["mbcas/1", "static/9"]],
  );
  const scenario = buildScenario("mixed", 150, 2000);
  const runs = [[handRun({ policy: "static" })], [handRun({ policy: "static", seed: 2 })]];
  const rows = runs.map((rs) => rs.map((r) => benchRow(r, scenario)));
  const parsed = JSON.parse(resultsJson(runs, rows));
  assert.equal(parsed.repetitions, 2);
  assert.deepEqual(parsed.runs.map((r: RecordedRun) => [r.seed, r.repetition]), [[1, 1], [2, 2]]);
  assert.deepEqual(parsed.rows.map((r: { repetition: number }) => r.repetition), [1, 2]);
  assert.deepEqual(groupRepetitions(parsed.runs).map((g) => g.map((r) => r.seed)), [[1], [2]]);
});

const LAB_BENCH = new URL("../../src/cli/lab_bench.ts", import.meta.url).pathname;

async function labBench(args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", ...taskRunFlags("lab-bench"), LAB_BENCH, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder();
  return {
    code: out.code,
    stdout: text.decode(out.stdout),
    stderr: text.decode(out.stderr).trim(),
  };
}

for (
  const [value, message] of [
    ["0", "must be at least 1"],
    ["11", "must be at most 10"],
    ["1.5", "must be a whole number from 1 to 10"],
    ["three", "must be a whole number from 1 to 10"],
  ]
) {
  Deno.test(`lab-bench --repeat ${value}: exit 2 naming the option and the value`, async () => {
    // Refused while parsing the options: no lab run starts.
    const { code, stderr } = await labBench(["--repeat", value]);
    assert.equal(code, 2);
    assert.equal(stderr.split("\n")[0], `lab-bench: --repeat "${value}": ${message}`);
  });
}

/** Runs of the mixed scenario (150 s), alike but for one elastic limit cut under MBCAS, 2 s after the first load step. */
function benchRuns(repetition?: number): RecordedRun[] {
  return (["static", "none", "mbcas"] as const).map((policy) => {
    const run = mixedRun(
      policy === "mbcas" ? [{ t: 40, pod: "batch-a", fromMillicores: 500, toMillicores: 300 }] : [],
    );
    return { ...run, policy, ...(repetition === undefined ? {} : { repetition }) };
  });
}

Deno.test("lab-bench --from: an old results.json (one repetition, rows without new fields)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lab-bench-from-" });
  try {
    const from = `${dir}/old.json`;
    // Rows as written before work done and the per-minute resizes: recomputed, not read.
    await Deno.writeTextFile(
      from,
      JSON.stringify({ rows: [{ policy: "mbcas" }], runs: benchRuns() }),
    );
    const { code, stdout } = await labBench(["--from", from, "--out", `${dir}/out`]);
    assert.equal(code, 0, stdout);
    assert.match(stdout, /^lab bench: scenario mixed, 150 s per policy/m);
    assert.match(stdout, /done web\s+done bursty/);
    assert.match(
      stdout,
      /^MET {3}latency load step → elastic limits down in the kernel: p50 2\.0 s \(1\/4 answered/m,
    );
    assert.ok(!stdout.includes("repetitions"), "one repetition: no spread");
    const files = [...Deno.readDirSync(`${dir}/out`)].map((e) => e.name).sort();
    assert.deepEqual(files, [
      "comparison.svg",
      "report-mbcas.html",
      "report-none.html",
      "report-static.html",
      "results.json",
      "summary.md",
    ]);
    const results = JSON.parse(await Deno.readTextFile(`${dir}/out/results.json`));
    assert.equal(results.rows[2].elasticStepP50S, 2, "recomputed: 38 s to 40 s");
    assert.deepEqual(results.runs.map((r: RecordedRun) => r.repetition), [1, 1, 1]);
    assert.match(await Deno.readTextFile(`${dir}/out/summary.md`), /; one run\./);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("lab-bench --from: a results.json of two repetitions", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lab-bench-from-" });
  try {
    const from = `${dir}/new.json`;
    await Deno.writeTextFile(from, JSON.stringify({ runs: [...benchRuns(1), ...benchRuns(2)] }));
    const { code, stdout } = await labBench(["--from", from, "--out", `${dir}/out`]);
    assert.equal(code, 0, stdout);
    assert.match(stdout, /^lab bench: repetition 1 of 2: scenario mixed/m);
    assert.match(stdout, /^lab bench: repetition 2 of 2: scenario mixed/m);
    assert.match(stdout, /^MBCAS's targets over 2 repetitions: median \(min–max\)$/m);
    assert.match(stdout, /^batch CPU-s vs static: 1\.00× \(target ≥ 1\.2×\): met in 0 of 2$/m);
    const files = [...Deno.readDirSync(`${dir}/out`)].map((e) => e.name).sort();
    assert.ok(files.includes("report-mbcas-2.html") && files.includes("report-static-1.html"));
    assert.ok(!files.includes("report-mbcas.html"));
    const md = await Deno.readTextFile(`${dir}/out/summary.md`);
    assert.match(md, /median \(min–max\) over 2 repetitions/);
    assert.match(md, /\| batch CPU-s vs static ≥ 1\.2× \| 1\.00× \| 0 of 2 \|/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("agent writes: the agent's write counters read from /metrics, ok results only, by operation", () => {
  const text = [
    "# HELP mbcas_agent_api_writes_total PodAllocation writes by operation and result",
    "# TYPE mbcas_agent_api_writes_total counter",
    'mbcas_agent_api_writes_total{operation="create",result="ok"} 7',
    'mbcas_agent_api_writes_total{operation="create",result="error"} 3',
    'mbcas_agent_api_writes_total{result="ok",operation="update"} 42',
    'mbcas_agent_api_writes_total{operation="heartbeat",result="ok"} 12',
    'mbcas_agent_cpu_weight_writes_total{action="lower",result="ok"} 99',
    "",
  ].join("\n");
  assert.deepEqual(agentWritesFromMetrics(text), { creates: 7, updates: 42, heartbeats: 12 });
  // Before the agent has written anything, no series at all.
  assert.deepEqual(agentWritesFromMetrics(""), { creates: 0, updates: 0, heartbeats: 0 });
});

Deno.test("agent writes: the bench row gives the agent's PodAllocation writes per minute, null without them", () => {
  const scenario = buildScenario("mixed", 150, 2000);
  const run = {
    ...mixedRun([]),
    agentWrites: { seconds: 120, creates: 5, updates: 35, heartbeats: 12 },
  };
  assert.equal(benchRow(run, scenario).allocationWritesPerMinute, 20, "(5 + 35) / 120 s × 60");
  assert.equal(benchRow(mixedRun([]), scenario).allocationWritesPerMinute, null);
  const instant = { ...run, agentWrites: { ...run.agentWrites, seconds: 0 } };
  assert.equal(benchRow(instant, scenario).allocationWritesPerMinute, null);
});

Deno.test("CPU account: the bench row carries the run's, the summary gives medians per policy and the rest", () => {
  const scenario = buildScenario("mixed", 150, 2000);
  const account = (mbcas: number, harness: number) => ({
    seconds: 149,
    machineCpuSeconds: 280,
    scenarioPodsCpuSeconds: 250,
    mbcasPodsCpuSeconds: mbcas,
    harnessCpuSeconds: harness,
  });
  assert.deepEqual(
    benchRow({ ...mixedRun([]), cpuAccount: account(3, 1) }, scenario).cpuAccount,
    account(3, 1),
  );
  assert.equal(benchRow(mixedRun([]), scenario).cpuAccount, null, "a run recorded before it");
  const withAccount = (mbcasPods: number, harness: number) =>
    verdictRows().map((r) => ({
      ...r,
      cpuAccount: {
        ...account(r.policy === "mbcas" ? mbcasPods : 0, harness),
        ...(r.policy === "mbcas"
          ? { restByCommand: { "kube-apiserver": 10 + harness, etcd: 5, kubelet: 0.05 } }
          : {}),
      },
    }));
  const lines = cpuAccountLines([withAccount(3, 1), withAccount(5, 2), withAccount(4, 9)]);
  assert.deepEqual(lines, [
    "static: machine 280.0 CPU-s in 149.0 s; scenario pods 250.0, MBCAS's pods 0.0, this benchmark's process 2.0, the rest 28.0",
    "none: machine 280.0 CPU-s in 149.0 s; scenario pods 250.0, MBCAS's pods 0.0, this benchmark's process 2.0, the rest 28.0",
    "mbcas: machine 280.0 CPU-s in 149.0 s; scenario pods 250.0, MBCAS's pods 4.0, this benchmark's process 2.0, the rest 23.0 (kube-apiserver 12.0, etcd 5.0)", // 26, 23, 17; kubelet under 0.1
  ]);
  assert.equal(cpuAccountLines([verdictRows()]), null, "rows without an account");
  const md = summaryMarkdown([withAccount(3, 1)], scenario, {
    durationSeconds: 150,
    seed: 1,
    nodeMillicores: 2000,
  });
  assert.ok(
    md.includes(
      "- mbcas: machine 280.0 CPU-s in 149.0 s; scenario pods 250.0, MBCAS's pods 3.0, this benchmark's process 1.0, the rest 26.0 (kube-apiserver 11.0, etcd 5.0)",
    ),
    md,
  );
  assert.ok(
    !summaryMarkdown([verdictRows()], scenario, {
      durationSeconds: 150,
      seed: 1,
      nodeMillicores: 2000,
    }).includes("Where the machine's CPU went"),
  );
});
