/**
 * The fault campaign's invariants, order and figures (tests/faults/_checks.ts):
 * pure functions, tested on hand-made snapshots and with properties.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  budgetViolations,
  campaignTable,
  faultOrder,
  type PodBounds,
  type PodSnapshot,
  quantile,
  resizeTimes,
  restoreViolations,
  seededRandom,
  snapshotViolations,
} from "./_checks.ts";
import { parseCampaignArgs, SHORT } from "./campaign.ts";

const BOUNDS: PodBounds = {
  uid: "u1",
  qosClass: "Burstable",
  containers: { app: { declared: 1000, floor: 500, cap: 4000 } },
};

function snapshot(
  overrides: Partial<PodSnapshot> = {},
  limit = 1200,
  reported: number | null = 1200,
): PodSnapshot {
  return {
    atMs: 0,
    key: "shop/web",
    uid: "u1",
    generation: 1,
    qosClass: "Burstable",
    restarts: 0,
    containers: { app: { request: 500, limit, reported } },
    ...overrides,
  };
}

Deno.test("invariants: a pod within its bounds, as created, breaks none", () => {
  assert.deepEqual(snapshotViolations(snapshot(), BOUNDS), []);
  // At the floor and at the cap exactly; a limit the kubelet has not reported yet.
  assert.deepEqual(snapshotViolations(snapshot({}, 500, 500), BOUNDS), []);
  assert.deepEqual(snapshotViolations(snapshot({}, 4000, null), BOUNDS), []);
});

Deno.test("invariants: below the floor, above the cap, no limit, in spec or as reported", () => {
  const invariants = (s: PodSnapshot) => snapshotViolations(s, BOUNDS).map((v) => v.detail);
  assert.deepEqual(invariants(snapshot({}, 499, 1200)), [
    "app: spec limit 499m outside [500m, 4000m]",
  ]);
  assert.deepEqual(invariants(snapshot({}, 1200, 4001)), [
    "app: reported limit 4001m outside [500m, 4000m]",
  ]);
  assert.deepEqual(
    snapshotViolations(
      snapshot({ containers: { app: { request: 500, limit: null, reported: null } } }),
      BOUNDS,
    ).map((v) => v.invariant),
    ["bounds"],
  );
  assert.deepEqual(
    snapshotViolations(snapshot({ containers: {} }), BOUNDS).map((v) => v.detail),
    ["container app gone from the spec"],
  );
});

Deno.test("invariants: a new QoS class, a restart, a recreated pod", () => {
  const found = snapshotViolations(
    snapshot({ qosClass: "Guaranteed", restarts: 1, uid: "u2", atMs: 7 }),
    BOUNDS,
  );
  assert.deepEqual(found.map((v) => v.invariant).sort(), ["qos", "recreated", "restart"]);
  assert.ok(found.every((v) => v.atMs === 7 && v.key === "shop/web"));
});

Deno.test("resizes: generation steps between polls, placed between the two polls", () => {
  const at = (atMs: number, generation: number, uid = "u1") => snapshot({ atMs, generation, uid });
  const seen = (afterMs: number, atMs: number) => ({ afterMs, atMs });
  assert.deepEqual(resizeTimes([]), []);
  assert.deepEqual(
    resizeTimes([at(0, 1), at(100, 1), at(200, 2), at(300, 4)]),
    [seen(100, 200), seen(200, 300), seen(200, 300)],
  );
  // A recreated pod starts over: its generation is no resize of the old one.
  assert.deepEqual(resizeTimes([at(0, 5), at(100, 1, "u2"), at(200, 2, "u2")]), [seen(100, 200)]);
  // The state a poll shows is from after it was sent: the interval starts there.
  assert.deepEqual(
    resizeTimes([snapshot({ sentMs: 40, atMs: 90, generation: 1 }), at(300, 2)]),
    [seen(40, 300)],
  );
});

Deno.test("resizes: a step onto the declared limits is a restore, outside the budget", () => {
  const at = (atMs: number, generation: number, limit: number) =>
    snapshot({ atMs, generation, containers: { app: { request: 500, limit, reported: limit } } });
  const declared = { app: 1000 };
  const seen = [at(0, 1, 1000), at(100, 2, 700), at(200, 3, 1000), at(300, 5, 1000)];
  // 700 counts; the step back to 1000 is a restore; of the double step at 300 one counts
  // (the last landed on the declared limit).
  assert.deepEqual(resizeTimes(seen, declared).map((r) => r.atMs), [100, 300]);
  // Without the declared limits every step counts.
  assert.deepEqual(resizeTimes(seen).map((r) => r.atMs), [100, 200, 300, 300]);
});

/** Resizes seen exactly when they happened. */
const exact = (times: number[]) => times.map((t) => ({ afterMs: t, atMs: t }));

