/**
 * The kubelet simulator behaves like a kubelet v1.35: CPU resources reported
 * through the cgroup conversions (pure functions, checked against the
 * kubelet's formulas), the actuation lag with a reason-less
 * `PodResizeInProgress`, `observedGeneration` on every condition, and the
 * options that turn each of these off or make conditions reason-less.
 */
import assert from "node:assert/strict";
import * as k8s from "@kubernetes/client-node";
import { Informer, kubeSource, patchPodResize, plainList, toPlain } from "../../src/k8s/mod.ts";
import {
  milliCpuToQuota,
  milliCpuToShares,
  quotaToMilliCpu,
  reportedResources,
  sharesToMilliCpu,
} from "../../src/testbed/kubelet_sim.ts";
import { KubeletSimulator, startTestbed } from "../../src/testbed/mod.ts";
import { requireOrSkip, testbedMissing } from "../_support/requirements.ts";
import { burstablePod, eventually, kubeConfig } from "./_helpers.ts";

type Condition = k8s.V1PodCondition & { observedGeneration?: number };

Deno.test("kubelet sim: the kubelet's cgroup conversions", () => {
  // MilliCPUToShares: floor(m × 1024 / 1000), at least 2, at most 262144.
  assert.equal(milliCpuToShares(0), 2);
  assert.equal(milliCpuToShares(1), 2);
  assert.equal(milliCpuToShares(100), 102);
  assert.equal(milliCpuToShares(250), 256);
  assert.equal(milliCpuToShares(1000), 1024);
  assert.equal(milliCpuToShares(300_000), 262_144);
  // sharesToMilliCPU rounds up: 102 shares are 99.6m, reported as 100m (not 99m).
  assert.equal(sharesToMilliCpu(102), 100);
  assert.equal(sharesToMilliCpu(2), 2);
  assert.equal(sharesToMilliCpu(1), 0);
  assert.equal(sharesToMilliCpu(262_144), 256_000);
  // MilliCPUToQuota: m × 100 µs over a 100 ms period, at least 1 ms; quotaToMilliCPU floors.
  assert.equal(milliCpuToQuota(0), 0);
  assert.equal(milliCpuToQuota(5), 1000);
  assert.equal(milliCpuToQuota(250), 25_000);
  assert.equal(quotaToMilliCpu(1000), 10);
  assert.equal(quotaToMilliCpu(25_000), 250);
  assert.equal(quotaToMilliCpu(1050), 10);
  assert.equal(quotaToMilliCpu(-1), 0);
  // Every request from 3m to 256 cores and every limit from 10m survive the round trip.
  for (let m = 3; m <= 256_000; m++) assert.equal(sharesToMilliCpu(milliCpuToShares(m)), m);
  for (let m = 10; m <= 300_000; m++) assert.equal(quotaToMilliCpu(milliCpuToQuota(m)), m);
});

Deno.test("kubelet sim: reported resources as convertContainerStatusResources makes them", () => {
  const report = (requests: Record<string, string>, limits: Record<string, string>) =>
    reportedResources({ requests, limits });
  // Whole millicores in canonical form: unchanged.
  assert.deepEqual(report({ cpu: "100m", memory: "64Mi" }, { cpu: "500m", memory: "64Mi" }), {
    requests: { cpu: "100m", memory: "64Mi" },
    limits: { cpu: "500m", memory: "64Mi" },
  });
  // Canonical form of what the cgroup says.
  assert.deepEqual(report({ cpu: "1000m" }, { cpu: "1.5" }), {
    requests: { cpu: "1" },
    limits: { cpu: "1500m" },
  });
  // Sub-millicore precision is rounded up (MilliValue), then converted.
  assert.deepEqual(report({ cpu: "100500u" }, { cpu: "250.5m" }), {
    requests: { cpu: "101m" },
    limits: { cpu: "251m" },
  });
  // At or below the minimum (2m requests, 10m limits) on both sides: the spec's value is kept.
  assert.deepEqual(report({ cpu: "1m" }, { cpu: "5m" }), {
    requests: { cpu: "1m" },
    limits: { cpu: "5m" },
  });
  assert.deepEqual(report({ cpu: "500u" }, { cpu: "10m" }), {
    requests: { cpu: "500u" },
    limits: { cpu: "10m" },
  });
  // Above the maximum shares the request is capped at 256 cores.
  assert.deepEqual(report({ cpu: "300" }, { cpu: "300" }), {
    requests: { cpu: "256" },
    limits: { cpu: "300" },
  });
  // No limit: none reported. Not a quantity: verbatim.
  assert.deepEqual(reportedResources({ requests: { cpu: "250m" } }), {
    requests: { cpu: "250m" },
  });
  assert.deepEqual(reportedResources({ limits: { cpu: "lots" } }), { limits: { cpu: "lots" } });
  assert.deepEqual(reportedResources(undefined), {});
});

