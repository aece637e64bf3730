import assert from "node:assert/strict";
import fc from "fast-check";
import {
  DEFAULT_ESTIMATOR,
  type DemandState,
  measuredNeed,
  needsPressureOnlyWhenThrottled,
  type Observation,
  OUTGREW_FACTOR,
  OUTGREW_MIN_MILLICORES,
  outgrewClearing,
  updateDemand,
} from "../../src/agent/estimator.ts";

function obs(
  atMs: number,
  usage: number,
  throttledRatio = 0,
  throttled = 0,
  psi: number | null = null,
): Observation {
  return {
    atMs,
    usageMillicores: usage,
    throttledRatio,
    throttledMillicores: throttled,
    psiSomeStallRatio: psi,
  };
}

/** Runs a stream of observations (one a second) and returns the estimate after each. */
function run(stream: Observation[], start: DemandState | null = null): number[] {
  let state = start;
  return stream.map((o) => (state = updateDemand(state, o)).demandMillicores);
}

Deno.test("estimator: a throttled container's need counts the time the quota held it back", () => {
  // A single busy thread under a 200m quota: 200m used, 800m held back.
  assert.equal(measuredNeed(obs(0, 200, 1, 800)), 1000);
  // PSI alone (no throttling: node contention) is ignored.
  assert.equal(measuredNeed(obs(0, 300, 0, 0, 0.5)), 300);
  // With throttling, a stall ratio s says the container ran 1 − s of the time.
  assert.equal(measuredNeed(obs(0, 200, 0.9, 100, 0.75)), 800);
  // Stall ratios near 1 are capped (at most 10× usage).
  assert.ok(Math.abs(measuredNeed(obs(0, 100, 1, 0, 1)) - 1000) < 1e-9);
});

Deno.test("estimator: step up is adopted within one sample", () => {
  const stream = [
    ...Array.from({ length: 30 }, (_, i) => obs(i * 1000, 100)),
    obs(30_000, 200, 1, 800),
  ];
  const estimates = run(stream);
  assert.ok(Math.abs(estimates[29] - 115) < 1e-9, "steady 100m + 15%");
  assert.ok(
    Math.abs(estimates[30] - 1150) < 1e-9,
    "one sample after the step: the full need + 15%",
  );
});

Deno.test("estimator: step down decays with the configured half-life", () => {
  const start: DemandState = { demandMillicores: 1150, atMs: 0 };
  const estimates = run(Array.from({ length: 120 }, (_, i) => obs((i + 1) * 1000, 100)), start);
  const floor = 115;
  assert.ok(
    Math.abs(estimates[59] - (floor + (1150 - floor) / 2)) < 1e-6,
    "halfway after one half-life (60 s)",
  );
  assert.ok(Math.abs(estimates[119] - (floor + (1150 - floor) / 4)) < 1e-6, "a quarter after two");
  for (let i = 1; i < estimates.length; i++) {
    assert.ok(estimates[i] <= estimates[i - 1], "never rises without a reason");
  }
});

Deno.test("estimator: a noisy steady state stays within a narrow band at the top of the noise", () => {
  let seed = 7;
  const noise = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648 - 0.5) * 100; // ±50m
  const estimates = run(Array.from({ length: 600 }, (_, i) => obs(i * 1000, 500 + noise())));
  const settled = estimates.slice(120);
  const [lo, hi] = [Math.min(...settled), Math.max(...settled)];
  assert.ok(hi <= 550 * 1.15 + 1e-9, `never above the noise's peak + headroom (${hi})`);
  assert.ok(lo >= 500 * 1.15, `stays above the mean + headroom (${lo})`);
  assert.ok(
    (hi - lo) / hi < 0.06,
    `varies less than 6% (${lo}–${hi}): below the 5%/20m publishing hysteresis most of the time`,
  );
});

