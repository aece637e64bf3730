/**
 * The short fault campaign (`deno task faults --short`), as CI runs it: on the
 * test bed (kube-apiserver, etcd, the kubelet simulator, a cgroup fixture
 * tree) with the agent and two controller replicas as processes. The control
 * measure, then every fault once, in seed 1's order; no invariant may break
 * and the control and every fault must recover. The table is printed for the log.
 */
import assert from "node:assert/strict";
import { requireOrSkip, testbedMissing } from "../_support/requirements.ts";
import { FAULTS, runCampaign, SHORT } from "./campaign.ts";

requireOrSkip(
  "faults: the short campaign breaks no invariant and recovers from every fault",
  testbedMissing(),
  async () => {
    const report = await runCampaign({ ...SHORT, seed: 1, log: (line) => console.log(line) });
    console.log(report.table);
    assert.deepEqual(
      report.results.filter((r) => !r.control).map((r) => r.fault).sort(),
      [...FAULTS].sort(),
      "every fault injected once",
    );
    assert.deepEqual(
      report.violations.map((v) => `${v.key} ${v.invariant}: ${v.detail}`),
      [],
      `no invariant violations (logs: ${report.logDir})`,
    );
    const unrecovered = report.results.filter((r) => r.recoveryMs === null).map((r) => r.fault);
    assert.deepEqual(
      unrecovered,
      [],
      `the control and every fault recovered from (logs: ${report.logDir})`,
    );
  },
);
