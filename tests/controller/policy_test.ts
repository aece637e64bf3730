import assert from "node:assert/strict";
import fc from "fast-check";
import {
  type ContainerState,
  decide,
  DEFAULT_POLICY,
  type DesiredAllocation,
  emptyMemory,
  type PodState,
  recordPatch,
} from "../../src/controller/policy.ts";

const UID = "0b6d3f4e-6f3c-4a2e-9d5e-3c1f2a7b8c9d";
const NOW = 1_000_000;

function container(over: Partial<ContainerState> = {}): ContainerState {
  return {
    name: "app",
    cpuRequestMillicores: 250,
    cpuLimitMillicores: 500,
    appliedCpuLimitMillicores: 500,
    reported: true,
    memoryRequest: "64Mi",
    memoryLimit: "128Mi",
    cpuRestartPolicy: "NotRequired",
    ...over,
  };
}

function pod(over: Partial<PodState> = {}, containers = [container()]): PodState {
  return {
    uid: UID,
    qosClass: "Burstable",
    phase: "Running",
    optedIn: true,
    allowRestart: false,
    generation: 1,
    nodeAllocatableMillicores: 4000,
    resizePending: null,
    resizeInProgress: null,
    containers,
    ...over,
  };
}

const want = (cpuLimitMillicores: number, name = "app"): DesiredAllocation => ({
  podUID: UID,
  containers: [{ name, cpuLimitMillicores }],
});
const cond = (d: ReturnType<typeof decide>, type: string) =>
  d.conditions.find((c) => c.type === type)!;

Deno.test("policy: an increase applies at once", () => {
  const d = decide(NOW, want(900), pod(), emptyMemory(NOW - 1000), DEFAULT_POLICY);
  assert.deepEqual(d.patch, [{ name: "app", cpuLimitMillicores: 900 }]);
  assert.equal(d.state, "Pending");
  assert.equal(cond(d, "Applied").reason, "ResizeRequested");
});

Deno.test("policy: a decrease waits for the cooldown, then moves at most half per step", () => {
  const held = decide(
    NOW,
    want(100),
    pod({}, [
      container({
        cpuRequestMillicores: 50,
        cpuLimitMillicores: 1000,
        appliedCpuLimitMillicores: 1000,
      }),
    ]),
    emptyMemory(NOW - 10_000),
    DEFAULT_POLICY,
  );
  assert.equal(held.patch, null);
  assert.ok(held.reasons.includes("Cooldown"));
  assert.equal(held.requeueAfterMs, 20_000);
  assert.equal(cond(held, "Applied").reason, "HeldByCooldown");
  const step = decide(
    NOW + 20_000,
    want(100),
    pod({}, [
      container({
        cpuRequestMillicores: 50,
        cpuLimitMillicores: 1000,
        appliedCpuLimitMillicores: 1000,
      }),
    ]),
    emptyMemory(NOW - 10_000),
    DEFAULT_POLICY,
  );
  assert.deepEqual(step.patch, [{ name: "app", cpuLimitMillicores: 500 }]);
  assert.equal(step.requeueAfterMs, DEFAULT_POLICY.cooldownMs);
});

Deno.test("policy: changes below the minimum (5% or 20m) are ignored", () => {
  for (const target of [510, 490, 520]) {
    const d = decide(NOW, want(target), pod(), emptyMemory(null), DEFAULT_POLICY);
    assert.equal(d.patch, null, `target ${target}`);
    assert.equal(d.state, "Applied");
  }
  assert.notEqual(decide(NOW, want(526), pod(), emptyMemory(null), DEFAULT_POLICY).patch, null);
});

Deno.test("policy: never below the request, never above the cap or the node's allocatable", () => {
  const low = decide(
    NOW,
    want(10),
    pod({}, [container({ cpuLimitMillicores: 600, appliedCpuLimitMillicores: 600 })]),
    emptyMemory(null),
    DEFAULT_POLICY,
  );
  assert.deepEqual(
    low.patch,
    [{ name: "app", cpuLimitMillicores: 300 }],
    "half step, and never below 250m later",
  );
  const lower = decide(
    NOW,
    want(10),
    pod({}, [container({ cpuLimitMillicores: 300, appliedCpuLimitMillicores: 300 })]),
    emptyMemory(null),
    DEFAULT_POLICY,
  );
  assert.deepEqual(lower.patch, [{ name: "app", cpuLimitMillicores: 250 }]);
  assert.ok(lower.reasons.includes("ClampedToRequest"));
  const high = decide(NOW, want(9000), pod(), emptyMemory(null), {
    ...DEFAULT_POLICY,
    maxLimitMillicores: 2000,
  });
  assert.deepEqual(high.patch, [{ name: "app", cpuLimitMillicores: 2000 }]);
  assert.ok(high.reasons.includes("ClampedToCap"));
  const node = decide(
    NOW,
    want(9000),
    pod({ nodeAllocatableMillicores: 3000 }),
    emptyMemory(null),
    DEFAULT_POLICY,
  );
  assert.deepEqual(node.patch, [{ name: "app", cpuLimitMillicores: 3000 }]);
});

