import assert from "node:assert/strict";
import fc from "fast-check";
import {
  type BaselineLimits,
  cacheBehind,
  type ContainerState,
  decide,
  DEFAULT_POLICY,
  type DesiredAllocation,
  emptyMemory,
  nodeAgreement,
  type PodState,
  recordPatch,
} from "../../src/controller/policy.ts";
import { memoryFromStatus, statusFor } from "../../src/controller/observe.ts";

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
    ineligible: null,
    ...over,
  };
}

function pod(over: Partial<PodState> = {}, containers = [container()]): PodState {
  return {
    uid: UID,
    nodeName: "node-a",
    phase: "Running",
    ineligible: null,
    kubeletSupportsResize: true,
    minLimit: { kind: "request" },
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
  nodeName: "node-a",
  containers: [{ name, cpuLimitMillicores }],
});
const cond = (d: ReturnType<typeof decide>, type: string) =>
  d.conditions.find((c) => c.type === type)!;
/** A pod MBCAS first saw an hour ago, with `limits` declared then. */
const seen = (limits: Record<string, number> = { app: 500 }): { baseline: BaselineLimits } => ({
  baseline: { recordedAtMs: NOW - 3_600_000, limits },
});

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

/** The default policy, but a protected pod's limit comes down by any amount above the minimum change. */
const ALL_DECREASES = { ...DEFAULT_POLICY, protectedMinDecreaseFraction: 0 };

Deno.test("policy: a protected pod's limit comes down only by at least 25% of itself; up by any change above the minimum", () => {
  const at = (limit: number) =>
    pod({}, [container({ cpuLimitMillicores: limit, appliedCpuLimitMillicores: limit })]);
  // 1000m → 760m is 24%: kept (a limit is a cap; the cut may be undone at the next burst).
  const small = decide(
    NOW,
    want(760),
    at(1000),
    emptyMemory(null),
    DEFAULT_POLICY,
    seen({ app: 1000 }),
  );
  assert.equal(small.patch, null);
  assert.equal(small.state, "Applied");
  // 25%: applied (in the usual half steps after the cooldown).
  const big = decide(
    NOW,
    want(750),
    at(1000),
    emptyMemory(null),
    DEFAULT_POLICY,
    seen({ app: 1000 }),
  );
  assert.deepEqual(big.patch, [{ name: "app", cpuLimitMillicores: 750 }]);
  // Off: the 5% minimum alone.
  assert.deepEqual(
    decide(NOW, want(900), at(1000), emptyMemory(null), ALL_DECREASES, seen({ app: 1000 })).patch,
    [{ name: "app", cpuLimitMillicores: 900 }],
  );
  // Increases are not held by it.
  assert.deepEqual(
    decide(NOW, want(1100), at(1000), emptyMemory(null), DEFAULT_POLICY, seen({ app: 1000 })).patch,
    [{ name: "app", cpuLimitMillicores: 1100 }],
  );
});

