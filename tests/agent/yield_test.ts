/**
 * The weight rule of yielding elastic pods (src/agent/yield.ts): examples and
 * properties over every state, with the agent's shell simulated as a loop
 * that applies the actions to a cgroup and a PodAllocation.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { type WeightAction, weightAction, type WeightState } from "../../src/agent/yield.ts";

const V1 = 2;

Deno.test("yield: an elastic pod's weight is recorded first, lowered next, then left alone", () => {
  const base = { yields: true, remembered: null, lowest: V1 };
  assert.deepEqual(weightAction({ ...base, recorded: null, current: 102 }), {
    kind: "record",
    original: 102,
  });
  assert.deepEqual(weightAction({ ...base, recorded: 102, current: 102 }), { kind: "lower" });
  assert.deepEqual(weightAction({ ...base, recorded: 102, current: 2 }), { kind: "none" });
  // The kubelet set a new weight (its requests changed): record that one.
  assert.deepEqual(weightAction({ ...base, recorded: 102, current: 512 }), {
    kind: "record",
    original: 512,
  });
  // Its PodAllocation was deleted and recreated while it was lowered: the remembered weight, not the lowest.
  assert.deepEqual(weightAction({ ...base, recorded: null, remembered: 102, current: 2 }), {
    kind: "record",
    original: 102,
  });
});

Deno.test("yield: a pod that stops yielding gets its weight back, then its record is dropped", () => {
  const base = { yields: false, remembered: null, lowest: V1 };
  assert.deepEqual(weightAction({ ...base, recorded: 102, current: 2 }), {
    kind: "restore",
    original: 102,
  });
  assert.deepEqual(weightAction({ ...base, recorded: 102, current: 102 }), { kind: "forget" });
  assert.deepEqual(weightAction({ ...base, recorded: null, remembered: 307, current: 2 }), {
    kind: "restore",
    original: 307,
  });
  // Never touched: nothing to do, whatever its weight (a BestEffort pod's is the lowest).
  assert.deepEqual(weightAction({ ...base, recorded: null, current: 2 }), { kind: "none" });
  assert.deepEqual(weightAction({ ...base, recorded: null, current: 1024 }), { kind: "none" });
  // A pod whose kubelet weight is the lowest anyway: nothing to write back.
  assert.deepEqual(weightAction({ ...base, recorded: 2, current: 2 }), { kind: "forget" });
});

const weight = fc.integer({ min: 2, max: 4096 });
const stateArb: fc.Arbitrary<WeightState> = fc.record({
  yields: fc.boolean(),
  recorded: fc.option(weight, { nil: null }),
  remembered: fc.option(weight, { nil: null }),
  current: fc.oneof(fc.constant(V1), weight),
  lowest: fc.constant(V1),
});

/** The agent's shell in miniature: the PodAllocation's record, the cgroup, its memory. */
function settle(start: WeightState, steps = 6): WeightState {
  let s = { ...start };
  for (let i = 0; i < steps; i++) {
    const action: WeightAction = weightAction(s);
    switch (action.kind) {
      case "record":
        s = { ...s, recorded: action.original, remembered: action.original };
        break;
      case "lower":
        s = { ...s, current: s.lowest };
        break;
      case "restore":
        s = { ...s, current: action.original };
        break;
      case "forget":
        s = { ...s, recorded: null, remembered: null };
        break;
    }
  }
  return s;
}

Deno.test("property: a pod is never lowered before its PodAllocation records a weight other than the lowest it was lowered from", () => {
  fc.assert(
    fc.property(stateArb, (state) => {
      const action = weightAction(state);
      if (action.kind === "lower") {
        assert.ok(state.recorded !== null && state.current === state.recorded);
      }
      if (action.kind === "restore") {
        assert.ok(!state.yields && state.current === state.lowest);
        assert.notEqual(action.original, state.lowest);
      }
    }),
    { numRuns: 2000 },
  );
});

Deno.test("property: from any state, a few reconciliations reach the fixed point: lowered and recorded, or the kubelet's weight with no record", () => {
  fc.assert(
    fc.property(stateArb, weight, (state, kubelet) => {
      // The kubelet's weight is the record when there is one (that is what the record says).
      const start = { ...state, current: state.current === V1 ? V1 : kubelet };
      const end = settle(start);
      assert.deepEqual(weightAction(end), { kind: "none" });
      if (start.yields) {
        assert.equal(end.current, V1);
        assert.notEqual(end.recorded, null);
        // What was recorded is what will be restored: the kubelet's weight when the pod was found above the lowest.
        if (start.current !== V1 && start.recorded === null && start.remembered === null) {
          assert.equal(end.recorded, kubelet);
        }
      } else {
        assert.equal(end.recorded, null);
        const original = start.recorded ?? start.remembered;
        if (start.current === V1 && original !== null && original !== V1) {
          assert.equal(end.current, original);
        }
      }
      // Applying the rule once more changes nothing.
      assert.deepEqual(settle(end, 1), end);
    }),
    { numRuns: 2000 },
  );
});
