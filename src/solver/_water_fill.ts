import { sortIndices } from "./_sort.ts";

/** The water level λ and the real-valued shares clamp(λ·w_i, lo_i, hi_i). */
export interface WaterLevel {
  /** λ: the common level of share per unit weight among unclamped bids. */
  level: number;
  /** The real solution for each bid, within [lo_i, hi_i]. */
  shares: Float64Array;
}

/**
 * Solves Σ clamp(λ·w_i, lo_i, hi_i) = total for λ exactly, by sorting the 2n
 * breakpoints lo_i/w_i and hi_i/w_i and sweeping them once.
 *
 * The left side is piecewise linear and non-decreasing in λ: between two
 * consecutive breakpoints it is `fixed + λ·W`, where `fixed` sums the bounds of
 * the clamped bids and `W` the weights of the unclamped ones. The sweep walks
 * the breakpoints in order, updating `fixed` and `W`, until the next breakpoint
 * would overshoot `total`; λ is then `(total − fixed) / W` on that segment.
 *
 * Requires Σlo < total < Σhi and every w_i > 0, lo_i ≤ hi_i.
 *
 * Breakpoint ties are ordered by the bid's own numbers (weight, lo, hi), never by
 * its position, so the arithmetic, and hence every bit of the result, is the
 * same for any order of the input. `W` is summed with Neumaier compensation so
 * that weights 12 orders of magnitude apart do not cancel each other out.
 */
export function waterFill(
  weight: Float64Array,
  lo: Float64Array,
  hi: Float64Array,
  total: number,
): WaterLevel {
  const n = weight.length;
  const key = new Float64Array(2 * n);
  let movable = 0;
  let fixed = 0;
  for (let i = 0; i < n; i++) {
    fixed += lo[i];
    if (lo[i] < hi[i]) movable++;
  }
  const events = new Int32Array(2 * movable);
  let m = 0;
  for (let i = 0; i < n; i++) {
    if (lo[i] < hi[i]) {
      key[2 * i] = lo[i] / weight[i];
      key[2 * i + 1] = hi[i] / weight[i];
      events[m++] = 2 * i;
      events[m++] = 2 * i + 1;
    }
  }
  sortIndices(events, (a, b) => {
    const ka = key[a];
    const kb = key[b];
    if (ka !== kb) return ka < kb;
    const ia = a >> 1;
    const ib = b >> 1;
    if (weight[ia] !== weight[ib]) return weight[ia] < weight[ib];
    if (lo[ia] !== lo[ib]) return lo[ia] < lo[ib];
    if (hi[ia] !== hi[ib]) return hi[ia] < hi[ib];
    return (a & 1) < (b & 1);
  });

  // W as a compensated sum: w = sum + compensation.
  let sum = 0;
  let compensation = 0;
  let level = Number.NaN;
  for (let e = 0; e < events.length; e++) {
    const event = events[e];
    const w = sum + compensation;
    if (fixed + key[event] * w >= total) {
      level = (total - fixed) / w;
      break;
    }
    const i = event >> 1;
    const delta = (event & 1) === 0 ? weight[i] : -weight[i];
    fixed += (event & 1) === 0 ? -lo[i] : hi[i];
    const next = sum + delta;
    compensation += Math.abs(sum) >= Math.abs(delta) ? (sum - next) + delta : (delta - next) + sum;
    sum = next;
  }
  if (Number.isNaN(level)) {
    // Only reachable if total ≥ Σhi despite the precondition: everyone at hi.
    level = Number.POSITIVE_INFINITY;
  }
  const shares = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const x = level * weight[i];
    shares[i] = x <= lo[i] ? lo[i] : x >= hi[i] ? hi[i] : x;
  }
  return { level, shares };
}
