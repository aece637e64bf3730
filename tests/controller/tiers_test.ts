/**
 * The resize policy by tier, and the resize budgets: an elastic pod gives CPU
 * back at once and takes it in steps; a pod's resizes within a minute are
 * bounded, the last two kept for protective changes; a node's token bucket
 * serves protective resizes before deferrable ones. Pure; no cluster.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  type ContainerState,
  decide,
  DEFAULT_POLICY,
  type DesiredAllocation,
  emptyMemory,
  type PodMemory,
  type PodState,
  recordPatch,
  RESIZE_BUDGET_WINDOW_MS,
  ResizeRateLimiter,
} from "../../src/controller/mod.ts";
import { memoryFromStatus, statusFor } from "../../src/controller/observe.ts";

const UID = "0b6d3f4e-6f3c-4a2e-9d5e-3c1f2a7b8c9d";
const NOW = 10_000_000;
const BASELINE = { baseline: { recordedAtMs: NOW - 3_600_000, limits: { app: 500 } } };

function pod(limit: number, tier: "protected" | "elastic", over: Partial<PodState> = {}): PodState {
  const container: ContainerState = {
    name: "app",
    cpuRequestMillicores: 100,
    cpuLimitMillicores: limit,
    appliedCpuLimitMillicores: limit,
    reported: true,
    memoryRequest: "64Mi",
    memoryLimit: "128Mi",
    ineligible: null,
  };
  return {
    uid: UID,
    nodeName: "node-a",
    phase: "Running",
    ineligible: null,
    kubeletSupportsResize: true,
    minLimit: { kind: "request" },
    tier,
    generation: 1,
    nodeAllocatableMillicores: 2000,
    resizePending: null,
    resizeInProgress: null,
    containers: [container],
    ...over,
  };
}

const want = (cpuLimitMillicores: number): DesiredAllocation => ({
  podUID: UID,
  nodeName: "node-a",
  containers: [{ name: "app", cpuLimitMillicores }],
});

Deno.test("elastic: a decrease applies at once and all the way, right after a resize", () => {
  const memory = recordPatch(emptyMemory(), NOW - 1000);
  const d = decide(NOW, want(150), pod(1200, "elastic"), memory, DEFAULT_POLICY, BASELINE);
  assert.deepEqual(d.patch, [{ name: "app", cpuLimitMillicores: 150 }]);
  assert.equal(d.urgency, "protective");
  // The same decrease of a protected pod waits for the cooldown.
  const held = decide(NOW, want(150), pod(1200, "protected"), memory, DEFAULT_POLICY, BASELINE);
  assert.equal(held.patch, null);
  assert.ok(held.reasons.includes("Cooldown"));
});

Deno.test("elastic: an increase waits after the last resize, then rises by at most a step of the node", () => {
  const memory = recordPatch(emptyMemory(), NOW - 4000);
  const early = decide(NOW, want(1500), pod(200, "elastic"), memory, DEFAULT_POLICY, BASELINE);
  assert.equal(early.patch, null);
  assert.ok(early.reasons.includes("ElasticRamp"));
  assert.equal(early.requeueAfterMs, DEFAULT_POLICY.elasticIncreaseDelayMs - 4000);
  const later = NOW + 6000;
  const step = decide(later, want(1500), pod(200, "elastic"), memory, DEFAULT_POLICY, BASELINE);
  // Half the node's 2000m per step.
  assert.deepEqual(step.patch, [{ name: "app", cpuLimitMillicores: 1200 }]);
  assert.equal(step.urgency, "deferrable");
  assert.equal(step.requeueAfterMs, DEFAULT_POLICY.elasticIncreaseDelayMs);
  // A protected pod's increase applies at once, whole, and is protective.
  const up = decide(NOW, want(1500), pod(200, "protected"), memory, DEFAULT_POLICY, BASELINE);
  assert.deepEqual(up.patch, [{ name: "app", cpuLimitMillicores: 1500 }]);
  assert.equal(up.urgency, "protective");
});

Deno.test("budget: the third and fourth resizes in a minute are only for protective changes; a fifth waits", () => {
  let memory: PodMemory = emptyMemory();
  for (const ago of [50_000, 40_000]) memory = recordPatch(memory, NOW - ago);
  // Elastic increase (deferrable): 2 resizes in the window already; held.
  const up = decide(NOW, want(800), pod(400, "elastic"), memory, DEFAULT_POLICY, BASELINE);
  assert.equal(up.patch, null);
  assert.ok(up.reasons.includes("ResizeBudget"));
  assert.equal(up.requeueAfterMs, 10_000, "when the oldest leaves the window");
  // A protected pod's increase (protective) takes the third.
  const raise = decide(NOW, want(800), pod(400, "protected"), memory, DEFAULT_POLICY, BASELINE);
  assert.deepEqual(raise.patch, [{ name: "app", cpuLimitMillicores: 800 }]);
  memory = recordPatch(memory, NOW - 30_000);
  // Elastic decrease (protective): the last slot is its.
  const down = decide(NOW, want(150), pod(400, "elastic"), memory, DEFAULT_POLICY, BASELINE);
  assert.deepEqual(down.patch, [{ name: "app", cpuLimitMillicores: 150 }]);
  memory = recordPatch(memory, NOW);
  const again = decide(NOW + 1000, want(120), pod(400, "elastic"), memory, DEFAULT_POLICY, {
    ...BASELINE,
  });
  assert.equal(again.patch, null, "four in the minute: even a protective change waits");
  assert.equal(again.conditions.find((c) => c.type === "Applied")?.reason, "HeldByResizeBudget");
  // A restore is never held.
  const restore = decide(NOW + 1000, want(120), pod(150, "elastic"), memory, DEFAULT_POLICY, {
    ...BASELINE,
    restore: { reason: "Deleted", message: "the PodAllocation is being deleted" },
  });
  assert.deepEqual(restore.patch, [{ name: "app", cpuLimitMillicores: 500 }]);
});

Deno.test("property: whatever the agent asks, no pod is resized more than the budget in any minute", () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.record({
          gapMs: fc.integer({ min: 200, max: 20_000 }),
          limit: fc.integer({ min: 100, max: 2000 }),
        }),
        { minLength: 1, maxLength: 60 },
      ),
      fc.constantFrom<"protected" | "elastic">("protected", "elastic"),
      (asks, tier) => {
        let now = NOW;
        let limit = 500;
        let memory: PodMemory = emptyMemory();
        const resizes: number[] = [];
        for (const ask of asks) {
          now += ask.gapMs;
          const d = decide(now, want(ask.limit), pod(limit, tier), memory, DEFAULT_POLICY, {
            baseline: { recordedAtMs: NOW - 3_600_000, limits: { app: 500 } },
          });
          memory = d.memory;
          if (d.patch !== null) {
            limit = d.patch[0].cpuLimitMillicores;
            memory = recordPatch(memory, now);
            resizes.push(now);
          }
        }
        for (let i = 0; i < resizes.length; i++) {
          const inWindow = resizes.filter((t) =>
            t > resizes[i] - RESIZE_BUDGET_WINDOW_MS && t <= resizes[i]
          );
          assert.ok(
            inWindow.length <= DEFAULT_POLICY.maxResizesPerPodPerMinute,
            `${inWindow.length} resizes within a minute`,
          );
        }
      },
    ),
    { numRuns: 300 },
  );
});

Deno.test("budget: the recent resizes survive a change of leader through status", () => {
  let memory: PodMemory = emptyMemory();
  for (const ago of [70_000, 30_000, 5_000]) memory = recordPatch(memory, NOW - ago);
  const status = statusFor(
    { state: "Applied", conditions: [], memory },
    undefined,
    1,
    undefined,
    new Date(NOW),
    null,
  );
  assert.equal(status.recentResizeTimes?.length, 2, "only the last minute's are kept");
  const restored = memoryFromStatus(status);
  assert.deepEqual(restored.recentResizesAtMs, [NOW - 30_000, NOW - 5_000]);
});

Deno.test("budget: a resize no status recorded (the leader died after its patch) counts for the next leader", () => {
  // Status written at pod generation 5 with three resizes in the window; the old leader then
  // patched twice more (generation 7) and died before writing status.
  let memory: PodMemory = emptyMemory();
  for (const ago of [40_000, 30_000, 20_000]) memory = recordPatch(memory, NOW - ago);
  const status = statusFor(
    { state: "Applied", conditions: [], memory },
    { metadata: { generation: 5 } },
    1,
    undefined,
    new Date(NOW - 10_000),
    null,
  );
  assert.equal(status.podGeneration, 5);
  const later = NOW + 1000;
  const rebuilt = memoryFromStatus(status, { generation: 7, nowMs: later });
  assert.deepEqual(rebuilt.recentResizesAtMs, [
    NOW - 40_000,
    NOW - 30_000,
    NOW - 20_000,
    later,
    later,
  ]);
  assert.equal(rebuilt.lastResizeAtMs, later, "the cooldown counts from the unrecorded resize");
  // Five resizes in the minute: even a protective change waits.
  const raise = decide(later, want(800), pod(400, "protected"), rebuilt, DEFAULT_POLICY, BASELINE);
  assert.equal(raise.patch, null);
  assert.ok(raise.reasons.includes("ResizeBudget"));
  // The same generation as recorded, or an older one (a recreated pod): nothing added.
  assert.deepEqual(
    memoryFromStatus(status, { generation: 5, nowMs: later }).recentResizesAtMs,
    memoryFromStatus(status).recentResizesAtMs,
  );
  assert.equal(
    memoryFromStatus(status, { generation: 1, nowMs: later }).recentResizesAtMs?.length,
    3,
  );
  // What the new leader writes next carries them on, at the generation it saw.
  const next = statusFor(
    { state: "Applied", conditions: [], memory: rebuilt },
    { metadata: { generation: 7 } },
    1,
    status,
    new Date(later),
    null,
  );
  assert.equal(next.podGeneration, 7);
  assert.equal(
    memoryFromStatus(next, { generation: 7, nowMs: later + 1 }).recentResizesAtMs?.length,
    5,
  );
});

Deno.test("node budget: a deferrable resize leaves half the node's burst to protective ones", () => {
  const limiter = new ResizeRateLimiter(
    { perSecond: 100, burst: 100 },
    { perSecond: 1, burst: 4 },
    0,
  );
  assert.equal(limiter.tryTake("n", 0, "deferrable"), 0, "4 tokens: more than half of 4");
  assert.equal(limiter.tryTake("n", 0, "deferrable"), 0, "3 tokens: still more than half");
  assert.ok(limiter.tryTake("n", 0, "deferrable") > 0, "2 tokens: kept for protective resizes");
  assert.equal(limiter.tryTake("n", 0, "protective"), 0);
  assert.equal(limiter.tryTake("n", 0, "protective"), 0);
  assert.equal(limiter.tryTake("n", 0, "protective"), 1000, "the bucket is empty");
});