Deno.test("policy: never below the request, never above the cap or the node's allocatable", () => {
  const low = decide(
    NOW,
    want(10),
    pod({}, [container({ cpuLimitMillicores: 600, appliedCpuLimitMillicores: 600 })]),
    emptyMemory(null),
    DEFAULT_POLICY,
    seen({ app: 600 }),
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
    ALL_DECREASES,
    seen({ app: 600 }),
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

Deno.test("policy: pods MBCAS does not manage, recreated pods and old kubelets are skipped, even with a baseline", () => {
  const ineligible = (reason: NonNullable<PodState["ineligible"]>["reason"]) => ({
    ineligible: { reason, message: reason },
  });
  for (
    const [over, reason, context] of [
      [ineligible("GuaranteedQoS"), "GuaranteedQoS", seen()],
      [ineligible("BestEffortQoS"), "BestEffortQoS", seen()],
      [ineligible("MirrorPod"), "MirrorPod", seen()],
      [ineligible("Terminating"), "Terminating", seen()],
      [ineligible("NotOptedIn"), "NotOptedIn", {}],
      [{ uid: "11111111-2222-4333-8444-555555555555" }, "PodUIDMismatch", seen()],
      [{ kubeletSupportsResize: false }, "KubeletTooOld", seen()],
      [{ nodeName: "node-b" }, "NodeMismatch", {}],
    ] as [Partial<PodState>, string, { baseline?: BaselineLimits }][]
  ) {
    const d = decide(NOW, want(900), pod(over), emptyMemory(null), DEFAULT_POLICY, context);
    assert.equal(d.patch, null, reason);
    assert.equal(d.state, "Skipped");
    assert.equal(cond(d, "Skipped").reason, reason);
  }
  assert.equal(
    cond(decide(NOW, want(900), undefined, emptyMemory(null), DEFAULT_POLICY), "Skipped").reason,
    "PodNotFound",
  );
});

Deno.test("policy: another node's allocation is never applied; what MBCAS changed goes back", () => {
  const changed = pod({ nodeName: "node-b" }, [
    container({ cpuLimitMillicores: 900, appliedCpuLimitMillicores: 900 }),
  ]);
  const d = decide(NOW, want(1200), changed, emptyMemory(null), DEFAULT_POLICY, seen());
  assert.deepEqual(d.patch, [{ name: "app", cpuLimitMillicores: 500 }], "the declared limit");
  assert.equal(d.restoring, true);
  assert.match(cond(d, "Skipped").message, /computed on node node-a, the pod runs on node-b/);
  assert.deepEqual(nodeAgreement(want(1200), changed), {
    type: "NodeAgreement",
    status: "False",
    reason: "NodeMismatch",
    message: "the allocation was computed on node node-a, the pod runs on node-b",
  });
  assert.equal(nodeAgreement(want(1200), pod()).status, "True");
  assert.equal(nodeAgreement(want(1200), pod()).reason, "PodOnNode");
  assert.equal(nodeAgreement(want(1200), pod({ nodeName: null })).status, "Unknown");
  assert.equal(nodeAgreement(want(1200), undefined).reason, "PodNotScheduled");
  // The status records it after the decision's conditions.
  const status = statusFor(
    { ...d, nodeAgreement: nodeAgreement(want(1200), changed) },
    undefined,
    3,
    undefined,
    new Date(NOW),
    null,
  );
  assert.deepEqual(
    status.conditions?.map((c) => [c.type, c.status, c.reason]).at(-1),
    ["NodeAgreement", "False", "NodeMismatch"],
  );
});

Deno.test("policy: containers MBCAS may not resize are skipped, the others of the pod still are", () => {
  const restart = container({
    ineligible: { reason: "RestartRequired", message: "app: CPU resizePolicy is RestartContainer" },
  });
  const d = decide(NOW, want(900), pod({}, [restart]), emptyMemory(null), DEFAULT_POLICY);
  assert.equal(d.patch, null);
  assert.equal(cond(d, "Skipped").reason, "RestartRequired");
  assert.equal(d.state, "Skipped");
  const two = decide(
    NOW,
    {
      podUID: UID,
      nodeName: "node-a",
      containers: [{ name: "app", cpuLimitMillicores: 900 }, {
        name: "b",
        cpuLimitMillicores: 900,
      }],
    },
    pod({}, [restart, container({ name: "b" })]),
    emptyMemory(null),
    DEFAULT_POLICY,
  );
  assert.deepEqual(two.patch, [{ name: "b", cpuLimitMillicores: 900 }]);
  assert.equal(cond(two, "Skipped").reason, "SomeContainersSkipped");
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
  const d = decide(NOW, want(250), pod({}, tight), emptyMemory(null), DEFAULT_POLICY, seen());
  assert.deepEqual(d.patch, [{ name: "app", cpuLimitMillicores: 300 }], "first step");
  const last = decide(
    NOW,
    want(250),
    pod({}, [{ ...tight[0], cpuLimitMillicores: 300, appliedCpuLimitMillicores: 300 }]),
    emptyMemory(null),
    ALL_DECREASES,
    seen(),
  );
  assert.deepEqual(last.patch, [{ name: "app", cpuLimitMillicores: 251 }]);
  assert.ok(last.reasons.includes("QoSGuard"));
  // Memory quantities are compared by value, as the API server does: 1Gi is 1024Mi.
  const spelled = decide(
    NOW,
    want(250),
    pod({}, [{
      ...tight[0],
      cpuLimitMillicores: 300,
      appliedCpuLimitMillicores: 300,
      memoryRequest: "1Gi",
      memoryLimit: "1024Mi",
    }]),
    emptyMemory(null),
    ALL_DECREASES,
    seen(),
  );
  assert.deepEqual(spelled.patch, [{ name: "app", cpuLimitMillicores: 251 }]);
  assert.ok(spelled.reasons.includes("QoSGuard"));
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
            memoryRequest: "65536Ki",
            memoryLimit: s.memEqual ? "64Mi" : "128Mi",
          })
        );
        const desired: DesiredAllocation = {
          podUID: UID,
          nodeName: "node-a",
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
          c.memoryLimit === "64Mi"
        );
        assert.equal(guaranteed, false, "never Guaranteed");
      },
    ),
    { numRuns: 500 },
  );
});

