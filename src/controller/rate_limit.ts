/**
 * Token buckets for resizes: a global one and one per node, so a flood of
 * PodAllocations cannot storm the API server or any kubelet. Time is passed
 * in, so the arithmetic is testable.
 *
 * @module
 */

/** A token bucket: `burst` tokens, refilled at `perSecond`. */
export class TokenBucket {
  #tokens: number;
  #at: number;
  readonly perSecond: number;
  readonly burst: number;

  /** A full bucket at time `nowMs`. */
  constructor(perSecond: number, burst: number, nowMs: number) {
    this.perSecond = perSecond;
    this.burst = burst;
    this.#tokens = burst;
    this.#at = nowMs;
  }

  #refill(nowMs: number): void {
    // A caller's clock reading older than the last one (taken before an await) refills nothing;
    // it must not take tokens away.
    this.#tokens = Math.min(
      this.burst,
      this.#tokens + (Math.max(0, nowMs - this.#at) / 1000) * this.perSecond,
    );
    this.#at = Math.max(this.#at, nowMs);
  }

  /** Milliseconds until `needed` tokens are available (0 when they are; default 1). */
  waitMs(nowMs: number, needed = 1): number {
    this.#refill(nowMs);
    return this.#tokens >= needed
      ? 0
      : Math.ceil(((needed - this.#tokens) / this.perSecond) * 1000);
  }

  /** Takes a token; call only when {@link TokenBucket.waitMs} is 0. */
  take(nowMs: number): void {
    this.#refill(nowMs);
    this.#tokens -= 1;
  }
}

/** The global bucket and one bucket per node. */
export class ResizeRateLimiter {
  readonly #global: TokenBucket;
  readonly #nodes = new Map<string, TokenBucket>();
  readonly #perNode: { perSecond: number; burst: number };

  /** Creates the limiter. */
  constructor(
    global: { perSecond: number; burst: number },
    perNode: { perSecond: number; burst: number },
    nowMs: number,
  ) {
    this.#global = new TokenBucket(global.perSecond, global.burst, nowMs);
    this.#perNode = perNode;
  }

  /**
   * Takes a token from both buckets and returns 0, or returns how long to
   * wait (taking nothing). A `deferrable` resize (an elastic pod's increase, a
   * protected pod's decrease) takes one only while the node's bucket holds
   * more than half its burst: the rest is kept for protective resizes, which
   * are so served first when a node's budget runs short.
   */
  tryTake(
    node: string,
    nowMs: number,
    urgency: "protective" | "deferrable" = "protective",
  ): number {
    let bucket = this.#nodes.get(node);
    if (bucket === undefined) {
      bucket = new TokenBucket(this.#perNode.perSecond, this.#perNode.burst, nowMs);
      this.#nodes.set(node, bucket);
    }
    const needed = urgency === "deferrable" ? Math.max(1, bucket.burst / 2 + 1) : 1;
    const wait = Math.max(this.#global.waitMs(nowMs), bucket.waitMs(nowMs, needed));
    if (wait > 0) return wait;
    this.#global.take(nowMs);
    bucket.take(nowMs);
    return 0;
  }
}
