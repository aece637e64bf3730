import { sortByKeyThenTie } from "./_sort.ts";
import { SLOT, type Workspace } from "./_workspace.ts";

/**
 * Rounds real shares to integers that add up to `total` (largest remainder),
 * writing them to `rounded[0..n)`: every share is first rounded down, then the
 * millicores still missing go one each to the shares with the largest
 * fractional parts, ties to the smaller id. Every result stays within its
 * integer bounds [lo_i, hi_i], so each is the real share rounded down or up.
 *
 * If floating-point noise ever left the rounded-down sum above `total`, the
 * excess is taken back one millicore at a time from the smallest fractional
 * parts, within the same bounds.
 */
export function roundToTotal(
  ws: Workspace,
  n: number,
  shares: Float64Array,
  lo: Float64Array,
  hi: Float64Array,
  ids: readonly string[],
  total: number,
  rounded: Float64Array,
): void {
  const fraction = ws.f64(SLOT.fraction, n);
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const down = Math.min(hi[i], Math.max(lo[i], Math.floor(shares[i])));
    rounded[i] = down;
    fraction[i] = shares[i] - down;
    sum += down;
  }
  let missing = total - sum;
  if (missing === 0) return;
  const up = missing > 0;
  // Candidates ordered by fractional part, largest first when rounding up,
  // smallest first when rounding down; ties to the smaller id.
  const order = ws.i32(SLOT.remainderOrder, n);
  const key = ws.f64(SLOT.remainderKey, n);
  let count = 0;
  for (let i = 0; i < n; i++) {
    if (up ? rounded[i] < hi[i] : rounded[i] > lo[i]) {
      order[count] = i;
      key[count++] = up ? -fraction[i] : fraction[i];
    }
  }
  sortByKeyThenTie(key, order, count, (a, b) => ids[a] < ids[b]);
  // One pass suffices in exact arithmetic (|missing| < n); keep going round
  // while floating-point noise asks for more and some bid can still move.
  while (missing !== 0) {
    let moved = false;
    for (let k = 0; k < count && missing !== 0; k++) {
      const i = order[k];
      if (up ? rounded[i] < hi[i] : rounded[i] > lo[i]) {
        rounded[i] += up ? 1 : -1;
        missing += up ? -1 : 1;
        moved = true;
      }
    }
    if (!moved) break;
  }
}
