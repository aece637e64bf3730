/**
 * A token bucket asked with a clock reading older than its last one (a
 * reconcile reads the time, awaits a status write, then asks for a token)
 * must not lose tokens: at 1,000 resizes/s, a reading 1 s old emptied the
 * bucket by 1,000 and held every resize for seconds (found by `deno task
 * bench:scale`).
 */
import assert from "node:assert/strict";
import { ResizeRateLimiter, TokenBucket } from "../../src/controller/rate_limit.ts";

Deno.test("TokenBucket: an older clock reading takes no tokens away", () => {
  const bucket = new TokenBucket(1000, 1000, 0);
  bucket.take(2000);
  assert.equal(bucket.waitMs(1000), 0);
  for (let k = 0; k < 998; k++) bucket.take(1000);
  assert.equal(bucket.waitMs(1000), 0, "one token left");
});

Deno.test("ResizeRateLimiter: stale readings between fresh ones do not starve resizes", () => {
  const limiter = new ResizeRateLimiter({ perSecond: 1000, burst: 1000 }, {
    perSecond: 5,
    burst: 10,
  }, 0);
  assert.equal(limiter.tryTake("a", 10_000), 0);
  for (let k = 0; k < 50; k++) assert.equal(limiter.tryTake(`n${k}`, 9_000), 0);
});
