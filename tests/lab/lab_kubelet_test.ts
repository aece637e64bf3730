/**
 * The lab kubelet's cgroups are the ones the agent's cgroup module
 * discovers (real kernel, root), its runtime starts, resizes and stops real
 * processes in them, and its pure parts (the kubelet's CPU formulas, QoS
 * directory, workload annotations) are right.
 */
import assert from "node:assert/strict";
import type * as k8s from "@kubernetes/client-node";
import { detectLayout, discover, readSample } from "../../src/cgroup/mod.ts";
import {
  LabCgroups,
  labCgroupsMissing,
  quotaFromLimit,
  sharesFromRequest,
  weightFromShares,
} from "../../src/lab/cgroups.ts";
import { type KernelResize, LabRuntime, qosDir, workloadArgs } from "../../src/lab/kubelet.ts";
import { containerID } from "../../src/testbed/mod.ts";
import { requireOrSkip } from "../_support/requirements.ts";

Deno.test("lab cgroups: the kubelet's CPU formulas", () => {
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

function pod(
  name: string,
  resources: k8s.V1ResourceRequirements,
  annotations: Record<string, string> = {},
): k8s.V1Pod {
  return {
    metadata: { name, namespace: "lab", uid: crypto.randomUUID(), annotations },
    spec: { containers: [{ name: "app", image: "x", resources }] },
  };
}

Deno.test("lab kubelet: QoS directory and workload annotations", () => {
  assert.equal(qosDir(pod("g", { limits: { cpu: "1", memory: "64Mi" } })), "");
  assert.equal(
    qosDir(pod("b", { requests: { cpu: "100m" }, limits: { cpu: "200m", memory: "64Mi" } })),
    "burstable",
  );
  assert.equal(qosDir(pod("e", {})), "besteffort");
  assert.deepEqual(
    workloadArgs(pod("w", {}, {
      "lab.mbcas.io/workload": "batch",
      "lab.mbcas.io/args": " --parallelism  2 ",
    })),
    { kind: "batch", extra: ["--parallelism", "2"] },
  );
  assert.deepEqual(workloadArgs(pod("i", {})), { kind: "idle", extra: [] });
  assert.throws(
    () => workloadArgs(pod("bad", {}, { "lab.mbcas.io/workload": "fast" })),
    /lab\/bad: annotation lab\.mbcas\.io\/workload="fast" is not one of latency, bursty, batch, idle/,
  );
});

requireOrSkip(
  "lab kubelet (real kernel): its cgroups are what the cgroup module discovers; it starts, resizes and stops real processes",
  labCgroupsMissing(),
  async () => {
    const cgroups = new LabCgroups();
    const results = await Deno.makeTempDir();
    const resizes: KernelResize[] = [];
    const runtime = new LabRuntime({
      nodeName: "lab-node",
      allocatableMillicores: 1000,
      cgroups,
      resultsDir: results,
      epochMs: Date.now(),
      seed: 1,
      onResize: (r) => resizes.push(r),
    });
    const idle = { "lab.mbcas.io/workload": "idle" };
    const burstable = pod("burstable", {
      requests: { cpu: "250m", memory: "64Mi" },
      limits: { cpu: "400m", memory: "64Mi" },
    }, idle);
    const guaranteed = pod("guaranteed", {
      requests: { cpu: "500m", memory: "64Mi" },
      limits: { cpu: "500m", memory: "64Mi" },
    }, idle);
    const besteffort = pod("besteffort", {}, idle);
    try {
      for (const p of [burstable, guaranteed, besteffort]) await runtime.startPod(p);
      const again = await runtime.startPod(burstable);
      assert.equal(again.get("app"), containerID(burstable, "app"), "idempotent");

      const root = cgroups.bindMount();
      const layout = detectLayout(root);
      const found = discover(layout);
      const lab = found.pods.filter((p) =>
        [burstable, guaranteed, besteffort].some((x) => x.metadata!.uid === p.podUID)
      );
      assert.equal(lab.length, 3, `discovered ${JSON.stringify(found.pods.map((p) => p.podUID))}`);
      const byUid = new Map(lab.map((p) => [p.podUID, p]));
      assert.equal(byUid.get(burstable.metadata!.uid!)!.qos, "burstable");
      assert.equal(byUid.get(guaranteed.metadata!.uid!)!.qos, "guaranteed");
      assert.equal(byUid.get(besteffort.metadata!.uid!)!.qos, "besteffort");
      const container = byUid.get(burstable.metadata!.uid!)!.containers.find((c) =>
        c.id === containerID(burstable, "app")
      );
      assert.ok(container !== undefined, "the container is found by the id the status reports");
      const read = readSample(layout, container.relativePath, performance.now());
      assert.equal(read.status, "ok");
      if (read.status !== "ok") return;
      assert.equal(read.sample.shares, 256, "shares from the 250m request");
      assert.equal(read.sample.quotaMicros, 40_000, "quota from the 400m limit");
      const path = runtime.containerPaths().get("lab/burstable")!.get("app")!;
      assert.equal(cgroups.pids(path).length, 1, "the workload runs inside its cgroup");

      // A resize rewrites the quota; requests beyond the node are refused.
      burstable.spec!.containers[0].resources!.limits!.cpu = "700m";
      assert.equal(await runtime.resizePod(burstable), "accept");
      assert.equal(cgroups.readLimit(path), 700);
      assert.deepEqual(resizes.map((r) => [r.pod, r.fromMillicores, r.toMillicores]), [[
        "lab/burstable",
        400,
        700,
      ]]);
      burstable.spec!.containers[0].resources!.requests!.cpu = "600m";
      assert.equal(await runtime.resizePod(burstable), "deferred", "600m + 500m > 1000m");
      burstable.spec!.containers[0].resources!.requests!.cpu = "1500m";
      assert.equal(await runtime.resizePod(burstable), "infeasible");
      assert.equal(cgroups.readLimit(path), 700, "refused resizes change nothing");

      const pid = cgroups.pids(path)[0];
      await runtime.stopPod(burstable);
      assert.throws(() => Deno.kill(pid, "SIGCONT"), "the process is gone");
      assert.equal(runtime.containerPaths().has("lab/burstable"), false);
    } finally {
      await runtime.stopAll();
      await cgroups.cleanup();
      await Deno.remove(results, { recursive: true });
    }
    assert.deepEqual(cgroups.leftovers(), []);
  },
);
