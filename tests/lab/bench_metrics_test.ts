/**
 * The lab bench's pure parts: the scenarios, the VPA-style recommender
 * model, and the figures computed from a run.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { benchRow, jainIndex, maxResizesPerMinute, spikeResponses } from "../../src/lab/metrics.ts";
import { buildScenario, SCENARIOS } from "../../src/lab/scenario.ts";
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
