/**
 * Scratch typed arrays reused from one clearing to the next, so a clearing
 * allocates almost nothing but its result. Clearing is synchronous and never
 * re-entered, so one workspace per module is safe. Arrays may be longer than
 * asked for: callers index by their own counts, never by `.length`.
 */
export class Workspace {
  #f64: Float64Array[] = [];
  #i32: Int32Array[] = [];

  /** Float64 scratch array number `slot`, at least `length` long. */
  f64(slot: number, length: number): Float64Array {
    const current = this.#f64[slot];
    if (current !== undefined && current.length >= length) return current;
    const grown = new Float64Array(Math.max(length, 2 * (current?.length ?? 0), 64));
    this.#f64[slot] = grown;
    return grown;
  }

  /** Int32 scratch array number `slot`, at least `length` long. */
  i32(slot: number, length: number): Int32Array {
    const current = this.#i32[slot];
    if (current !== undefined && current.length >= length) return current;
    const grown = new Int32Array(Math.max(length, 2 * (current?.length ?? 0), 64));
    this.#i32[slot] = grown;
    return grown;
  }
}

/** Which scratch array each step of a clearing uses, so no two steps share one by accident. */
export const SLOT = {
  weight: 0,
  floor: 1,
  target: 2,
  cap: 3,
  breakpoints: 4,
  shares: 5,
  rounded: 6,
  fraction: 7,
  remainderKey: 8,
  events: 0,
  remainderOrder: 1,
} as const;
