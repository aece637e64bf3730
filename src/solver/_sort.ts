/**
 * Sorts `keys[0..count)` ascending in place and applies the same permutation
 * to `payload`. Equal keys end up in an unspecified order.
 *
 * A quicksort over parallel typed arrays with median-of-three pivots and
 * insertion sort for short runs, comparing keys inline: several times faster
 * than `TypedArray.prototype.sort` with a comparator, and allocation-free.
 * `keys` must not contain NaN.
 */
export function sortByKey(keys: Float64Array, payload: Int32Array, count: number): void {
  quicksort(keys, payload, 0, count - 1);
}

/**
 * Like {@link sortByKey}, but equal keys are ordered by `tieLess` on their
 * payloads, so the result is fully determined by the data.
 */
export function sortByKeyThenTie(
  keys: Float64Array,
  payload: Int32Array,
  count: number,
  tieLess: (a: number, b: number) => boolean,
): void {
  quicksort(keys, payload, 0, count - 1);
  // Equal keys are adjacent now: order each run of ties by the tie-breaker.
  let start = 0;
  while (start < count) {
    let end = start + 1;
    while (end < count && keys[end] === keys[start]) end++;
    if (end - start > 1) payload.subarray(start, end).sort((a, b) => (tieLess(a, b) ? -1 : 1));
    start = end;
  }
}

function quicksort(k: Float64Array, p: Int32Array, lo: number, hi: number): void {
  while (hi - lo > 16) {
    const mid = (lo + hi) >>> 1;
    if (k[mid] < k[lo]) swap(k, p, mid, lo);
    if (k[hi] < k[lo]) swap(k, p, hi, lo);
    if (k[hi] < k[mid]) swap(k, p, hi, mid);
    const pivot = k[mid];
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (k[i] < pivot) i++;
      while (pivot < k[j]) j--;
      if (i <= j) {
        swap(k, p, i, j);
        i++;
        j--;
      }
    }
    // Recurse into the smaller side, loop on the larger: O(log n) stack.
    if (j - lo < hi - i) {
      quicksort(k, p, lo, j);
      lo = i;
    } else {
      quicksort(k, p, i, hi);
      hi = j;
    }
  }
  for (let i = lo + 1; i <= hi; i++) {
    const key = k[i];
    const value = p[i];
    let j = i - 1;
    while (j >= lo && key < k[j]) {
      k[j + 1] = k[j];
      p[j + 1] = p[j];
      j--;
    }
    k[j + 1] = key;
    p[j + 1] = value;
  }
}

function swap(k: Float64Array, p: Int32Array, i: number, j: number): void {
  const key = k[i];
  k[i] = k[j];
  k[j] = key;
  const value = p[i];
  p[i] = p[j];
  p[j] = value;
}