requireOrSkip(
  "kubelet sim: lag with a reason-less PodResizeInProgress, rounding, observedGeneration, options",
  testbedMissing(),
  async (t) => {
    const testbed = await startTestbed();
    const admin = kubeConfig(testbed.identities.admin.kubeconfig);
    const core = admin.makeApiClient(k8s.CoreV1Api);
    const DELAY = 1500;
    const realistic = new KubeletSimulator(admin, { nodeName: "node-a", applyDelayMs: DELAY });
    const terse = new KubeletSimulator(admin, {
      nodeName: "node-b",
      omitReasons: true,
      observedGeneration: false,
    });
    const verbatim = new KubeletSimulator(admin, {
      nodeName: "node-c",
      rounding: false,
      applyDelayMs: 0,
    });
    const simulators = [realistic, terse, verbatim];
    const read = async (name: string) =>
      toPlain(await core.readNamespacedPod({ name, namespace: "sim" }));
    const createRunning = async (name: string, node: string, request: string, limit: string) => {
      await core.createNamespacedPod({
        namespace: "sim",
        body: burstablePod("sim", name, node, [{
          name: "app",
          cpuRequest: request,
          cpuLimit: limit,
        }]),
      });
      return await eventually(`${name} running`, async () => {
        const pod = await read(name);
        return pod.status?.phase === "Running" ? pod : undefined;
      });
    };
    try {
      await core.createNamespace({ body: { metadata: { name: "sim" } } });
      for (const s of simulators) await s.start();

      await t.step(
        "reports CPU as the cgroup has it, the allocation as the spec has it",
        async () => {
          // The API server already rounds sub-millicore CPU up to whole millicores.
          const fine = await createRunning("fine", "node-a", "100500u", "250.5m");
          assert.equal(fine.spec?.containers[0].resources?.requests?.cpu, "101m");
          assert.equal(fine.status!.containerStatuses![0].resources?.requests?.cpu, "101m");
          assert.equal(fine.status!.containerStatuses![0].resources?.limits?.cpu, "251m");
          // A request beyond the largest cpu.shares is reported as 256 cores.
          const pod = await createRunning("rounded", "node-a", "300", "400");
          const cs = pod.status!.containerStatuses![0];
          assert.equal(cs.resources?.requests?.cpu, "256");
          assert.equal(cs.resources?.limits?.cpu, "400");
          assert.equal(cs.resources?.limits?.memory, "64Mi");
          assert.equal(cs.allocatedResources?.cpu, "300");
          // …and stays put: the reported values are what the spec's values are reported as.
          await new Promise((r) => setTimeout(r, 500));
          const again = await read("rounded");
          assert.equal(again.metadata?.resourceVersion, pod.metadata?.resourceVersion);
          // Without rounding, the spec verbatim.
          const plain = await createRunning("verbatim", "node-c", "300", "400");
          assert.equal(plain.status!.containerStatuses![0].resources?.requests?.cpu, "300");
        },
      );

      await t.step(
        "an accepted resize is in progress, without a reason, for applyDelayMs; then reported",
        async () => {
          const before = await createRunning("lagging", "node-a", "250m", "500m");
          for (const c of before.status!.conditions! as Condition[]) {
            assert.equal(c.observedGeneration, 1, `${c.type} observedGeneration`);
          }
          assert.equal(before.status?.observedGeneration, 1);
          const patchedAt = Date.now();
          await patchPodResize(core, "sim", "lagging", [{ name: "app", cpuLimit: "800m" }]);
          const inProgress = await eventually("PodResizeInProgress", async () => {
            const pod = await read("lagging");
            return pod.status?.conditions?.some((c) => c.type === "PodResizeInProgress")
              ? pod
              : undefined;
          });
          const seenAt = Date.now();
          assert.ok(seenAt < patchedAt + DELAY, "in progress seen within the lag");
          const condition = inProgress.status!.conditions!.find((c) =>
            c.type === "PodResizeInProgress"
          ) as Condition;
          assert.equal(condition.status, "True");
          assert.equal(condition.reason, undefined, "no reason while actuating");
          assert.equal(condition.message, undefined);
          assert.equal(condition.observedGeneration, 2);
          assert.equal(inProgress.status?.observedGeneration, 2);
          for (const c of inProgress.status!.conditions! as Condition[]) {
            assert.equal(c.observedGeneration, 2, `${c.type} observedGeneration`);
          }
          const cs = inProgress.status!.containerStatuses![0];
          assert.equal(cs.resources?.limits?.cpu, "500m", "not actuated yet");
          // Every read within the lag still shows the old limit.
          while (Date.now() < patchedAt + DELAY - 100) {
            const pod = await read("lagging");
            // Read back before the lag ended: the kubelet cannot have reported the resize yet.
            if (Date.now() < patchedAt + DELAY) {
              assert.equal(
                pod.status!.containerStatuses![0].resources?.limits?.cpu,
                "500m",
                `reported ${Date.now() - patchedAt} ms after the resize, before the lag ended`,
              );
            }
            await new Promise((r) => setTimeout(r, 100));
          }
          const done = await eventually("resize reported", async () => {
            const pod = await read("lagging");
            return pod.status!.containerStatuses![0].resources?.limits?.cpu === "800m"
              ? pod
              : undefined;
          });
          assert.ok(
            !done.status!.conditions!.some((c) => c.type === "PodResizeInProgress"),
            "condition cleared with the new resources",
          );
          assert.deepEqual(realistic.answered.get("sim/lagging"), ["accept"]);
          assert.equal(realistic.history.get("sim/lagging")![0].generation, 2);
        },
      );

      await t.step("a resize seen during the lag is actuated with it", async () => {
        await createRunning("twice", "node-a", "250m", "500m");
        await patchPodResize(core, "sim", "twice", [{ name: "app", cpuLimit: "700m" }]);
        await eventually(
          "in progress",
          async () =>
            (await read("twice")).status?.conditions?.some((c) => c.type === "PodResizeInProgress"),
        );
        await patchPodResize(core, "sim", "twice", [{ name: "app", cpuLimit: "900m" }]);
        const pod = await eventually("latest resize reported", async () => {
          const p = await read("twice");
          return p.status!.containerStatuses![0].resources?.limits?.cpu === "900m" &&
              !p.status!.conditions!.some((c) => c.type === "PodResizeInProgress")
            ? p
            : undefined;
        });
        assert.equal(pod.status?.observedGeneration, 3);
        assert.deepEqual(
          realistic.history.get("sim/twice")!.map((a) => [a.generation, a.response]),
          [[2, "accept"], [3, "accept"]],
        );
      });

      await t.step(
        "omitReasons and observedGeneration: false give reason-less, generation-less conditions",
        async () => {
          await createRunning("terse", "node-b", "250m", "500m");
          terse.setResizeResponse("sim", "terse", "deferred");
          await patchPodResize(core, "sim", "terse", [{ name: "app", cpuLimit: "800m" }]);
          const pod = await eventually("PodResizePending", async () => {
            const p = await read("terse");
            return p.status?.conditions?.some((c) => c.type === "PodResizePending") ? p : undefined;
          });
          const pending = pod.status!.conditions!.find((c) =>
            c.type === "PodResizePending"
          ) as Condition;
          assert.equal(pending.reason, undefined);
          assert.equal(pending.message, undefined);
          for (const c of pod.status!.conditions! as Condition[]) {
            assert.equal(c.observedGeneration, undefined, `${c.type} observedGeneration`);
          }
          assert.equal(pod.status?.observedGeneration, undefined);
          // Answered once: no status rewritten over and over.
          await new Promise((r) => setTimeout(r, 500));
          assert.equal(
            (await read("terse")).metadata?.resourceVersion,
            pod.metadata?.resourceVersion,
          );
          terse.setResizeResponse("sim", "terse", "error");
          const failing = await eventually("PodResizeInProgress", async () => {
            const p = await read("terse");
            return p.status?.conditions?.find((c) => c.type === "PodResizeInProgress");
          });
          assert.equal(failing.reason, undefined);
          assert.deepEqual(terse.answered.get("sim/terse"), ["deferred", "error"]);
          terse.setResizeResponse("sim", "terse", "accept");
          await eventually("accepted", async () => {
            const p = await read("terse");
            return p.status!.containerStatuses![0].resources?.limits?.cpu === "800m" &&
              !p.status!.conditions!.some((c) => c.type.startsWith("PodResize"));
          });
        },
      );

      await t.step(
        "applyDelayMs: 0 reports a resize at once, without PodResizeInProgress",
        async () => {
          // Every version of the pod, as a watch sees them.
          const fieldSelector = "metadata.name=verbatim";
          const informer = new Informer<k8s.V1Pod>(
            kubeSource<k8s.V1Pod>(admin, {
              path: "/api/v1/namespaces/sim/pods",
              fieldSelector,
              list: plainList(() => core.listNamespacedPod({ namespace: "sim", fieldSelector })),
            }),
            { name: "verbatim", resyncMs: 0 },
          );
          const seen: k8s.V1Pod[] = [];
          informer.subscribe((e) => seen.push(e.object));
          informer.start();
          try {
            await informer.synced();
            await patchPodResize(core, "sim", "verbatim", [{ name: "app", cpuLimit: "500" }]);
            await eventually(
              "resize reported",
              () =>
                seen.some((p) => p.status!.containerStatuses![0].resources?.limits?.cpu === "500"),
            );
            await new Promise((r) => setTimeout(r, 300));
          } finally {
            await informer.stop();
          }
          assert.ok(
            seen.every((p) => !p.status!.conditions!.some((c) => c.type === "PodResizeInProgress")),
            "never in progress",
          );
          assert.deepEqual(verbatim.answered.get("sim/verbatim"), ["accept"]);
        },
      );
    } finally {
      for (const s of simulators) await s.stop();
      await testbed.stop();
    }
  },
);
