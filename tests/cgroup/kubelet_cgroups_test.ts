/**
 * The kubelet's CPU formulas as the kubelet-style cgroup trees of the
 * real-kernel cgroup tests write them (tests/_support/kubelet_cgroups.ts).
 */
import assert from "node:assert/strict";
import {
  quotaFromLimit,
  sharesFromRequest,
  weightFromShares,
} from "../_support/kubelet_cgroups.ts";

Deno.test("kubelet-style cgroup trees: the kubelet's CPU formulas", () => {
  assert.equal(sharesFromRequest(0), 2);
  assert.equal(sharesFromRequest(1), 2);
  assert.equal(sharesFromRequest(250), 256);
  assert.equal(sharesFromRequest(1000), 1024);
  assert.equal(weightFromShares(2), 1);
  assert.equal(weightFromShares(1024), 39);
  assert.equal(weightFromShares(262144), 10000);
  assert.equal(quotaFromLimit(null), null);
  assert.equal(quotaFromLimit(150), 15000);
  assert.equal(quotaFromLimit(1), 1000, "the kernel's minimum quota");
});
