import { sortIndices } from "./_sort.ts";

/**
 * Rounds real shares to integers that add up to `total` (largest remainder):
 * every share is first rounded down, then the millicores still missing go one
 * each to the shares with the largest fractional parts, ties to the smaller
 * id. Every result stays within its integer bounds [lo_i, hi_i], so each is the
 * real share rounded down or up.
 *
 * If floating-point noise ever left the rounded-down sum above `total`, the
 * excess is taken back one millicore at a time from the smallest fractional
 * parts, within the same bounds.
 */
export function roundToTotal(
  shares: Float64Array,
  lo: Float64Array,
  hi: Float64Array,
  ids: readonly string[],
  total: number,
): Float64Array {
  const n = shares.length;
  const rounded = new Float64Array(n);
  const fraction = new Float64Array(n);
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const down = Math.min(hi[i], Math.max(lo[i], Math.floor(shares[i])));
    rounded[i] = down;
    fraction[i] = shares[i] - down;
    sum += down;
  }
  let missing = total - sum;
  if (missing === 0) return rounded;
  const up = missing > 0;
  const candidates: number[] = [];
  for (let i = 0; i < n; i++) {
    if (up ? rounded[i] < hi[i] : rounded[i] > lo[i]) candidates.push(i);
  }
  const order = Int32Array.from(candidates);
  sortIndices(order, (a, b) => {
    if (fraction[a] !== fraction[b]) {
      return up ? fraction[a] > fraction[b] : fraction[a] < fraction[b];
    }
    return ids[a] < ids[b];
  });
  // One pass suffices in exact arithmetic (|missing| < n); keep going round
  // while floating-point noise asks for more and some bid can still move.
  while (missing !== 0) {
    let moved = false;
    for (let k = 0; k < order.length && missing !== 0; k++) {
      const i = order[k];
      if (up ? rounded[i] < hi[i] : rounded[i] > lo[i]) {
        rounded[i] += up ? 1 : -1;
        missing += up ? -1 : 1;
        moved = true;
      }
    }
    if (!moved) break;
  }
  return rounded;
}
