/**
 * The naive baseline the exact solver is measured against: start everyone at
 * its floor, hand each unpinned bid ⌊R·w/Σw⌋ of the remainder R (at most up
 * to its target), pin those that reach their target, repeat. It is inexact: it
 * strands up to n−1 millicores when every share rounds down to zero, and gives
 * small remainders to nobody. Benchmark use only.
 */
import type { Clearing, Market } from "../../src/solver/mod.ts";

/** Clears a market the naive iterative way (contended and floor cases only). */
export function naiveClearing(market: Market): Clearing {
  const { capacity, bids } = market;
  const n = bids.length;
  const x = new Float64Array(n);
  const t = new Float64Array(n);
  let remainder = capacity;
  for (let i = 0; i < n; i++) {
    const b = bids[i];
    x[i] = b.floor;
    t[i] = Math.min(b.cap, Math.max(b.floor, b.demand));
    remainder -= b.floor;
  }
  let open: number[] = [];
  for (let i = 0; i < n; i++) if (x[i] < t[i]) open.push(i);
  while (remainder > 0 && open.length > 0) {
    let weightSum = 0;
    for (const i of open) weightSum += bids[i].weight;
    let given = 0;
    const still: number[] = [];
    for (const i of open) {
      const share = Math.min(Math.floor((remainder * bids[i].weight) / weightSum), t[i] - x[i]);
      x[i] += share;
      given += share;
      if (x[i] < t[i]) still.push(i);
    }
    remainder -= given;
    open = still;
    if (given === 0) break; // every share rounded down to zero: the rest is stranded
  }
  const allocations: Record<string, number> = {};
  for (let i = 0; i < n; i++) allocations[bids[i].id] = x[i];
  return { allocations, price: null, contended: true, oversubscribed: remainder < 0 };
}