Deno.test("estimator: bursty on/off load keeps most of the burst's CPU through the off phases", () => {
  // 10 s at 900m (throttled at 600m), 20 s idle, repeated.
  const stream: Observation[] = [];
  for (let t = 0; t < 300; t++) {
    const on = t % 30 < 10;
    stream.push(on ? obs(t * 1000, 600, 0.8, 300) : obs(t * 1000, 5));
  }
  const estimates = run(stream);
  const burst = 900 * 1.15;
  for (let t = 30; t < 300; t++) {
    assert.ok(
      estimates[t] >= burst * 0.7,
      `t=${t}: ${estimates[t]} dropped below 70% of the burst need between bursts`,
    );
  }
});

Deno.test("estimator: an idle container decays towards zero, never negative", () => {
  const estimates = run(Array.from({ length: 600 }, (_, i) => obs((i + 1) * 1000, 0)), {
    demandMillicores: 800,
    atMs: 0,
  });
  assert.ok(estimates.at(-1)! < 800 / 2 ** 9.9);
  assert.ok(estimates.every((e) => e >= 0));
});

Deno.test("estimator property: fast attack, bounded release, headroom respected", () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.record({
          usage: fc.double({ min: 0, max: 8000, noNaN: true }),
          ratio: fc.double({ min: 0, max: 1, noNaN: true }),
          throttled: fc.double({ min: 0, max: 4000, noNaN: true }),
          psi: fc.option(fc.double({ min: 0, max: 1, noNaN: true }), { nil: null }),
          dt: fc.integer({ min: 1, max: 60_000 }),
        }),
        { minLength: 1, maxLength: 50 },
      ),
      (steps) => {
        let state: DemandState | null = null;
        let t = 0;
        for (const s of steps) {
          t += s.dt;
          const o = obs(t, s.usage, s.ratio, s.throttled, s.psi);
          const need = measuredNeed(o) * (1 + DEFAULT_ESTIMATOR.headroom);
          const next: DemandState = updateDemand(state, o);
          assert.ok(next.demandMillicores >= need - 1e-6, "never below this sample's need");
          if (state !== null && need < state.demandMillicores) {
            assert.ok(
              next.demandMillicores <= state.demandMillicores + 1e-6,
              "a lower need never raises the estimate",
            );
            // Compared as values, not as the kept fraction: a fraction of a gap
            // near rounding noise is itself noise.
            const expected = need +
              (state.demandMillicores - need) * 2 ** (-s.dt / DEFAULT_ESTIMATOR.releaseHalfLifeMs);
            assert.ok(
              Math.abs(next.demandMillicores - expected) <= 1e-9 * state.demandMillicores + 1e-9,
              "exponential release",
            );
          }
          state = next;
        }
      },
    ),
    { endOnFailure: true },
  );
});

Deno.test("estimator on a recorded real-kernel stream: sees the whole core a 200m quota hides, then decays slowly", () => {
  const recorded = JSON.parse(
    Deno.readTextFileSync(new URL("./fixtures/recorded_burner_v1.json", import.meta.url)),
  );
  const stream: Observation[] = recorded.samples.map((s: Record<string, number | null>) =>
    obs(
      (s.second as number) * 1000,
      s.usageMillicores as number,
      s.throttledRatio as number,
      s.throttledMillicores as number,
      s.psiSomeStallRatio,
    )
  );
  const estimates = run(stream);
  const phase = (name: string) =>
    recorded.samples.map((s: { phase: string }, i: number) => [s.phase, estimates[i]]).filter((
      [p]: [string],
    ) => p === name).map(([, e]: [string, number]) => e);
  // Under the quota the container uses ~200m, but its need is the whole core it gets once unlimited.
  const unlimitedUsage = recorded.samples.filter((s: { phase: string }) => s.phase === "unlimited")
    .slice(1).map((s: { usageMillicores: number }) => s.usageMillicores);
  const trueNeed = unlimitedUsage.reduce((a: number, b: number) => a + b, 0) /
    unlimitedUsage.length;
  for (const e of phase("quota-200m")) {
    assert.ok(
      Math.abs(e / (trueNeed * 1.15) - 1) <= 0.1,
      `throttled phase estimate ${e} vs ${trueNeed * 1.15}`,
    );
  }
  for (const e of phase("unlimited")) {
    assert.ok(Math.abs(e / (trueNeed * 1.15) - 1) <= 0.1, `unlimited phase estimate ${e}`);
  }
  const stopped = phase("stopped");
  assert.ok(
    stopped.at(-1)! >= trueNeed * 1.15 * 0.85,
    "10 s after the load stops, still most of it (60 s half-life)",
  );
  assert.ok(stopped.at(-1)! < stopped[0], "but decaying");
});

