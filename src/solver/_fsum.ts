/**
 * Correctly rounded sum of floating-point numbers (Shewchuk's algorithm, as in
 * Python's `math.fsum`): the result is the exact sum rounded once, so it does
 * not depend on the order of the terms and weights 12 orders of magnitude apart
 * do not cancel each other out.
 */
export class ExactSum {
  #partials: number[] = [];

  /** Adds one term. */
  add(value: number): void {
    const partials = this.#partials;
    let x = value;
    let kept = 0;
    for (let j = 0; j < partials.length; j++) {
      let y = partials[j];
      if (Math.abs(x) < Math.abs(y)) {
        const t = x;
        x = y;
        y = t;
      }
      const high = x + y;
      const low = y - (high - x);
      if (low !== 0) partials[kept++] = low;
      x = high;
    }
    partials.length = kept;
    partials.push(x);
  }

  /** The exact sum of the terms added so far, rounded to the nearest double. */
  value(): number {
    const partials = this.#partials;
    let n = partials.length;
    if (n === 0) return 0;
    let high = partials[--n];
    let low = 0;
    while (n > 0) {
      const x = high;
      const y = partials[--n];
      high = x + y;
      low = y - (high - x);
      if (low !== 0) break;
    }
    // Round half to even correctly when the remaining partials tip the balance.
    if (n > 0 && ((low < 0 && partials[n - 1] < 0) || (low > 0 && partials[n - 1] > 0))) {
      const y = low * 2;
      const x = high + y;
      if (y === x - high) high = x;
    }
    return high;
  }
}
