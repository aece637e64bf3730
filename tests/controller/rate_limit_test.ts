import assert from "node:assert/strict";
import { ResizeRateLimiter, TokenBucket } from "../../src/controller/mod.ts";
import { Counter, Gauge, Histogram, Registry } from "../../src/metrics/mod.ts";

Deno.test("token bucket: a burst, then the refill rate", () => {
  const bucket = new TokenBucket(10, 3, 0);
  for (let i = 0; i < 3; i++) {
    assert.equal(bucket.waitMs(0), 0);
    bucket.take(0);
  }
  assert.equal(bucket.waitMs(0), 100, "one token per 100 ms at 10/s");
  assert.equal(bucket.waitMs(50), 50);
  assert.equal(bucket.waitMs(100), 0);
});

Deno.test("rate limiter: the global bucket and each node's bucket both apply", () => {
  const limiter = new ResizeRateLimiter(
    { perSecond: 100, burst: 3 },
    { perSecond: 1, burst: 2 },
    0,
  );
  assert.equal(limiter.tryTake("a", 0), 0);
  assert.equal(limiter.tryTake("a", 0), 0);
  assert.equal(limiter.tryTake("a", 0), 1000, "node a is out of tokens");
  assert.equal(limiter.tryTake("b", 0), 0, "node b has its own bucket");
  assert.ok(limiter.tryTake("c", 0) > 0, "the global burst of 3 is spent");
  assert.equal(limiter.tryTake("c", 10), 0);
});

Deno.test("metrics: Prometheus text format with labels, histograms and memory gauges", () => {
  const registry = new Registry();
  const counter = registry.add(new Counter("x_total", "X."));
  const gauge = registry.add(new Gauge("y", "Y."));
  const histogram = registry.add(new Histogram("z_seconds", "Z.", [0.1, 1]));
  counter.inc({ result: "ok" });
  counter.inc({ result: "ok" }, 2);
  gauge.set(5);
  histogram.observe(0.5, { kind: 'a"b' });
  const text = registry.render();
  assert.match(text, /# TYPE x_total counter\nx_total\{result="ok"\} 3/);
  assert.match(text, /^y 5$/m);
  assert.match(text, /z_seconds_bucket\{kind="a\\"b",le="0.1"\} 0/);
  assert.match(text, /z_seconds_bucket\{kind="a\\"b",le="1"\} 1/);
  assert.match(text, /z_seconds_bucket\{kind="a\\"b",le="\+Inf"\} 1/);
  assert.match(text, /z_seconds_count\{kind="a\\"b"\} 1/);
  assert.match(text, /^process_resident_memory_bytes \d+$/m);
});

Deno.test("metrics: collectors refresh gauges before each render; a failing one spoils nothing", () => {
  const registry = new Registry();
  const gauge = registry.add(new Gauge("depth", "D."));
  let depth = 1;
  registry.onRender(() => gauge.set(depth));
  registry.onRender(() => {
    throw new Error("broken collector");
  });
  assert.match(registry.render(), /^depth 1$/m);
  depth = 7;
  assert.match(registry.render(), /^depth 7$/m, "read again at the next render");
});
