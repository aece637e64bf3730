/**
 * In-place sort of an index array by a caller-supplied "less than" relation.
 * A plain quicksort with median-of-three pivots and insertion sort for short
 * runs: faster than `TypedArray.prototype.sort` with a comparator for the
 * breakpoint sweep, and allocation-free.
 */
export function sortIndices(index: Int32Array, less: (a: number, b: number) => boolean): void {
  quicksort(index, 0, index.length - 1, less);
}

function quicksort(
  a: Int32Array,
  lo: number,
  hi: number,
  less: (a: number, b: number) => boolean,
): void {
  while (hi - lo > 16) {
    const mid = (lo + hi) >>> 1;
    if (less(a[mid], a[lo])) swap(a, mid, lo);
    if (less(a[hi], a[lo])) swap(a, hi, lo);
    if (less(a[hi], a[mid])) swap(a, hi, mid);
    const pivot = a[mid];
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (less(a[i], pivot)) i++;
      while (less(pivot, a[j])) j--;
      if (i <= j) {
        swap(a, i, j);
        i++;
        j--;
      }
    }
    // Recurse into the smaller side, loop on the larger: O(log n) stack.
    if (j - lo < hi - i) {
      quicksort(a, lo, j, less);
      lo = i;
    } else {
      quicksort(a, i, hi, less);
      hi = j;
    }
  }
  for (let i = lo + 1; i <= hi; i++) {
    const v = a[i];
    let j = i - 1;
    while (j >= lo && less(v, a[j])) {
      a[j + 1] = a[j];
      j--;
    }
    a[j + 1] = v;
  }
}

function swap(a: Int32Array, i: number, j: number): void {
  const t = a[i];
  a[i] = a[j];
  a[j] = t;
}
