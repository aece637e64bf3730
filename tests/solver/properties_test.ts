import assert from "node:assert/strict";
import fc from "fast-check";
import { clearMarket } from "../../src/solver/mod.ts";
import type { Bid, Clearing, Market } from "../../src/solver/mod.ts";
import { oracleAllocation } from "./_oracle.ts";

const RUNS = 400;

/** Weights spread over 12 orders of magnitude, log-uniformly. */
const weightArb = fc.double({ min: -6, max: 6, noNaN: true }).map((e) => 10 ** e);

const bidArb = fc
  .record({
    weight: fc.oneof(weightArb, fc.integer({ min: 1, max: 4000 })),
    floor: fc.integer({ min: 0, max: 4000 }),
    demand: fc.integer({ min: 0, max: 8000 }),
    extra: fc.integer({ min: 0, max: 8000 }),
  })
  .map(({ weight, floor, demand, extra }) => ({ weight, floor, demand, cap: floor + extra }));

const marketArb: fc.Arbitrary<Market> = fc
  .record({
    bids: fc.array(bidArb, { maxLength: 25 }),
    capacity: fc.integer({ min: 0, max: 60_000 }),
    surplus: fc.constantFrom<"distribute" | "retain">("distribute", "retain"),
  })
  .map(({ bids, capacity, surplus }) => ({
    capacity,
    surplus,
    bids: bids.map((b, i) => ({ id: `ns/pod-${(i * 7919) % 1000}-${i}/c`, ...b })),
  }));

function target(b: Bid): number {
  return Math.min(b.cap, Math.max(b.floor, b.demand));
}

function sum(clearing: Clearing): number {
  return Object.values(clearing.allocations).reduce((s, x) => s + x, 0);
}

Deno.test("property: conservation (Σx ≤ C unless floors alone exceed it, then Σx = Σf)", () => {
  fc.assert(
    fc.property(marketArb, (market) => {
      const clearing = clearMarket(market);
      const floors = market.bids.reduce((s, b) => s + b.floor, 0);
      if (clearing.oversubscribed) assert.equal(sum(clearing), floors);
      else assert.ok(sum(clearing) <= market.capacity);
    }),
    { numRuns: RUNS },
  );
});

Deno.test("property: bounds (f ≤ x ≤ M, and x ≤ t when contended), integer allocations", () => {
  fc.assert(
    fc.property(marketArb, (market) => {
      const clearing = clearMarket(market);
      for (const b of market.bids) {
        const x = clearing.allocations[b.id];
        assert.ok(Number.isInteger(x));
        assert.ok(x >= b.floor && x <= b.cap, `${b.id}: ${x} outside [${b.floor}, ${b.cap}]`);
        if (clearing.contended) assert.ok(x <= target(b), `${b.id}: ${x} above target`);
        if (market.surplus === "retain") assert.ok(x <= target(b));
      }
    }),
    { numRuns: RUNS },
  );
});

Deno.test("property: work conservation (capacity left only when everyone is at cap, or at target in retain mode)", () => {
  fc.assert(
    fc.property(marketArb, (market) => {
      const clearing = clearMarket(market);
      if (sum(clearing) >= market.capacity) return;
      for (const b of market.bids) {
        const full = market.surplus === "retain" ? target(b) : b.cap;
        assert.equal(clearing.allocations[b.id], full, `${b.id} could take more`);
      }
    }),
    { numRuns: RUNS },
  );
});

Deno.test("property: weighted envy-freeness (up to rounding)", () => {
  fc.assert(
    fc.property(marketArb, (market) => {
      const clearing = clearMarket(market);
      if (!clearing.contended && market.surplus === "retain") return;
      const x = clearing.allocations;
      for (const i of market.bids) {
        for (const j of market.bids) {
          // Contended: levels run from floor to target. Uncontended: from target to cap.
          const iFull = clearing.contended ? x[i.id] >= target(i) : x[i.id] >= i.cap;
          const jLow = clearing.contended ? x[j.id] <= j.floor : x[j.id] <= target(j);
          if (iFull || jLow || clearing.oversubscribed) continue;
          const slack = 1 / i.weight + 1 / j.weight;
          assert.ok(
            x[i.id] / i.weight >= x[j.id] / j.weight - slack * (1 + 1e-9),
            `${i.id} (${x[i.id]}/${i.weight}) envies ${j.id} (${x[j.id]}/${j.weight})`,
          );
        }
      }
    }),
    { numRuns: RUNS / 2 },
  );
});

