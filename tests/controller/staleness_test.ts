/**
 * The pure rules behind the controller's freshness gauges and restores:
 * {@link staleness}, {@link freshnessSpec} and {@link resizePendingReason}.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import type * as k8s from "@kubernetes/client-node";
import { freshnessSpec, resizePendingReason, staleness } from "../../src/controller/mod.ts";

const T0 = Date.parse("2026-12-02T00:00:00Z");
const spec = (computedAgoMs: number, intervalSeconds?: number) => ({
  nodeName: "node-a",
  market: {
    computedAt: new Date(T0 - computedAgoMs).toISOString(),
    ...(intervalSeconds === undefined ? {} : { intervalSeconds }),
  },
});

Deno.test("staleness: fresh within staleAfterIntervals × interval, never under 30 s", () => {
  // 12 intervals of 5 s = 60 s.
  assert.equal(staleness(spec(59_000, 5), undefined, 12, T0), null);
  assert.equal(staleness(spec(60_000, 5), undefined, 12, T0), null);
  assert.equal(staleness(spec(61_000, 5), undefined, 12, T0)?.reason, "Stale");
  // 12 intervals of 1 s would be 12 s: the window is 30 s at least.
  assert.equal(staleness(spec(29_000, 1), undefined, 12, T0), null);
  assert.match(
    staleness(spec(31_000, 1), undefined, 12, T0)!.message,
    /node node-a was refreshed for 31 s \(limit 30 s\)/,
  );
  // The interval defaults to 5 s.
  assert.equal(staleness(spec(61_000), undefined, 12, T0)?.reason, "Stale");
});

Deno.test("staleness: a recent heartbeat keeps an old allocation fresh", () => {
  assert.equal(staleness(spec(600_000, 5), T0 - 10_000, 12, T0), null);
  assert.match(
    staleness(spec(600_000, 5), T0 - 90_000, 12, T0)!.message,
    /refreshed for 90 s \(limit 60 s\)/,
  );
});

Deno.test("staleness: fresh exactly when the newer of allocation and heartbeat is inside the window", () => {
  fc.assert(fc.property(
    fc.integer({ min: 0, max: 3_600_000 }),
    fc.option(fc.integer({ min: 0, max: 3_600_000 }), { nil: undefined }),
    fc.integer({ min: 1, max: 60 }),
    fc.integer({ min: 1, max: 30 }),
    (computedAgo, beatAgo, intervalSeconds, intervals) => {
      const window = Math.max(intervals * intervalSeconds * 1000, 30_000);
      const youngest = Math.min(computedAgo, beatAgo ?? Infinity);
      const result = staleness(
        spec(computedAgo, intervalSeconds),
        beatAgo === undefined ? undefined : T0 - beatAgo,
        intervals,
        T0,
      );
      assert.equal(result === null, youngest <= window);
    },
  ));
});

Deno.test("freshnessSpec: reads the fields of an unvalidated spec, null for anything malformed", () => {
  assert.deepEqual(freshnessSpec(spec(0, 5)), spec(0, 5));
  assert.deepEqual(freshnessSpec({ ...spec(0), extra: 1 }), spec(0));
  for (
    const bad of [
      undefined,
      null,
      "x",
      { market: spec(0).market },
      { nodeName: "n" },
      { nodeName: "n", market: { computedAt: "yesterday" } },
      { nodeName: "n", market: { computedAt: new Date(T0).toISOString(), intervalSeconds: "5" } },
      { nodeName: 7, market: spec(0).market },
    ]
  ) {
    assert.equal(freshnessSpec(bad), null, JSON.stringify(bad));
  }
});

Deno.test("resizePendingReason: the reason of a true PodResizePending condition only", () => {
  const pod = (conditions: k8s.V1PodCondition[]): k8s.V1Pod => ({ status: { conditions } });
  assert.equal(resizePendingReason(pod([])), null);
  assert.equal(resizePendingReason({}), null);
  assert.equal(
    resizePendingReason(pod([{ type: "PodResizePending", status: "True", reason: "Infeasible" }])),
    "Infeasible",
  );
  assert.equal(
    resizePendingReason(pod([{ type: "PodResizePending", status: "False", reason: "Deferred" }])),
    null,
  );
  assert.equal(
    resizePendingReason(pod([{ type: "PodResizeInProgress", status: "True", reason: "" }])),
    null,
  );
});