Deno.test("policy: Guaranteed and BestEffort pods, pods not opted in and recreated pods are skipped", () => {
  for (
    const [over, reason] of [
      [{ qosClass: "Guaranteed" }, "GuaranteedQoS"],
      [{ qosClass: "BestEffort" }, "BestEffortQoS"],
      [{ optedIn: false }, "NotOptedIn"],
      [{ uid: "11111111-2222-4333-8444-555555555555" }, "PodUIDMismatch"],
    ] as [Partial<PodState>, string][]
  ) {
    const d = decide(NOW, want(900), pod(over), emptyMemory(null), DEFAULT_POLICY);
    assert.equal(d.patch, null);
    assert.equal(d.state, "Skipped");
    assert.equal(cond(d, "Skipped").reason, reason);
  }
  assert.equal(
    cond(decide(NOW, want(900), undefined, emptyMemory(null), DEFAULT_POLICY), "Skipped").reason,
    "PodNotFound",
  );
});

Deno.test("policy: RestartContainer containers are skipped unless restarts are allowed", () => {
  const restart = [container({ cpuRestartPolicy: "RestartContainer" })];
  const d = decide(NOW, want(900), pod({}, restart), emptyMemory(null), DEFAULT_POLICY);
  assert.equal(d.patch, null);
  assert.equal(cond(d, "Skipped").reason, "RestartRequired");
  assert.equal(d.state, "Skipped");
  const allowed = decide(
    NOW,
    want(900),
    pod({ allowRestart: true }, restart),
    emptyMemory(null),
    DEFAULT_POLICY,
  );
  assert.deepEqual(allowed.patch, [{ name: "app", cpuLimitMillicores: 900 }]);
});

Deno.test("policy: a Burstable pod is never driven to requests == limits on every resource", () => {
  const tight = [
    container({
      cpuRequestMillicores: 250,
      cpuLimitMillicores: 600,
      appliedCpuLimitMillicores: 600,
      memoryRequest: "64Mi",
      memoryLimit: "64Mi",
    }),
  ];
  const d = decide(NOW, want(250), pod({}, tight), emptyMemory(null), DEFAULT_POLICY);
  assert.deepEqual(d.patch, [{ name: "app", cpuLimitMillicores: 300 }], "first step");
  const last = decide(
    NOW,
    want(250),
    pod({}, [{ ...tight[0], cpuLimitMillicores: 300, appliedCpuLimitMillicores: 300 }]),
    emptyMemory(null),
    DEFAULT_POLICY,
  );
  assert.deepEqual(last.patch, [{ name: "app", cpuLimitMillicores: 251 }]);
  assert.ok(last.reasons.includes("QoSGuard"));
});

Deno.test("policy: Infeasible stops, backs off exponentially, and never retries the same value", () => {
  const infeasiblePod = pod({
    nodeAllocatableMillicores: 10_000,
    generation: 2,
    resizePending: { reason: "Infeasible", message: "too big", observedGeneration: 2 },
  }, [container({ cpuLimitMillicores: 5000, appliedCpuLimitMillicores: 500 })]);
  const first = decide(NOW, want(5000), infeasiblePod, emptyMemory(NOW - 100), DEFAULT_POLICY);
  assert.equal(first.state, "Failed");
  assert.equal(cond(first, "ResizePending").reason, "Infeasible");
  assert.equal(first.memory.infeasible?.attempts, 1);
  assert.equal(first.memory.infeasible?.untilMs, NOW + 30_000);
  // Same generation seen again: no new attempt counted.
  const again = decide(NOW + 1000, want(3000), infeasiblePod, first.memory, DEFAULT_POLICY);
  assert.equal(again.patch, null, "no new value during the backoff");
  assert.ok(again.reasons.includes("Backoff"));
  // After the backoff a different value is tried; the same one never is.
  const same = decide(NOW + 31_000, want(5000), infeasiblePod, first.memory, DEFAULT_POLICY);
  assert.equal(same.patch, null);
  const other = decide(NOW + 31_000, want(3000), infeasiblePod, first.memory, DEFAULT_POLICY);
  assert.deepEqual(other.patch, [{ name: "app", cpuLimitMillicores: 3000 }]);
  // A second Infeasible doubles the backoff.
  const second = decide(
    NOW + 40_000,
    want(3000),
    {
      ...infeasiblePod,
      generation: 3,
      resizePending: { reason: "Infeasible", message: "still", observedGeneration: 3 },
    },
    first.memory,
    DEFAULT_POLICY,
  );
  assert.equal(second.memory.infeasible?.attempts, 2);
  assert.equal(second.memory.infeasible?.untilMs, NOW + 40_000 + 60_000);
});

