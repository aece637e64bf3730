import { roundToTotal } from "./_rounding.ts";
import type { Clearing, Market } from "./types.ts";
import { waterFill } from "./_water_fill.ts";
import { SLOT, Workspace } from "./_workspace.ts";

const workspace = new Workspace();

/** Clears one market; see the module documentation of `mod.ts` for the rules. */
export function clearMarket(market: Market): Clearing {
  const { capacity, bids } = market;
  const surplus = market.surplus ?? "distribute";
  const n = bids.length;
  const ws = workspace;
  const ids = new Array<string>(n);
  const weight = ws.f64(SLOT.weight, n);
  const floor = ws.f64(SLOT.floor, n);
  const target = ws.f64(SLOT.target, n);
  const cap = ws.f64(SLOT.cap, n);
  let floorSum = 0;
  let targetSum = 0;
  let capSum = 0;
  for (let i = 0; i < n; i++) {
    const bid = bids[i];
    ids[i] = bid.id;
    weight[i] = bid.weight;
    floor[i] = bid.floor;
    cap[i] = bid.cap;
    target[i] = Math.min(bid.cap, Math.max(bid.floor, bid.demand));
    floorSum += bid.floor;
    targetSum += target[i];
    capSum += bid.cap;
  }

  const contended = targetSum > capacity;
  if (floorSum >= capacity) {
    // Floors alone exhaust capacity: floors are never cut.
    return {
      allocations: toRecord(ids, floor),
      price: floorPrice(n, weight, floor, target),
      contended,
      oversubscribed: floorSum > capacity,
    };
  }
  if (!contended) {
    if (surplus === "retain" || targetSum === capacity) {
      return { allocations: toRecord(ids, target), price: 0, contended, oversubscribed: false };
    }
    if (capSum <= capacity) {
      return { allocations: toRecord(ids, cap), price: 0, contended, oversubscribed: false };
    }
    return {
      allocations: toRecord(ids, fillAndRound(n, weight, target, cap, ids, capacity)),
      price: 0,
      contended,
      oversubscribed: false,
    };
  }
  const shares = ws.f64(SLOT.shares, n);
  const level = waterFill(ws, n, weight, floor, target, capacity, shares);
  const rounded = ws.f64(SLOT.rounded, n);
  roundToTotal(ws, n, shares, floor, target, ids, capacity, rounded);
  return {
    allocations: toRecord(ids, rounded),
    price: 1 / level,
    contended,
    oversubscribed: false,
  };
}

/** Water-fills [lo, hi] up to `total` and rounds to integers adding up to it. */
function fillAndRound(
  n: number,
  weight: Float64Array,
  lo: Float64Array,
  hi: Float64Array,
  ids: readonly string[],
  total: number,
): Float64Array {
  const shares = workspace.f64(SLOT.shares, n);
  waterFill(workspace, n, weight, lo, hi, total, shares);
  const rounded = workspace.f64(SLOT.rounded, n);
  roundToTotal(workspace, n, shares, lo, hi, ids, total, rounded);
  return rounded;
}

/**
 * The price when floors exhaust capacity: the smallest level λ = f/w at which
 * some bid that wants more than its floor would start to receive more, priced
 * as 1/λ. 0 when nobody wants more than its floor; `null` when such a bid has
 * a zero floor (λ = 0: no finite price buys it anything).
 */
function floorPrice(
  n: number,
  weight: Float64Array,
  floor: Float64Array,
  target: Float64Array,
): number | null {
  let level = Number.POSITIVE_INFINITY;
  for (let i = 0; i < n; i++) {
    if (target[i] > floor[i]) level = Math.min(level, floor[i] / weight[i]);
  }
  if (level === Number.POSITIVE_INFINITY) return 0;
  return level === 0 ? null : 1 / level;
}

function toRecord(ids: readonly string[], values: Float64Array): Record<string, number> {
  const record: Record<string, number> = {};
  for (let i = 0; i < ids.length; i++) record[ids[i]] = values[i];
  return record;
}
