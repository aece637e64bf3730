import { roundToTotal } from "./_rounding.ts";
import type { Clearing, Market } from "./types.ts";
import { waterFill } from "./_water_fill.ts";

/** Clears one market; see the module documentation of `mod.ts` for the rules. */
export function clearMarket(market: Market): Clearing {
  const { capacity, bids } = market;
  const surplus = market.surplus ?? "distribute";
  const n = bids.length;
  const ids = new Array<string>(n);
  const weight = new Float64Array(n);
  const floor = new Float64Array(n);
  const target = new Float64Array(n);
  const cap = new Float64Array(n);
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
      price: floorPrice(weight, floor, target),
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
    const { shares } = waterFill(weight, target, cap, capacity);
    return {
      allocations: toRecord(ids, roundToTotal(shares, target, cap, ids, capacity)),
      price: 0,
      contended,
      oversubscribed: false,
    };
  }
  const { level, shares } = waterFill(weight, floor, target, capacity);
  return {
    allocations: toRecord(ids, roundToTotal(shares, floor, target, ids, capacity)),
    price: 1 / level,
    contended,
    oversubscribed: false,
  };
}

/**
 * The price when floors exhaust capacity: the smallest level λ = f/w at which
 * some bid that wants more than its floor would start to receive more, priced
 * as 1/λ. 0 when nobody wants more than its floor; `null` when such a bid has
 * a zero floor (λ = 0: no finite price buys it anything).
 */
function floorPrice(
  weight: Float64Array,
  floor: Float64Array,
  target: Float64Array,
): number | null {
  let level = Number.POSITIVE_INFINITY;
  for (let i = 0; i < weight.length; i++) {
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