Deno.test("policy: a newly seen pod is not cut at once: the cooldown counts from first sight, and the baseline is returned to record", () => {
  const big = [container({ cpuLimitMillicores: 1000, appliedCpuLimitMillicores: 1000 })];
  const first = decide(NOW, want(300), pod({}, big), emptyMemory(null), DEFAULT_POLICY);
  assert.equal(first.patch, null);
  assert.ok(first.reasons.includes("Cooldown"));
  assert.deepEqual(first.baseline, { recordedAtMs: NOW, limits: { app: 1000 } });
  assert.equal(first.requeueAfterMs, DEFAULT_POLICY.cooldownMs);
  const later = decide(
    NOW + DEFAULT_POLICY.cooldownMs,
    want(300),
    pod({}, big),
    emptyMemory(null),
    DEFAULT_POLICY,
    { baseline: first.baseline },
  );
  assert.deepEqual(later.patch, [{ name: "app", cpuLimitMillicores: 500 }]);
  // Increases never wait.
  const up = decide(NOW, want(1500), pod({}, big), emptyMemory(null), DEFAULT_POLICY);
  assert.deepEqual(up.patch, [{ name: "app", cpuLimitMillicores: 1500 }]);
});

Deno.test("policy: opted out, deleted or stale: the declared limits come back at once, either way, then Restored", () => {
  const squeezed = pod({}, [
    container({ cpuLimitMillicores: 260, appliedCpuLimitMillicores: 260 }),
  ]);
  const raised = pod({}, [
    container({ cpuLimitMillicores: 2000, appliedCpuLimitMillicores: 2000 }),
  ]);
  const cases = [
    [{ ...squeezed, ineligible: { reason: "NotOptedIn" as const, message: "opted out" } }, {}],
    [squeezed, { restore: { reason: "Deleted" as const, message: "deleting" } }],
    [raised, { restore: { reason: "Stale" as const, message: "stale" } }],
  ] as const;
  for (const [state, extra] of cases) {
    const d = decide(
      NOW,
      want(300),
      state,
      recordPatch(emptyMemory(null), NOW - 1000),
      DEFAULT_POLICY,
      {
        ...seen({ app: 800 }),
        ...extra,
      },
    );
    assert.deepEqual(d.patch, [{ name: "app", cpuLimitMillicores: 800 }], JSON.stringify(extra));
    assert.equal(d.restoring, true);
    assert.equal(d.state, "Pending");
    assert.equal(cond(d, "Applied").reason, "Restoring");
  }
  const back = pod({}, [container({ cpuLimitMillicores: 800, appliedCpuLimitMillicores: 800 })]);
  const done = decide(NOW, want(300), back, emptyMemory(null), DEFAULT_POLICY, {
    ...seen({ app: 800 }),
    restore: { reason: "Stale", message: "stale" },
  });
  assert.equal(done.patch, null);
  assert.equal(done.state, "Restored");
  assert.equal(cond(done, "Skipped").reason, "Stale");
  // Nothing recorded: MBCAS never changed the pod, nothing to give back.
  const never = decide(NOW, want(300), squeezed, emptyMemory(null), DEFAULT_POLICY, {
    restore: { reason: "Deleted", message: "deleting" },
  });
  assert.equal(never.patch, null);
  assert.equal(never.state, "Skipped");
  // A restore goes through an error backoff: the declared limits were in force before.
  const errored = decide(
    NOW,
    want(300),
    pod({
      generation: 2,
      resizeInProgress: { reason: "Error", message: "x", observedGeneration: 2 },
    }, [container({ cpuLimitMillicores: 260, appliedCpuLimitMillicores: 500 })]),
    emptyMemory(null),
    DEFAULT_POLICY,
    { ...seen({ app: 800 }), restore: { reason: "Stale", message: "stale" } },
  );
  assert.deepEqual(errored.patch, [{ name: "app", cpuLimitMillicores: 800 }]);
});

Deno.test("policy: the min-cpu-limit rule bounds decreases from the declared limit", () => {
  const at = (minLimit: PodState["minLimit"]) =>
    decide(
      NOW,
      want(260),
      pod({ minLimit }, [container({ cpuLimitMillicores: 700, appliedCpuLimitMillicores: 700 })]),
      emptyMemory(null),
      { ...DEFAULT_POLICY, maxStepDownFraction: 1 },
      seen({ app: 800 }),
    );
  assert.deepEqual(at({ kind: "request" }).patch, [{ name: "app", cpuLimitMillicores: 260 }]);
  assert.deepEqual(at({ kind: "fraction", fraction: 0.5 }).patch, [{
    name: "app",
    cpuLimitMillicores: 400,
  }]);
  const raiseOnly = at({ kind: "declared" });
  assert.deepEqual(
    raiseOnly.patch,
    [{ name: "app", cpuLimitMillicores: 800 }],
    "back up to the declared",
  );
  assert.ok(raiseOnly.reasons.includes("ClampedToMinLimit"));
});