Deno.test("budget: more resizes than the budget within a minute is one violation per overflow", () => {
  assert.deepEqual(budgetViolations("k", exact([0, 10_000, 20_000, 30_000]), 4), []);
  assert.deepEqual(budgetViolations("k", exact([0, 10_000, 20_000, 30_000, 60_000]), 4), []);
  const over = budgetViolations("k", exact([0, 10_000, 20_000, 30_000, 59_999]), 4);
  assert.equal(over.length, 1);
  assert.equal(over[0].detail, "5 resizes within 60 s (budget 4)");
  assert.equal(over[0].atMs, 59_999);
  // Unsorted input is the same.
  assert.deepEqual(budgetViolations("k", exact([59_999, 0, 30_000, 20_000, 10_000]), 4), over);
});

Deno.test("budget: a resize seen late is no violation when it may have been a minute after the first", () => {
  // The controller resized at 0 and at 60,000 (its budget: 4 a minute); a stalled
  // poll saw the first at 900, the fifth at 60,050.
  const times = [
    { afterMs: -100, atMs: 900 },
    ...exact([10_000, 20_000, 30_000]),
    { afterMs: 59_950, atMs: 60_050 },
  ];
  assert.deepEqual(budgetViolations("k", times, 4), []);
  // Seen so that it cannot have been a minute apart: a violation.
  const certain = [{ afterMs: 200, atMs: 900 }, ...times.slice(1)];
  assert.equal(budgetViolations("k", certain, 4).length, 1);
});

Deno.test("budget: property: a violation exactly when some 60 s window holds more than the budget", () => {
  fc.assert(
    fc.property(
      fc.array(fc.integer({ min: 0, max: 300_000 }), { maxLength: 30 }),
      fc.integer({ min: 1, max: 6 }),
      (times, budget) => {
        const overflow = times.some((t) =>
          times.filter((u) => u >= t && u < t + 60_000).length > budget
        );
        return (budgetViolations("k", exact(times), budget).length > 0) === overflow;
      },
    ),
  );
});

Deno.test("budget: property: a violation only when every placement in the polls' intervals overflows", () => {
  fc.assert(
    fc.property(
      // Polls (gaps between them) and how many resizes each one newly saw.
      fc.array(fc.record({ gap: fc.integer({ min: 1, max: 30_000 }), resizes: fc.nat(3) }), {
        maxLength: 20,
      }),
      fc.integer({ min: 1, max: 6 }),
      fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { minLength: 60, maxLength: 60 }),
      (polls, budget, where) => {
        const snapshots = [snapshot({ atMs: 0, generation: 1 })];
        let t = 0;
        for (const p of polls) {
          t += p.gap;
          snapshots.push(
            snapshot({ atMs: t, generation: snapshots.at(-1)!.generation + p.resizes }),
          );
        }
        const sightings = resizeTimes(snapshots);
        if (budgetViolations("k", sightings, budget).length === 0) return true;
        // Any placement of the resizes in their intervals overflows some window.
        const placed = sightings.map((s, i) => s.afterMs + (s.atMs - s.afterMs) * where[i % 60]);
        return placed.some((p) => placed.filter((u) => u >= p && u < p + 60_000).length > budget);
      },
    ),
  );
});