Deno.test("property: resource monotonicity (more capacity lowers nobody by more than 1 millicore)", () => {
  fc.assert(
    fc.property(marketArb, fc.integer({ min: 1, max: 20_000 }), (market, more) => {
      const before = clearMarket(market).allocations;
      const after = clearMarket({ ...market, capacity: market.capacity + more }).allocations;
      for (const b of market.bids) {
        assert.ok(after[b.id] >= before[b.id] - 1, `${b.id}: ${before[b.id]} -> ${after[b.id]}`);
      }
    }),
    { numRuns: RUNS },
  );
});

Deno.test("property: scale invariance in weights (within 1 millicore)", () => {
  fc.assert(
    fc.property(marketArb, fc.double({ min: -2, max: 2, noNaN: true }), (market, e) => {
      const k = 10 ** e;
      const scaled = { ...market, bids: market.bids.map((b) => ({ ...b, weight: b.weight * k })) };
      const a = clearMarket(market);
      const b = clearMarket(scaled);
      for (const bid of market.bids) {
        assert.ok(Math.abs(a.allocations[bid.id] - b.allocations[bid.id]) <= 1);
      }
      assert.equal(a.contended, b.contended);
      if (a.price !== null && b.price !== null && a.price > 0) {
        assert.ok(Math.abs(b.price / a.price - k) <= 1e-6 * k);
      }
    }),
    { numRuns: RUNS },
  );
});

Deno.test("property: permutation invariance (identical result for any bid order)", () => {
  fc.assert(
    fc.property(
      marketArb.chain((m) =>
        fc.tuple(fc.constant(m), fc.shuffledSubarray(m.bids, { minLength: m.bids.length }))
      ),
      ([market, shuffled]) => {
        const a = clearMarket(market);
        const b = clearMarket({ ...market, bids: shuffled });
        assert.deepEqual({ ...b, allocations: sorted(b.allocations) }, {
          ...a,
          allocations: sorted(a.allocations),
        });
      },
    ),
    { numRuns: RUNS },
  );
});

Deno.test("property: equal bids (same weight, floor, demand, cap) get within 1 millicore of each other", () => {
  fc.assert(
    fc.property(
      bidArb,
      fc.integer({ min: 2, max: 12 }),
      fc.integer({ min: 0, max: 60_000 }),
      (b, copies, capacity) => {
        const bids = Array.from({ length: copies }, (_, i) => ({ id: `p${i}`, ...b }));
        const x = Object.values(clearMarket({ capacity, bids }).allocations);
        assert.ok(Math.max(...x) - Math.min(...x) <= 1);
      },
    ),
    { numRuns: RUNS },
  );
});

Deno.test("property: agrees within 1 millicore with an independent bisection oracle", () => {
  fc.assert(
    fc.property(marketArb, (market) => {
      const clearing = clearMarket(market);
      const oracle = oracleAllocation(market);
      for (const b of market.bids) {
        const diff = Math.abs(clearing.allocations[b.id] - oracle.get(b.id)!);
        assert.ok(
          diff <= 1 + 1e-6,
          `${b.id}: ${clearing.allocations[b.id]} vs oracle ${oracle.get(b.id)}`,
        );
      }
    }),
    { numRuns: RUNS },
  );
});

Deno.test("property: clearMarket never mutates its input", () => {
  fc.assert(
    fc.property(marketArb, (market) => {
      const before = structuredClone(market);
      clearMarket(market);
      assert.deepEqual(market, before);
    }),
    { numRuns: RUNS / 4 },
  );
});

function sorted(record: Record<string, number>): [string, number][] {
  return Object.entries(record).sort(([a], [b]) => (a < b ? -1 : 1));
}
