/**
 * The tiered settlement (`settleMarket`): examples and properties of its two
 * outputs, guarantees and limits. Pure; no cluster.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { clearMarket, settleMarket } from "../../src/solver/mod.ts";
import type { Bid, Market, Settlement } from "../../src/solver/mod.ts";

const RUNS = 400;

const bidArb = fc
  .record({
    weight: fc.oneof(
      fc.double({ min: -3, max: 3, noNaN: true }).map((e) => 10 ** e),
      fc.integer({ min: 1, max: 4000 }),
    ),
    floor: fc.integer({ min: 0, max: 2000 }),
    demand: fc.integer({ min: 0, max: 6000 }),
    extra: fc.integer({ min: 0, max: 6000 }),
    tier: fc.constantFrom<"protected" | "elastic" | undefined>("protected", "elastic", undefined),
    usage: fc.option(fc.integer({ min: 0, max: 6000 }), { nil: undefined }),
  })
  .map(({ weight, floor, demand, extra, tier, usage }) => ({
    weight,
    floor,
    demand,
    cap: floor + extra,
    ...(tier === undefined ? {} : { tier }),
    ...(usage === undefined ? {} : { usage }),
  }));

const marketArb: fc.Arbitrary<Market> = fc
  .record({
    bids: fc.array(bidArb, { maxLength: 20 }),
    capacity: fc.integer({ min: 0, max: 40_000 }),
    headroom: fc.option(fc.integer({ min: 0, max: 4000 }), { nil: undefined }),
    elasticYields: fc.option(fc.boolean(), { nil: undefined }),
    beyondCapacity: fc.option(fc.integer({ min: 0, max: 4000 }), { nil: undefined }),
    protectedLimit: fc.constantFrom<"target" | "cap" | undefined>("target", "cap", undefined),
  })
  .map(({ bids, capacity, headroom, elasticYields, beyondCapacity, protectedLimit }) => ({
    capacity,
    ...(headroom === undefined ? {} : { headroom }),
    ...(elasticYields === undefined ? {} : { elasticYields }),
    ...(beyondCapacity === undefined ? {} : { yieldingCapacity: capacity + beyondCapacity }),
    ...(protectedLimit === undefined ? {} : { protectedLimit }),
    bids: bids.map((b, i) => ({ id: `ns/pod-${(i * 7919) % 1000}-${i}/c`, ...b })),
  }));

const target = (b: Bid) => Math.min(b.cap, Math.max(b.floor, b.demand));
const elastic = (b: Bid) => b.tier === "elastic";
const total = (record: Record<string, number>, bids: Bid[]) =>
  bids.reduce((s, b) => s + record[b.id], 0);

Deno.test("settle: the lab's node — protected pods get their targets, elastic pods run on what they leave idle", () => {
  const market: Market = {
    capacity: 2000,
    headroom: 100,
    bids: [
      { id: "web", weight: 1200, floor: 300, demand: 650, cap: 2000, usage: 560 },
      { id: "bursty", weight: 400, floor: 200, demand: 1150, cap: 2000, usage: 0 },
      { id: "a", weight: 100, floor: 100, demand: 1150, cap: 2000, tier: "elastic" },
      { id: "b", weight: 100, floor: 100, demand: 1150, cap: 2000, tier: "elastic" },
    ],
  };
  const s = settleMarket(market);
  assert.deepEqual(s.guarantees, { web: 650, bursty: 1150, a: 100, b: 100 });
  // Bursty is idle: the elastic pods may use 2000 − 100 − 560 = 1340 between them.
  assert.equal(s.elasticBudget, 1340);
  assert.deepEqual(s.limits, { web: 650, bursty: 1150, a: 670, b: 670 });
  assert.ok(
    Object.values(s.limits).reduce((x, y) => x + y, 0) > market.capacity,
    "limits add up to more than the node",
  );
  // Bursty wakes up: its usage takes the elastic budget back.
  const busy = settleMarket({
    ...market,
    bids: market.bids.map((b) => (b.id === "bursty" ? { ...b, usage: 1000 } : b)),
  });
  assert.equal(busy.elasticBudget, 340);
  assert.deepEqual(busy.limits, { web: 650, bursty: 1150, a: 170, b: 170 });
});

Deno.test("settle: a contended protected tier is cleared by weight, elastic pods keep their floors", () => {
  const s = settleMarket({
    capacity: 1000,
    bids: [
      { id: "p1", weight: 300, floor: 100, demand: 900, cap: 1000 },
      { id: "p2", weight: 100, floor: 100, demand: 900, cap: 1000 },
      { id: "e", weight: 100, floor: 200, demand: 900, cap: 1000, tier: "elastic" },
    ],
  });
  // 800 for the protected tier beyond the elastic floor: 600 and 200 by weight.
  assert.deepEqual(s.guarantees, { p1: 600, p2: 200, e: 200 });
  assert.deepEqual(s.limits, s.guarantees, "protected usage defaults to the target: nothing idle");
  // p2 idles: its idle CPU lets both protected bids run beyond their guarantees, by weight.
  const idle = settleMarket({
    capacity: 1000,
    bids: [
      { id: "p1", weight: 300, floor: 100, demand: 900, cap: 1000, usage: 500 },
      { id: "p2", weight: 100, floor: 100, demand: 900, cap: 1000, usage: 0 },
      { id: "e", weight: 100, floor: 200, demand: 900, cap: 1000, tier: "elastic" },
    ],
  });
  assert.deepEqual(idle.guarantees, s.guarantees);
  // 1000 − 200 − 500 = 300 idle: 225 and 75 on top of 600 and 200. The
  // elastic pod may run on 1000 − 500 = 500 (limits are caps: the same idle
  // CPU is open to both tiers; whoever uses it takes the other's budget).
  assert.deepEqual(idle.limits, { p1: 825, p2: 275, e: 500 });
  assert.equal(s.contended, true);
  assert.equal(s.price, 0.5, "the protected tier's price: 300 weight for 600m");
});

Deno.test("settle: floors beyond the capacity are all granted, nothing more", () => {
  const s = settleMarket({
    capacity: 300,
    bids: [
      { id: "p", weight: 1, floor: 200, demand: 900, cap: 1000 },
      { id: "e", weight: 1, floor: 200, demand: 900, cap: 1000, tier: "elastic" },
    ],
  });
  assert.deepEqual(s.guarantees, { p: 200, e: 200 });
  assert.deepEqual(s.limits, { p: 200, e: 200 });
  assert.equal(s.oversubscribed, true);
});

Deno.test("settle: without elastic bids and with usage at the target, guarantees are the retain clearing", () => {
  fc.assert(
    fc.property(marketArb, (market) => {
      const bids = market.bids.map(({ tier: _t, usage: _u, ...b }) => b);
      const s = settleMarket({ ...market, bids, protectedLimit: "target" });
      const plain = clearMarket({ capacity: market.capacity, surplus: "retain", bids });
      assert.deepEqual(s.guarantees, plain.allocations);
      assert.deepEqual(s.limits, plain.allocations);
      assert.equal(s.contended, plain.contended);
      assert.equal(s.oversubscribed, plain.oversubscribed);
    }),
    { numRuns: RUNS },
  );
});

Deno.test("property: guarantees within [floor, target], Σ ≤ capacity unless the floors exceed it", () => {
  fc.assert(
    fc.property(marketArb, (market) => {
      const s = settleMarket(market);
      const floors = market.bids.reduce((x, b) => x + b.floor, 0);
      for (const b of market.bids) {
        const g = s.guarantees[b.id];
        assert.ok(Number.isInteger(g), `${b.id}: ${g} is a whole millicore`);
        assert.ok(g >= b.floor && g <= target(b), `${b.id}: ${g} outside [f, t]`);
      }
      const sum = total(s.guarantees, market.bids);
      if (floors > market.capacity) assert.equal(sum, floors);
      else assert.ok(sum <= market.capacity, `Σg ${sum} > C ${market.capacity}`);
      assert.equal(s.oversubscribed, floors > market.capacity);
    }),
    { numRuns: RUNS },
  );
});

Deno.test("property: protected bids first — an elastic bid gets beyond its floor only when every protected bid has its target", () => {
  fc.assert(
    fc.property(marketArb, (market) => {
      const s = settleMarket(market);
      const starved = market.bids.some((b) => !elastic(b) && s.guarantees[b.id] < target(b));
      if (!starved) return;
      for (const b of market.bids.filter(elastic)) assert.equal(s.guarantees[b.id], b.floor);
    }),
    { numRuns: RUNS },
  );
});

Deno.test("property: limits never below the guarantee nor above the cap; a protected limit beyond its guarantee only from idle protected CPU, or its cap when open", () => {
  fc.assert(
    fc.property(marketArb, (market) => {
      const s = settleMarket(market);
      for (const b of market.bids) {
        const l = s.limits[b.id];
        assert.ok(Number.isInteger(l));
        assert.ok(l >= s.guarantees[b.id], `${b.id}: limit ${l} < guarantee`);
        assert.ok(l <= b.cap, `${b.id}: limit ${l} > cap ${b.cap}`);
      }
      const protectedBids = market.bids.filter((b) => !elastic(b));
      if (market.protectedLimit === "cap") {
        for (const b of protectedBids) assert.equal(s.limits[b.id], b.cap);
        return;
      }
      const extra = protectedBids.reduce((x, b) => x + s.limits[b.id] - s.guarantees[b.id], 0);
      const idle = market.capacity - market.bids.filter(elastic).reduce((x, b) => x + b.floor, 0) -
        (market.headroom ?? 0) -
        protectedBids.reduce((x, b) => x + (b.usage ?? target(b)), 0);
      assert.ok(extra <= Math.max(0, idle), `protected limits exceed their guarantees by ${extra}`);
    }),
    { numRuns: RUNS },
  );
});

Deno.test("property: surplus only to bids with unmet demand, never beyond the target (but open protected limits, which are caps)", () => {
  fc.assert(
    fc.property(marketArb, (market) => {
      const s = settleMarket(market);
      const open = market.protectedLimit === "cap";
      for (const b of market.bids.filter((b) => elastic(b) || !open)) {
        const l = s.limits[b.id];
        const g = s.guarantees[b.id];
        if (l > g) {
          assert.ok(target(b) > g, `${b.id}: more than its guarantee without unmet demand`);
          assert.ok(l <= target(b), `${b.id}: limit ${l} beyond its target ${target(b)}`);
        }
      }
    }),
    { numRuns: RUNS },
  );
});

Deno.test("property: the elastic limits add up to the budget (or every elastic target), the budget leaves the headroom and, unless the elastic bids yield, the protected usage", () => {
  fc.assert(
    fc.property(marketArb, (market) => {
      const s = settleMarket(market);
      const elasticBids = market.bids.filter(elastic);
      const yields = market.elasticYields === true;
      const protectedUse = yields ? 0 : market.bids.filter((b) => !elastic(b)).reduce(
        (x, b) => x + (b.usage ?? target(b)),
        0,
      );
      // Yielding, the budget reaches to the yielding capacity; otherwise the capacity.
      const reach = yields ? market.yieldingCapacity ?? market.capacity : market.capacity;
      const guaranteed = total(s.guarantees, elasticBids);
      assert.equal(
        s.elasticBudget,
        Math.max(guaranteed, reach - (market.headroom ?? 0) - protectedUse),
      );
      const limits = total(s.limits, elasticBids);
      const wanted = elasticBids.reduce((x, b) => x + Math.max(s.guarantees[b.id], target(b)), 0);
      assert.equal(limits, Math.min(wanted, s.elasticBudget));
    }),
    { numRuns: RUNS },
  );
});

Deno.test("property: equal elastic bids get equal limits (±1m), more usage by protected bids never raises them", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 500, max: 8000 }),
      fc.integer({ min: 2, max: 6 }),
      fc.integer({ min: 0, max: 4000 }),
      fc.integer({ min: 0, max: 4000 }),
      (capacity, n, use, more) => {
        const bids: Bid[] = [
          { id: "p", weight: 400, floor: 100, demand: 4000, cap: 8000, usage: use },
          ...Array.from({ length: n }, (_, i) => ({
            id: `e${i}`,
            weight: 100,
            floor: 50,
            demand: 8000,
            cap: 8000,
            tier: "elastic" as const,
          })),
        ];
        const settle = (usage: number): Settlement =>
          settleMarket({
            capacity,
            bids: bids.map((b) => (b.id === "p" ? { ...b, usage } : b)),
          });
        const s = settle(use);
        const values = bids.slice(1).map((b) => s.limits[b.id]);
        assert.ok(Math.max(...values) - Math.min(...values) <= 1, `${values}`);
        const busier = settle(use + more);
        for (const b of bids.slice(1)) assert.ok(busier.limits[b.id] <= s.limits[b.id]);
      },
    ),
    { numRuns: RUNS },
  );
});

Deno.test("property: yielding elastic bids' limits do not move with the protected usage; guarantees and protected limits do not depend on yielding", () => {
  fc.assert(
    fc.property(marketArb, fc.integer({ min: 0, max: 6000 }), (market, more) => {
      const yielding = settleMarket({ ...market, elasticYields: true });
      const busier = settleMarket({
        ...market,
        elasticYields: true,
        bids: market.bids.map((b) => (elastic(b) ? b : { ...b, usage: (b.usage ?? 0) + more })),
      });
      const notYielding = settleMarket({ ...market, elasticYields: false });
      for (const b of market.bids.filter(elastic)) {
        assert.equal(busier.limits[b.id], yielding.limits[b.id]);
        assert.ok(yielding.limits[b.id] >= notYielding.limits[b.id]);
      }
      assert.deepEqual(yielding.guarantees, notYielding.guarantees);
      for (const b of market.bids.filter((b) => !elastic(b))) {
        assert.equal(yielding.limits[b.id], notYielding.limits[b.id]);
      }
    }),
    { numRuns: RUNS },
  );
});

Deno.test("settle: the lab's node with yielding elastic pods — the batch jobs' limits reach into all the CPU the services might leave", () => {
  const bids: Bid[] = [
    { id: "web", weight: 300, floor: 300, demand: 560, cap: 2000, usage: 560 },
    { id: "bursty", weight: 200, floor: 200, demand: 1000, cap: 2000, usage: 1000 },
    { id: "batch-a", weight: 100, floor: 100, demand: 1200, cap: 2000, tier: "elastic" },
    { id: "batch-b", weight: 100, floor: 100, demand: 1200, cap: 2000, tier: "elastic" },
  ];
  const tracking = settleMarket({ capacity: 2000, headroom: 100, bids });
  assert.equal(tracking.elasticBudget, 440); // the elastic guarantees: 2000 − 560 − 1000
  assert.deepEqual([tracking.limits["batch-a"], tracking.limits["batch-b"]], [220, 220]);
  const yielding = settleMarket({ capacity: 2000, headroom: 100, bids, elasticYields: true });
  assert.equal(yielding.elasticBudget, 1900);
  assert.deepEqual([yielding.limits["batch-a"], yielding.limits["batch-b"]], [950, 950]);
  assert.deepEqual(yielding.guarantees, tracking.guarantees);
});

Deno.test("property: the yielding capacity changes only yielding elastic limits and the budget, never a guarantee", () => {
  fc.assert(
    fc.property(marketArb, fc.integer({ min: 0, max: 4000 }), (market, beyond) => {
      const { yieldingCapacity: _, ...base } = market;
      const wider = { ...base, yieldingCapacity: market.capacity + beyond };
      const [s, w] = [settleMarket(base), settleMarket(wider)];
      assert.deepEqual(w.guarantees, s.guarantees);
      if (market.elasticYields !== true) {
        assert.deepEqual(w, s, "ignored unless the elastic bids yield");
        return;
      }
      for (const b of market.bids) {
        if (elastic(b)) assert.ok(w.limits[b.id] >= s.limits[b.id], `${b.id}: never lower`);
        else assert.equal(w.limits[b.id], s.limits[b.id]);
      }
      assert.ok(w.elasticBudget >= s.elasticBudget);
      assert.ok(w.elasticBudget - s.elasticBudget <= beyond);
    }),
    { numRuns: RUNS },
  );
});

Deno.test("settle: the lab's node — yielding batch jobs' limits reach past the capacity into what the unmanaged pods leave", () => {
  const bids: Bid[] = [
    { id: "web", weight: 300, floor: 300, demand: 560, cap: 2000, usage: 560 },
    { id: "batch-a", weight: 100, floor: 100, demand: 1200, cap: 2000, tier: "elastic" },
    { id: "batch-b", weight: 100, floor: 100, demand: 1200, cap: 2000, tier: "elastic" },
  ];
  // 200m of the node's 2000m kept out of the market for pods MBCAS does not manage.
  const market: Market = { capacity: 1800, headroom: 90, bids, elasticYields: true };
  const within = settleMarket(market);
  assert.equal(within.elasticBudget, 1710);
  assert.deepEqual([within.limits["batch-a"], within.limits["batch-b"]], [855, 855]);
  const reaching = settleMarket({ ...market, yieldingCapacity: 2000 });
  assert.equal(reaching.elasticBudget, 1910);
  assert.deepEqual([reaching.limits["batch-a"], reaching.limits["batch-b"]], [955, 955]);
  assert.deepEqual(reaching.guarantees, within.guarantees);
  assert.equal(reaching.limits.web, within.limits.web);
  // Not yielding, the unmanaged pods' CPU stays out of the budget.
  const tracking = settleMarket({ ...market, elasticYields: false, yieldingCapacity: 2000 });
  assert.deepEqual(tracking, settleMarket({ ...market, elasticYields: false }));
});

Deno.test("property: deterministic and independent of the order of the bids", () => {
  fc.assert(
    fc.property(marketArb, fc.integer(), (market, seed) => {
      const shuffled = [...market.bids].sort((a, b) =>
        ((a.id.length * 31 + seed) % 7) - ((b.id.length * 31 + seed) % 7) ||
        (a.id < b.id ? 1 : -1)
      );
      assert.deepEqual(settleMarket({ ...market, bids: shuffled }), settleMarket(market));
    }),
    { numRuns: RUNS },
  );
});

Deno.test("property: open protected limits change the protected limits only — guarantees, elastic limits, budget and price stay", () => {
  fc.assert(
    fc.property(marketArb, (market) => {
      const byTarget = settleMarket({ ...market, protectedLimit: "target" });
      const open = settleMarket({ ...market, protectedLimit: "cap" });
      assert.deepEqual(open.guarantees, byTarget.guarantees);
      assert.equal(open.elasticBudget, byTarget.elasticBudget);
      assert.equal(open.price, byTarget.price);
      for (const b of market.bids) {
        if (elastic(b)) assert.equal(open.limits[b.id], byTarget.limits[b.id]);
        else assert.ok(open.limits[b.id] >= byTarget.limits[b.id], `${b.id}: open below target`);
      }
      const { protectedLimit: _, ...withoutMode } = market;
      assert.deepEqual(settleMarket(withoutMode), byTarget, "target is the default");
    }),
    { numRuns: RUNS },
  );
});

Deno.test("settle: the lab's node with open protected limits — the service steps up under its cap, the batch jobs' limits do not move", () => {
  const bids: Bid[] = [
    { id: "web", weight: 1200, floor: 400, demand: 460, cap: 2000, usage: 200 },
    { id: "bursty", weight: 400, floor: 300, demand: 1150, cap: 2000, usage: 1000 },
    { id: "batch-a", weight: 100, floor: 100, demand: 1200, cap: 2000, tier: "elastic" },
    { id: "batch-b", weight: 100, floor: 100, demand: 1200, cap: 2000, tier: "elastic" },
  ];
  const market: Market = { capacity: 2000, headroom: 100, elasticYields: true, bids };
  const byTarget = settleMarket(market);
  // Under its target (460m) the service is throttled when its load steps up to 560m.
  assert.equal(byTarget.limits.web, 460);
  const open = settleMarket({ ...market, protectedLimit: "cap" });
  assert.deepEqual([open.limits.web, open.limits.bursty], [2000, 2000]);
  assert.deepEqual(
    [open.limits["batch-a"], open.limits["batch-b"]],
    [byTarget.limits["batch-a"], byTarget.limits["batch-b"]],
  );
  assert.deepEqual([open.limits["batch-a"], open.limits["batch-b"]], [950, 950]);
});
