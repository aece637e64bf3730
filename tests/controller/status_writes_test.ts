/**
 * Status writes the controller saves (found by `deno task bench:scale`):
 *
 * - resizes that only aged out of the budget's minute are no reason to write
 *   (each resize used to cost a second status write a minute later: 4,672
 *   writes in the 60 s after the churn phases, 78/s at rest);
 * - a reconcile between a status write and its watch event compares with what
 *   was written, not with the cache that does not show it yet (1.84 status
 *   writes per resize at 200 changes/s).
 *
 * Pure functions of plain data; no API server.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  lastKnownStatus,
  memoryFromStatus,
  statusChanged,
  statusFor,
} from "../../src/controller/observe.ts";
import {
  emptyMemory,
  type PodMemory,
  recordPatch,
  RESIZE_BUDGET_WINDOW_MS,
} from "../../src/controller/policy.ts";
import type { PodAllocationStatus } from "../../src/api/mod.ts";

const NOW = Date.parse("2026-12-02T12:00:00Z");

function statusAt(memory: PodMemory, nowMs: number, previous?: PodAllocationStatus) {
  return statusFor(
    { state: "Applied", conditions: [], memory },
    { metadata: { generation: 4 } },
    1,
    previous,
    new Date(nowMs),
    null,
  );
}

function inWindow(times: number[], nowMs: number): number[] {
  return times.filter((t) => t > nowMs - RESIZE_BUDGET_WINDOW_MS && t <= nowMs);
}

Deno.test("status: resizes that only aged out of the minute do not change status", () => {
  let memory = emptyMemory();
  for (const ago of [50_000, 20_000]) memory = recordPatch(memory, NOW - ago);
  const written = statusAt(memory, NOW);
  assert.equal(written.recentResizeTimes?.length, 2);
  // 15 s later the first resize has left the window, 45 s later both have.
  for (const later of [15_000, 45_000, 3_600_000]) {
    const next = statusAt(memory, NOW + later, written);
    assert.equal(statusChanged(written, next), false, `${later} ms later`);
  }
});

Deno.test("status: a new resize writes the window afresh, without the aged-out ones", () => {
  let memory = emptyMemory();
  for (const ago of [50_000, 20_000]) memory = recordPatch(memory, NOW - ago);
  const written = statusAt(memory, NOW);
  const later = NOW + 30_000;
  memory = recordPatch(memory, later);
  const next = statusAt(memory, later, written);
  assert.equal(statusChanged(written, next), true);
  assert.deepEqual(
    next.recentResizeTimes?.map((t) => Date.parse(t)),
    [NOW - 20_000, later],
  );
});

Deno.test("status: any other change still writes, and drops the aged-out resizes", () => {
  let memory = emptyMemory();
  memory = recordPatch(memory, NOW - 50_000);
  const written = statusAt(memory, NOW);
  const next = statusFor(
    { state: "Pending", conditions: [], memory },
    { metadata: { generation: 4 } },
    1,
    written,
    new Date(NOW + 20_000),
    null,
  );
  assert.equal(statusChanged(written, next), true);
  assert.equal(next.recentResizeTimes, undefined);
});

Deno.test("status: property: the recorded resizes always give the budget's window, written or not", () => {
  fc.assert(
    fc.property(
      fc.uniqueArray(fc.integer({ min: 0, max: 200_000 }), { maxLength: 6 }),
      fc.integer({ min: 0, max: 200_000 }),
      fc.integer({ min: 0, max: 200_000 }),
      (agos, firstWriteAfter, secondWriteAfter) => {
        const start = NOW - 200_000;
        let memory = emptyMemory();
        for (const t of [...agos].sort((a, b) => a - b)) memory = recordPatch(memory, start + t);
        const t1 = start + Math.max(...agos, 0) + firstWriteAfter;
        const t2 = t1 + secondWriteAfter;
        const first = statusAt(memory, t1);
        const second = statusAt(memory, t2, first);
        const kept = statusChanged(first, second) ? second : first;
        // What a new leader reads at t2 is what the budget counts at t2.
        const recorded = memoryFromStatus(kept).recentResizesAtMs ?? [];
        assert.deepEqual(
          inWindow(recorded, t2),
          inWindow(memory.recentResizesAtMs ?? [], t2),
        );
        // Nothing but the clock moved between the two: never a second write.
        assert.equal(statusChanged(first, second), false);
      },
    ),
    { numRuns: 500 },
  );
});

const cached: PodAllocationStatus = { observedGeneration: 1, state: "Pending", conditions: [] };
const mine: PodAllocationStatus = { observedGeneration: 1, state: "Applied", conditions: [] };

Deno.test("status: while the cache shows the version a write was based on, compare with the write", () => {
  assert.equal(lastKnownStatus({ basedOn: "17", status: mine }, "17", cached), mine);
});

Deno.test("status: once the cache moved on, compare with the cache", () => {
  assert.equal(lastKnownStatus({ basedOn: "17", status: mine }, "18", cached), cached);
  assert.equal(lastKnownStatus(undefined, "18", cached), cached);
  assert.equal(lastKnownStatus(undefined, undefined, undefined), undefined);
});
