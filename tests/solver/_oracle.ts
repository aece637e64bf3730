/**
 * An independent, deliberately slow oracle for the market rules: it finds the
 * water level by bisection on λ (not by the breakpoint sweep) and returns the
 * real-valued allocation, for comparison with the exact integer clearing.
 */
import type { Market } from "../../src/solver/mod.ts";

/** The real (unrounded) allocation per bid id, by bisection. */
export function oracleAllocation(market: Market): Map<string, number> {
  const { capacity, bids } = market;
  const targets = bids.map((b) => Math.min(b.cap, Math.max(b.floor, b.demand)));
  const floorSum = bids.reduce((s, b) => s + b.floor, 0);
  const targetSum = targets.reduce((s, t) => s + t, 0);
  const capSum = bids.reduce((s, b) => s + b.cap, 0);
  const result = new Map<string, number>();
  if (floorSum >= capacity) {
    bids.forEach((b) => result.set(b.id, b.floor));
  } else if (targetSum <= capacity) {
    if ((market.surplus ?? "distribute") === "retain") {
      bids.forEach((b, i) => result.set(b.id, targets[i]));
    } else if (capSum <= capacity) {
      bids.forEach((b) => result.set(b.id, b.cap));
    } else {
      const lo = targets;
      const hi = bids.map((b) => b.cap);
      const level = bisect(bids.map((b) => b.weight), lo, hi, capacity);
      bids.forEach((b, i) => result.set(b.id, clamp(level * b.weight, lo[i], hi[i])));
    }
  } else {
    const lo = bids.map((b) => b.floor);
    const level = bisect(bids.map((b) => b.weight), lo, targets, capacity);
    bids.forEach((b, i) => result.set(b.id, clamp(level * b.weight, lo[i], targets[i])));
  }
  return result;
}

function bisect(weights: number[], lo: number[], hi: number[], total: number): number {
  const sum = (level: number) => weights.reduce((s, w, i) => s + clamp(level * w, lo[i], hi[i]), 0);
  let low = 0;
  let high = Math.max(...hi.map((h, i) => h / weights[i]));
  for (let k = 0; k < 2000 && low < high; k++) {
    const mid = (low + high) / 2;
    if (mid === low || mid === high) break;
    if (sum(mid) < total) low = mid;
    else high = mid;
  }
  return (low + high) / 2;
}

function clamp(x: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, x));
}