Deno.test("policy: Deferred waits without re-patching the same value; Error backs off; silence is reported", () => {
  const inflight = [container({ cpuLimitMillicores: 900, appliedCpuLimitMillicores: 500 })];
  const deferred = decide(
    NOW,
    want(900),
    pod({
      generation: 2,
      resizePending: { reason: "Deferred", message: "busy", observedGeneration: 2 },
    }, inflight),
    emptyMemory(NOW),
    DEFAULT_POLICY,
  );
  assert.equal(deferred.patch, null);
  assert.equal(deferred.state, "Pending");
  assert.equal(cond(deferred, "ResizePending").reason, "Deferred");
  const error = decide(
    NOW,
    want(1200),
    pod({
      generation: 2,
      resizeInProgress: { reason: "Error", message: "cgroup write failed", observedGeneration: 2 },
    }, inflight),
    emptyMemory(NOW),
    DEFAULT_POLICY,
  );
  assert.equal(error.state, "Failed");
  assert.equal(cond(error, "ResizePending").reason, "ResizeError");
  assert.equal(error.patch, null, "held during the error backoff");
  const retried = decide(
    NOW + 11_000,
    want(1200),
    pod({
      generation: 2,
      resizeInProgress: { reason: "Error", message: "x", observedGeneration: 2 },
    }, inflight),
    error.memory,
    DEFAULT_POLICY,
  );
  assert.deepEqual(retried.patch, [{ name: "app", cpuLimitMillicores: 1200 }]);
  const silent = decide(
    NOW + 61_000,
    want(900),
    pod({ generation: 2 }, inflight),
    recordPatch(emptyMemory(null), NOW),
    DEFAULT_POLICY,
  );
  assert.equal(cond(silent, "ResizePending").reason, "NotConfirmed");
  const waiting = decide(
    NOW + 1000,
    want(900),
    pod({ generation: 2 }, inflight),
    recordPatch(emptyMemory(null), NOW),
    DEFAULT_POLICY,
  );
  assert.equal(cond(waiting, "ResizePending").reason, "InProgress");
  assert.equal(waiting.requeueAfterMs, 59_000);
});

Deno.test("policy: a pod not running yet is pending, not skipped", () => {
  const d = decide(
    NOW,
    want(900),
    pod({ phase: "Pending" }, [container({ reported: false, appliedCpuLimitMillicores: null })]),
    emptyMemory(null),
    DEFAULT_POLICY,
  );
  assert.equal(d.patch, null);
  assert.equal(d.state, "Pending");
});

Deno.test("policy property: a patch is never below a request, above the caps, or a QoS change; decreases respect cooldown and step", () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.record({
          request: fc.integer({ min: 1, max: 2000 }),
          limitExtra: fc.integer({ min: 0, max: 4000 }),
          target: fc.integer({ min: 0, max: 10_000 }),
          memEqual: fc.boolean(),
        }),
        { minLength: 1, maxLength: 4 },
      ),
      fc.integer({ min: 0, max: 120_000 }),
      fc.option(fc.integer({ min: 500, max: 8000 }), { nil: null }),
      (specs, sinceResize, maxLimit) => {
        const containers = specs.map((s, i) =>
          container({
            name: `c${i}`,
            cpuRequestMillicores: s.request,
            cpuLimitMillicores: s.request + s.limitExtra,
            appliedCpuLimitMillicores: s.request + s.limitExtra,
            memoryRequest: "64Mi",
            memoryLimit: s.memEqual ? "64Mi" : "128Mi",
          })
        );
        const desired: DesiredAllocation = {
          podUID: UID,
          containers: specs.map((s, i) => ({ name: `c${i}`, cpuLimitMillicores: s.target })),
        };
        const config = { ...DEFAULT_POLICY, maxLimitMillicores: maxLimit };
        const d = decide(NOW, desired, pod({}, containers), emptyMemory(NOW - sinceResize), config);
        if (d.patch === null) return;
        const next = new Map(d.patch.map((p) => [p.name, p.cpuLimitMillicores]));
        for (const c of containers) {
          const n = next.get(c.name);
          if (n === undefined) continue;
          assert.ok(n >= c.cpuRequestMillicores!, "never below the request");
          const cap = Math.max(c.cpuRequestMillicores!, Math.min(4000, maxLimit ?? Infinity)) + 1;
          assert.ok(
            n <= cap || n < c.cpuLimitMillicores!,
            "never raised above the caps (a limit above them only steps down)",
          );
          if (n < c.cpuLimitMillicores!) {
            assert.ok(sinceResize >= DEFAULT_POLICY.cooldownMs, "decrease only after the cooldown");
            assert.ok(n >= Math.ceil(c.cpuLimitMillicores! / 2), "at most half per step");
          }
        }
        const guaranteed = containers.every((c) =>
          (next.get(c.name) ?? c.cpuLimitMillicores) === c.cpuRequestMillicores &&
          c.memoryRequest === c.memoryLimit
        );
        assert.equal(guaranteed, false, "never Guaranteed");
      },
    ),
    { numRuns: 500 },
  );
});
