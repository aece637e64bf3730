import assert from "node:assert/strict";
import { clearMarket } from "../../src/solver/mod.ts";
import type { Bid, Market } from "../../src/solver/mod.ts";
import { oracleAllocation } from "./_oracle.ts";

function bid(id: string, weight: number, floor: number, demand: number, cap: number): Bid {
  return { id, weight, floor, demand, cap };
}

function total(allocations: Record<string, number>): number {
  return Object.values(allocations).reduce((s, x) => s + x, 0);
}

Deno.test("empty market: nothing allocated, uncontended", () => {
  assert.deepEqual(clearMarket({ capacity: 4000, bids: [] }), {
    allocations: {},
    price: 0,
    contended: false,
    oversubscribed: false,
  });
  assert.deepEqual(clearMarket({ capacity: 0, bids: [] }), {
    allocations: {},
    price: 0,
    contended: false,
    oversubscribed: false,
  });
});

Deno.test("one bid, uncontended: distribute fills to capacity within the cap, retain stops at demand", () => {
  const market: Market = { capacity: 4000, bids: [bid("a", 100, 100, 700, 3000)] };
  assert.deepEqual(clearMarket(market).allocations, { a: 3000 });
  assert.deepEqual(clearMarket({ ...market, capacity: 2500 }).allocations, { a: 2500 });
  assert.deepEqual(clearMarket({ ...market, surplus: "retain" }).allocations, { a: 700 });
  assert.equal(clearMarket(market).price, 0);
});

Deno.test("one bid, contended: gets the whole capacity at price weight/capacity", () => {
  const clearing = clearMarket({ capacity: 1000, bids: [bid("a", 250, 100, 2000, 4000)] });
  assert.deepEqual(clearing.allocations, { a: 1000 });
  assert.equal(clearing.contended, true);
  assert.equal(clearing.oversubscribed, false);
  assert.ok(Math.abs(clearing.price! - 0.25) < 1e-12);
});

Deno.test("capacity 0: every bid keeps its floor, oversubscribed when floors are positive", () => {
  const clearing = clearMarket({
    capacity: 0,
    bids: [bid("a", 100, 100, 500, 1000), bid("b", 50, 0, 500, 1000)],
  });
  assert.deepEqual(clearing.allocations, { a: 100, b: 0 });
  assert.equal(clearing.contended, true);
  assert.equal(clearing.oversubscribed, true);
  // b wants CPU and has a zero floor: no finite price buys it any.
  assert.equal(clearing.price, null);
});

Deno.test("floors exactly exhaust capacity: floors granted, price is the cheapest unmet bid's w/f", () => {
  const clearing = clearMarket({
    capacity: 300,
    bids: [bid("a", 100, 100, 500, 1000), bid("b", 400, 200, 900, 1000)],
  });
  assert.deepEqual(clearing.allocations, { a: 100, b: 200 });
  assert.equal(clearing.oversubscribed, false);
  assert.equal(clearing.contended, true);
  assert.equal(clearing.price, 2); // max(100/100, 400/200)
});

Deno.test("oversubscribed floors are never cut", () => {
  const clearing = clearMarket({
    capacity: 500,
    bids: [bid("a", 1, 400, 400, 400), bid("b", 1, 300, 1000, 1000)],
  });
  assert.deepEqual(clearing.allocations, { a: 400, b: 300 });
  assert.equal(clearing.oversubscribed, true);
});

Deno.test("all demand zero: targets are the floors, surplus water-filled by weight", () => {
  const market: Market = {
    capacity: 1000,
    bids: [bid("a", 100, 100, 0, 1000), bid("b", 300, 300, 0, 1000)],
  };
  const distribute = clearMarket(market);
  assert.deepEqual(distribute.allocations, { a: 250, b: 750 });
  assert.equal(distribute.contended, false);
  assert.deepEqual(clearMarket({ ...market, surplus: "retain" }).allocations, { a: 100, b: 300 });
});

Deno.test("floors equal caps: the allocation is fixed whatever the capacity", () => {
  for (const capacity of [0, 250, 500, 10_000]) {
    const clearing = clearMarket({
      capacity,
      bids: [bid("a", 1, 200, 5000, 200), bid("b", 7, 300, 0, 300)],
    });
    assert.deepEqual(clearing.allocations, { a: 200, b: 300 }, `capacity ${capacity}`);
  }
});