Deno.test("estimator property: without throttling PSI changes nothing, so the sampler may skip it", () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.record({
          usage: fc.double({ min: 0, max: 8000, noNaN: true }),
          throttledRatio: fc.double({ min: 0, max: 1, noNaN: true }),
          psi: fc.double({ min: 0, max: 1, noNaN: true }),
          dt: fc.integer({ min: 1, max: 60_000 }),
        }),
        { minLength: 1, maxLength: 30 },
      ),
      fc.double({ min: 0, max: 1, noNaN: true }),
      (steps, threshold) => {
        const config = { ...DEFAULT_ESTIMATOR, psiThrottleThreshold: threshold };
        if (!needsPressureOnlyWhenThrottled(config)) return;
        let withPsi: DemandState | null = null;
        let without: DemandState | null = null;
        let t = 0;
        for (const s of steps) {
          t += s.dt;
          // A sample whose throttled-periods counter did not advance: ratio 0.
          const ratio = s.throttledRatio < 0.5 ? 0 : s.throttledRatio;
          const throttled = ratio === 0 ? 0 : s.usage * ratio;
          withPsi = updateDemand(withPsi, obs(t, s.usage, ratio, throttled, s.psi), config);
          // The sampler reads PSI only after throttling.
          without = updateDemand(
            without,
            obs(t, s.usage, ratio, throttled, ratio > 0 ? s.psi : null),
            config,
          );
          assert.deepEqual(without, withPsi);
        }
      },
    ),
  );
  assert.equal(needsPressureOnlyWhenThrottled(DEFAULT_ESTIMATOR), true);
  assert.equal(
    needsPressureOnlyWhenThrottled({ ...DEFAULT_ESTIMATOR, psiThrottleThreshold: 0 }),
    false,
    "a threshold of 0 trusts PSI without throttling: it must be read always",
  );
});

Deno.test("outgrew clearing: a quarter more than the last clearing used, and at least 50m", () => {
  // The lab's batch job starting mid-sample: its step into heavy throttling was cleared at 293m
  // from a partial interval; one sample later fast attack shows its whole need.
  assert.equal(outgrewClearing(293, 904), true);
  assert.equal(outgrewClearing(800, 999), false, "less than a quarter more");
  assert.equal(outgrewClearing(800, 1000), true, "exactly a quarter more");
  assert.equal(outgrewClearing(100, 140), false, "a quarter more but under 50m");
  assert.equal(outgrewClearing(100, 150), true);
  assert.equal(outgrewClearing(900, 600), false, "a lower need never clears early");
  assert.equal(outgrewClearing(null, 5000), false, "no clearing used it yet");
  assert.equal(outgrewClearing(500, null), false);
});

Deno.test("property: a growing need clears again at most log₁.₂₅(final / first) + 1 times", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 10_000 }),
      fc.array(fc.integer({ min: 0, max: 2_000 }), { minLength: 1, maxLength: 200 }),
      (first, rises) => {
        // Each sample the demand rises by some amount; a clearing records the demand it used.
        let demand = first;
        let cleared = first;
        let clearings = 0;
        for (const rise of rises) {
          demand += rise;
          if (outgrewClearing(cleared, demand)) {
            assert.ok(demand >= cleared * OUTGREW_FACTOR);
            assert.ok(demand - cleared >= OUTGREW_MIN_MILLICORES);
            cleared = demand;
            clearings++;
          }
        }
        const bound = Math.floor(Math.log(demand / first) / Math.log(OUTGREW_FACTOR)) + 1;
        assert.ok(clearings <= bound, `${clearings} clearings from ${first}m to ${demand}m`);
      },
    ),
  );
});
