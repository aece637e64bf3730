/**
 * statusChanged ignores key order: the API server returns a custom
 * resource's fields sorted, so comparing insertion-ordered JSON made the
 * controller rewrite every PodAllocation's unchanged status on every resync
 * (found by `deno task bench:scale`).
 */
import assert from "node:assert/strict";
import { statusChanged } from "../../src/controller/observe.ts";
import type { PodAllocationStatus } from "../../src/api/mod.ts";

/** A deep copy with every object's keys sorted, as the API server serves a custom resource. */
function asServed<T>(value: T): T {
  const sort = (v: unknown): unknown =>
    Array.isArray(v) ? v.map(sort) : v !== null && typeof v === "object"
      ? Object.fromEntries(
        Object.keys(v).sort().map((k) => [k, sort((v as Record<string, unknown>)[k])]),
      )
      : v;
  return sort(value) as T;
}

const status: PodAllocationStatus = {
  observedGeneration: 2,
  state: "Applied",
  containers: [{ name: "app", cpuLimit: "1", cpuRequest: "250m" }],
  conditions: [{
    type: "Applied",
    status: "True",
    reason: "Applied",
    message: "limits in force",
    observedGeneration: 2,
    lastTransitionTime: "2025-01-01T00:00:00Z",
  }],
  podGeneration: 3,
};

Deno.test("statusChanged: the same status with the API server's key order is unchanged", () => {
  assert.equal(statusChanged(asServed(status), status), false);
});

Deno.test("statusChanged: a changed value is still a change, whatever the key order", () => {
  assert.equal(statusChanged(asServed(status), { ...status, podGeneration: 4 }), true);
  assert.equal(
    statusChanged(asServed(status), {
      ...status,
      conditions: [{ ...status.conditions![0], message: "other" }],
    }),
    true,
  );
});