Deno.test("contended: weighted water level with floors and targets (worked example)", () => {
  const clearing = clearMarket({
    capacity: 4000,
    bids: [
      bid("checkout", 500, 500, 1800, 4000),
      bid("search", 1000, 1000, 1500, 4000),
      bid("report", 250, 250, 4000, 3000),
      bid("cart", 200, 200, 150, 2000),
    ],
  });
  // cart is held at its floor (200); search reaches its target (1500) at λ = 1.5;
  // the rest, 2300, is split 2:1 between checkout and report: λ = 2300/750.
  assert.deepEqual(clearing.allocations, { checkout: 1533, search: 1500, report: 767, cart: 200 });
  assert.ok(Math.abs(clearing.price! - 750 / 2300) < 1e-12);
  assert.equal(clearing.contended, true);
});

Deno.test("ties: equal bids split evenly and the odd millicore goes to the smaller id", () => {
  const bids = [bid("c", 1, 0, 1000, 1000), bid("a", 1, 0, 1000, 1000), bid("b", 1, 0, 1000, 1000)];
  const clearing = clearMarket({ capacity: 1001, bids });
  assert.deepEqual(clearing.allocations, { a: 334, b: 334, c: 333 });
  const reversed = clearMarket({ capacity: 1001, bids: [...bids].reverse() });
  assert.deepEqual(reversed.allocations, clearing.allocations);
});

Deno.test("huge weight ratios (1e-6 to 1e6) keep floors and stay within a millicore of the real solution", () => {
  const market: Market = {
    capacity: 100_000,
    bids: [
      bid("tiny", 1e-6, 10, 50_000, 100_000),
      bid("huge", 1e6, 10, 60_000, 100_000),
      bid("mid", 1, 10, 70_000, 100_000),
    ],
  };
  const clearing = clearMarket(market);
  assert.equal(total(clearing.allocations), 100_000);
  const oracle = oracleAllocation(market);
  for (const [id, x] of Object.entries(clearing.allocations)) {
    assert.ok(Math.abs(x - oracle.get(id)!) <= 1, `${id}: ${x} vs ${oracle.get(id)}`);
  }
  assert.equal(clearing.allocations.huge, 60_000);
  assert.ok(clearing.allocations.tiny >= 10);
});

Deno.test("10,000 bids: conserves capacity, keeps bounds, agrees with the oracle", () => {
  let seed = 42;
  const random = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  const bids: Bid[] = [];
  for (let i = 0; i < 10_000; i++) {
    const floor = Math.floor(random() * 500);
    const cap = floor + Math.floor(random() * 4000);
    bids.push(bid(`ns/pod-${i}/c`, 1 + random() * 1000, floor, Math.floor(random() * 5000), cap));
  }
  const market: Market = { capacity: 4_000_000, bids };
  const clearing = clearMarket(market);
  assert.equal(clearing.contended, true);
  assert.equal(total(clearing.allocations), 4_000_000);
  const oracle = oracleAllocation(market);
  for (const b of bids) {
    const x = clearing.allocations[b.id];
    assert.ok(x >= b.floor && x <= Math.min(b.cap, Math.max(b.floor, b.demand)));
    assert.ok(Math.abs(x - oracle.get(b.id)!) <= 1, `${b.id}: ${x} vs ${oracle.get(b.id)}`);
  }
});

Deno.test("the input market is not mutated", () => {
  const market: Market = {
    capacity: 1500,
    surplus: "distribute",
    bids: [bid("b", 2, 100, 900, 1000), bid("a", 1, 100, 900, 1000)],
  };
  const before = structuredClone(market);
  clearMarket(
    Object.freeze({
      ...market,
      bids: Object.freeze(market.bids.map((b) => Object.freeze(b))) as Bid[],
    }),
  );
  clearMarket(market);
  assert.deepEqual(market, before);
});

Deno.test("uncontended distribute: surplus goes by weight and stops at caps", () => {
  const clearing = clearMarket({
    capacity: 3000,
    bids: [bid("a", 1, 100, 200, 400), bid("b", 1, 100, 200, 5000), bid("c", 2, 100, 200, 5000)],
  });
  // a is capped at 400; b and c share the remaining 2600 in ratio 1:2.
  assert.deepEqual(clearing.allocations, { a: 400, b: 867, c: 1733 });
  assert.equal(total(clearing.allocations), 3000);
});

Deno.test("uncontended distribute with every cap reached leaves the rest unallocated", () => {
  const clearing = clearMarket({
    capacity: 3000,
    bids: [bid("a", 1, 100, 200, 400), bid("b", 1, 100, 200, 500)],
  });
  assert.deepEqual(clearing.allocations, { a: 400, b: 500 });
});

Deno.test("demand exactly equal to capacity: targets, price 0, not contended", () => {
  const clearing = clearMarket({
    capacity: 1000,
    bids: [bid("a", 1, 100, 600, 2000), bid("b", 1, 100, 400, 2000)],
  });
  assert.deepEqual(clearing, {
    allocations: { a: 600, b: 400 },
    price: 0,
    contended: false,
    oversubscribed: false,
  });
});