Deno.test("restore: back at the declared limit in spec and as reported, else a violation", () => {
  assert.deepEqual(restoreViolations(snapshot({}, 1000, 1000), BOUNDS), []);
  assert.deepEqual(
    restoreViolations(snapshot({}, 1000, 1200), BOUNDS).map((v) => v.detail),
    ["app: spec 1000m, reported 1200m after undeploy; declared 1000m"],
  );
  assert.equal(restoreViolations(snapshot({}, 1500, 1500), BOUNDS).length, 1);
});

Deno.test("order: every fault once a round, seeded, the last ones last", () => {
  const faults = ["a", "b", "c", "d", "end"] as const;
  const order = faultOrder(faults, 3, seededRandom(7), ["end"]);
  assert.equal(order.length, 13);
  assert.equal(order.at(-1), "end");
  for (let round = 0; round < 3; round++) {
    assert.deepEqual([...order.slice(round * 4, round * 4 + 4)].sort(), ["a", "b", "c", "d"]);
  }
  assert.deepEqual(
    faultOrder(faults, 3, seededRandom(7), ["end"]),
    order,
    "the same seed, the same order",
  );
  const others = new Set(
    [1, 2, 3, 4, 5, 6].map((seed) => faultOrder(faults, 1, seededRandom(seed), ["end"]).join()),
  );
  assert.ok(others.size > 1, "seeds change the order");
});

Deno.test("random: seeded, in [0, 1)", () => {
  const a = seededRandom(42);
  const b = seededRandom(42);
  for (let i = 0; i < 1000; i++) {
    const x = a();
    assert.equal(x, b());
    assert.ok(x >= 0 && x < 1);
  }
});

Deno.test("quantile: nearest rank", () => {
  assert.equal(quantile([], 0.5), null);
  assert.equal(quantile([3], 0.99), 3);
  assert.equal(quantile([4, 1, 3, 2], 0.5), 2);
  assert.equal(quantile([4, 1, 3, 2], 0.99), 4);
  assert.equal(quantile([4, 1, 3, 2], 0), 1);
});

Deno.test("table: the control first, one row per fault and a total of the faults; unrecovered shown as such", () => {
  const table = campaignTable([
    { fault: "etcd-restart", detail: "", recoveryMs: 2000, violations: 0 },
    { fault: "etcd-restart", detail: "", recoveryMs: 4000, violations: 0 },
    { fault: "apiserver-stalled", detail: "", recoveryMs: null, violations: 1 },
    { fault: "control", detail: "", recoveryMs: 500, violations: 0, control: true },
  ], 1);
  const lines = table.split("\n");
  assert.equal(lines.length, 6);
  assert.match(
    lines[0],
    /^\| fault +\| injected \| violations \| recovered \| recovery p50 \| recovery p99 \|$/,
  );
  assert.match(lines[2], /^\| control +\| +0 \| +0 \| +1\/1 \| +0\.5 s \| +0\.5 s \|$/);
  assert.match(lines[3], /^\| etcd-restart +\| +2 \| +0 \| +2\/2 \| +2\.0 s \| +4\.0 s \|$/);
  assert.match(lines[4], /^\| apiserver-stalled +\| +1 \| +1 \| +0\/1 \| +never \| +never \|$/);
  // The control is outside the totals: 3 faults, their p50 and p99.
  assert.match(lines[5], /^\| all faults +\| +3 \| +1 \| +2\/3 \| +2\.0 s \| +4\.0 s \|$/);
});

Deno.test("faults CLI: options, --short, and bad values named", () => {
  assert.deepEqual(parseCampaignArgs([]), {
    seed: 1,
    rounds: 3,
    stallSeconds: 30,
    outageSeconds: 5,
    recoveryTimeoutSeconds: 60,
  });
  assert.deepEqual(parseCampaignArgs(["--stall-seconds", "9", "--short", "--seed", "4"]), {
    ...SHORT,
    seed: 4,
    stallSeconds: 9,
  });
  assert.throws(
    () => parseCampaignArgs(["--rounds", "0"]),
    /--rounds must be an integer ≥ 1, got "0"/,
  );
  assert.throws(() => parseCampaignArgs(["--seed"]), /--seed must be an integer ≥ 0, got null/);
  assert.throws(() => parseCampaignArgs(["--fast"]), /unknown option "--fast"/);
});
