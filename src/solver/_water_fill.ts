import { ExactSum } from "./_fsum.ts";
import { sortByKey } from "./_sort.ts";
import { SLOT, type Workspace } from "./_workspace.ts";

/**
 * Solves Σ clamp(λ·w_i, lo_i, hi_i) = total for λ exactly, by sorting the 2n
 * breakpoints lo_i/w_i and hi_i/w_i and sweeping them once. Returns λ and
 * writes the real-valued shares clamp(λ·w_i, lo_i, hi_i) to `shares[0..n)`.
 *
 * The left side is piecewise linear and non-decreasing in λ: between two
 * consecutive breakpoints it is `fixed + λ·W`, where `fixed` sums the bounds of
 * the clamped bids and `W` the weights of the unclamped ones. The sweep walks
 * the distinct breakpoints in order, updating `fixed` and `W`, until the next
 * one would reach `total`; λ is then `(total − fixed) / W` on that segment.
 *
 * Requires Σlo < total < Σhi and every w_i > 0, lo_i ≤ hi_i.
 *
 * The sweep only locates the segment. The final λ is computed from the
 * segment's end points alone: which bids are clamped low, clamped high or
 * free is decided by comparing each bid's own breakpoints with them, `fixed`
 * is a sum of integers (exact), and `W` is a correctly rounded sum. So every
 * bit of the result is the same for any order of the input.
 */
export function waterFill(
  ws: Workspace,
  n: number,
  weight: Float64Array,
  lo: Float64Array,
  hi: Float64Array,
  total: number,
  shares: Float64Array,
): number {
  const key = ws.f64(SLOT.breakpoints, 2 * n);
  const events = ws.i32(SLOT.events, 2 * n);
  // Event 2i: bid i starts to rise (λ = lo_i/w_i); event 2i+1: it stops (hi_i/w_i).
  let m = 0;
  let fixed = 0;
  for (let i = 0; i < n; i++) {
    fixed += lo[i];
    if (lo[i] < hi[i]) {
      key[m] = lo[i] / weight[i];
      events[m++] = 2 * i;
      key[m] = hi[i] / weight[i];
      events[m++] = 2 * i + 1;
    }
  }
  sortByKey(key, events, m);

  // Sweep the distinct breakpoints with a running (approximate) W.
  let free = 0;
  let previous = 0;
  let e = 0;
  while (e < m) {
    const k = key[e];
    if (fixed + k * free >= total) break;
    previous = k;
    for (; e < m && key[e] === k; e++) {
      const i = events[e] >> 1;
      if ((events[e] & 1) === 0) {
        fixed -= lo[i];
        free += weight[i];
      } else {
        fixed += hi[i];
        free -= weight[i];
      }
    }
  }
  const next = e < m ? key[e] : Number.POSITIVE_INFINITY;

  // λ lies in [previous, next]: recompute that segment's line exactly.
  let clamped = 0;
  let freeWeight = 0;
  let integral = true;
  for (let i = 0; i < n; i++) {
    if (lo[i] >= hi[i] || lo[i] / weight[i] >= next) clamped += lo[i];
    else if (hi[i] / weight[i] <= previous) clamped += hi[i];
    else {
      freeWeight += weight[i];
      integral &&= Number.isInteger(weight[i]);
    }
  }
  if (!integral || freeWeight > Number.MAX_SAFE_INTEGER) {
    // A plain sum of integers below 2^53 is exact; anything else is summed exactly.
    const sum = new ExactSum();
    for (let i = 0; i < n; i++) {
      if (lo[i] < hi[i] && lo[i] / weight[i] < next && hi[i] / weight[i] > previous) {
        sum.add(weight[i]);
      }
    }
    freeWeight = sum.value();
  }
  const level = freeWeight > 0 ? (total - clamped) / freeWeight : previous;

  for (let i = 0; i < n; i++) {
    const x = level * weight[i];
    shares[i] = x <= lo[i] ? lo[i] : x >= hi[i] ? hi[i] : x;
  }
  return level;
}