Deno.test("policy: no measurement, no resize; one container not running does not park the others", () => {
  const unmeasured = decide(
    NOW,
    {
      podUID: UID,
      nodeName: "node-a",
      containers: [{ name: "app", cpuLimitMillicores: 300, measured: false }],
    },
    pod(),
    emptyMemory(null),
    DEFAULT_POLICY,
    seen(),
  );
  assert.equal(unmeasured.patch, null);
  assert.equal(cond(unmeasured, "Skipped").reason, "NoMeasurement");
  const crashLooping = decide(
    NOW,
    {
      podUID: UID,
      nodeName: "node-a",
      containers: [{ name: "app", cpuLimitMillicores: 900 }, {
        name: "crash",
        cpuLimitMillicores: 900,
      }],
    },
    pod({}, [
      container(),
      container({ name: "crash", reported: false, appliedCpuLimitMillicores: null }),
    ]),
    emptyMemory(null),
    DEFAULT_POLICY,
  );
  assert.deepEqual(crashLooping.patch, [{ name: "app", cpuLimitMillicores: 900 }]);
  assert.match(cond(crashLooping, "Skipped").message, /crash: the kubelet reports no resources/);
});

Deno.test("policy: resize conditions without a reason: in progress is in progress, pending is Deferred", () => {
  const inflight = [container({ cpuLimitMillicores: 900, appliedCpuLimitMillicores: 500 })];
  const progressing = decide(
    NOW,
    want(900),
    pod({
      generation: 2,
      resizeInProgress: { reason: "", message: "", observedGeneration: 2 },
    }, inflight),
    recordPatch(emptyMemory(null), NOW - 100),
    DEFAULT_POLICY,
  );
  assert.equal(cond(progressing, "ResizePending").reason, "InProgress");
  assert.equal(progressing.state, "Pending");
  const pendingNoReason = decide(
    NOW,
    want(900),
    pod(
      { generation: 2, resizePending: { reason: "", message: "", observedGeneration: 2 } },
      inflight,
    ),
    recordPatch(emptyMemory(null), NOW - 100),
    DEFAULT_POLICY,
  );
  assert.equal(cond(pendingNoReason, "ResizePending").reason, "Deferred");
});

Deno.test("policy: an Infeasible value is remembered through status, so a restarted or new leader never retries it", () => {
  const infeasiblePod = pod({
    nodeAllocatableMillicores: 10_000,
    generation: 2,
    resizePending: { reason: "Infeasible", message: "too big", observedGeneration: 2 },
  }, [container({ cpuLimitMillicores: 5000, appliedCpuLimitMillicores: 500 })]);
  const first = decide(
    NOW,
    want(5000),
    infeasiblePod,
    emptyMemory(NOW - 100),
    DEFAULT_POLICY,
    seen(),
  );
  const status = statusFor(
    { ...first, memory: first.memory },
    undefined,
    1,
    undefined,
    new Date(NOW),
    null,
  );
  assert.equal(status.infeasible?.containers[0].cpuLimit, "5");
  assert.ok(status.baseline !== undefined, "the baseline is recorded with it");
  const rebuilt = memoryFromStatus(status);
  const same = decide(NOW + 3_600_000, want(5000), infeasiblePod, rebuilt, DEFAULT_POLICY, seen());
  assert.equal(same.patch, null);
  assert.ok(same.reasons.includes("KnownInfeasible"));
  const during = decide(NOW + 1000, want(3000), infeasiblePod, rebuilt, DEFAULT_POLICY, seen());
  assert.equal(during.patch, null, "the backoff survives too");
});

Deno.test("policy: the pod cache is behind until it shows the generation of our own patch, for that pod", () => {
  const memory = recordPatch(emptyMemory(null), NOW, { uid: UID, generation: 3 });
  assert.equal(cacheBehind(memory, { uid: UID, generation: 2 }), true);
  assert.equal(cacheBehind(memory, { uid: UID, generation: 3 }), false);
  assert.equal(cacheBehind(memory, { uid: UID, generation: 4 }), false);
  assert.equal(cacheBehind(memory, { uid: "another", generation: 1 }), false, "a recreated pod");
  assert.equal(cacheBehind(emptyMemory(null), { uid: UID, generation: 1 }), false);
});
