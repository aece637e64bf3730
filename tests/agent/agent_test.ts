// deno-lint-ignore-file no-explicit-any -- PodAllocations are read as loose JSON
/**
 * The agent against the real API server, the kubelet simulator and a cgroup
 * fixture tree whose counters the test advances in real time.
 */
import assert from "node:assert/strict";
import * as k8s from "@kubernetes/client-node";
import { NodeAgent } from "../../src/agent/mod.ts";
import { GROUP, PLURAL, VERSION } from "../../src/api/mod.ts";
import { bareContainerID } from "../../src/cgroup/mod.ts";
import { MANAGED_LABEL } from "../../src/controller/mod.ts";
import {
  applyManifests,
  KubeletSimulator,
  MANIFESTS,
  startTestbed,
  waitForCrd,
} from "../../src/testbed/mod.ts";
import { CgroupFixture } from "../cgroup/_fixtures.ts";
import { burstablePod, eventually, kubeConfig } from "../k8s/_helpers.ts";
import { requireOrSkip, testbedMissing } from "../_support/requirements.ts";

requireOrSkip(
  "agent: publishes PodAllocations from kernel signals, follows demand, cleans up",
  testbedMissing(),
  async (t) => {
    const testbed = await startTestbed();
    const admin = kubeConfig(testbed.identities.admin.kubeconfig);
    const core = admin.makeApiClient(k8s.CoreV1Api);
    const custom = admin.makeApiClient(k8s.CustomObjectsApi);
    const simulator = new KubeletSimulator(admin, {
      nodeName: "node-a",
      allocatableMillicores: 4000,
    });
    const fixture = CgroupFixture.create("v2-systemd");
    let agent: NodeAgent | undefined;
    // Containers whose counters advance in real time: id -> { usage, throttled } millicores.
    const load = new Map<string, { usage: number; throttled: number }>();
    const ticker = setInterval(() => {
      for (const [id, rate] of load) {
        fixture.advance(id, {
          usageNanos: rate.usage * 100_000, // millicores × 100 ms
          throttledNanos: rate.throttled * 100_000,
          periods: 1,
          throttledPeriods: rate.throttled > 0 ? 1 : 0,
        });
      }
    }, 100);
    const pa = async (name: string) => {
      try {
        return await custom.getNamespacedCustomObject({
          group: GROUP,
          version: VERSION,
          namespace: "shop",
          plural: PLURAL,
          name,
        }) as any;
      } catch {
        return undefined;
      }
    };
    /** Creates a pod, waits until it runs, and lays out its cgroups in the fixture. */
    const runPod = async (body: k8s.V1Pod, qos: "burstable" | "guaranteed") => {
      await core.createNamespacedPod({ namespace: "shop", body });
      const pod = await eventually(`${body.metadata!.name} running`, async () => {
        const p = await core.readNamespacedPod({ name: body.metadata!.name!, namespace: "shop" });
        return p.status?.phase === "Running" ? p : undefined;
      });
      const ids = pod.status!.containerStatuses!.map((s) => bareContainerID(s.containerID!));
      fixture.addPod({
        uid: pod.metadata!.uid!,
        qos,
        containers: ids.map((id) => ({ id, shares: 256, quotaMicros: 50_000 })),
      });
      return ids;
    };
    try {
      await applyManifests(admin, [MANIFESTS.crd, ...MANIFESTS.rbac]);
      await waitForCrd(admin, `${PLURAL}.${GROUP}`);
      await core.createNamespace({
        body: { metadata: { name: "shop", labels: { [MANAGED_LABEL]: "true" } } },
      });
      await simulator.start();
      const [webId] = await runPod(
        burstablePod("shop", "web", "node-a", [{
          name: "app",
          cpuRequest: "250m",
          cpuLimit: "500m",
          memory: "64Mi",
        }]),
        "burstable",
      );
      await runPod({
        metadata: { name: "fixed", namespace: "shop" },
        spec: {
          nodeName: "node-a",
          containers: [{
            name: "app",
            image: "pause",
            resources: {
              requests: { cpu: "1", memory: "64Mi" },
              limits: { cpu: "1", memory: "64Mi" },
            },
          }],
        },
      }, "guaranteed");
      load.set(webId, { usage: 500, throttled: 200 });
      // The agent runs with its own least-privilege identity.
      agent = new NodeAgent(kubeConfig(testbed.identities.agent.kubeconfig), {
        nodeName: "node-a",
        cgroupRoot: fixture.root,
        samplingIntervalMs: 200,
        marketIntervalMs: 1000,
      });
      await agent.start();

      await t.step(
        "a PodAllocation appears for the managed pod only, from usage plus throttled time",
        async () => {
          const web = await eventually("web allocation", () => pa("web"));
          assert.equal(await pa("fixed"), undefined, "the Guaranteed pod is unmanaged");
          const c = web.spec.containers[0];
          // The only bidder gets the node minus the unmanaged pod's 1 core (surplus distributed).
          assert.equal(web.spec.market.capacityMillicores, 3000);
          assert.equal(c.cpuLimit, "3");
          assert.ok(
            Math.abs(c.evidence.demandMillicores - 700 * 1.15) < 100,
            `demand ${c.evidence.demandMillicores}`,
          );
          assert.equal(c.evidence.floorMillicores, 250);
          assert.equal(web.metadata.ownerReferences[0].kind, "Pod");
          assert.equal(
            web.spec.podUID,
            (await core.readNamespacedPod({ name: "web", namespace: "shop" })).metadata?.uid,
          );
        },
      );

      await t.step(
        "a contended node splits capacity by weight; a demand step up shows within a market interval",
        async () => {
          const [batchId] = await runPod(
            burstablePod("shop", "batch", "node-a", [{
              name: "app",
              cpuRequest: "250m",
              cpuLimit: "500m",
            }]),
            "burstable",
          );
          load.set(batchId, { usage: 500, throttled: 2500 }); // wants 3 cores
          const split = await eventually("batch allocation and a contended market", async () => {
            const [web, batch] = [await pa("web"), await pa("batch")];
            return web?.spec.market.contended && batch ? { web, batch } : undefined;
          }, 20_000);
          const webLimit = split.web.spec.containers[0].cpuLimit;
          const batchLimit = split.batch.spec.containers[0].cpuLimit;
          assert.ok(split.web.spec.market.price > 0);
          // Equal weights: web gets its demand (~805m), batch the rest of 3000m.
          const m = (q: string) => q.endsWith("m") ? Number(q.slice(0, -1)) : Number(q) * 1000;
          assert.ok(
            Math.abs(m(webLimit) + m(batchLimit) - 3000) <= 1,
            `${webLimit} + ${batchLimit}`,
          );
          load.set(webId, { usage: 500, throttled: 1000 }); // web now wants 1.5 cores
          const stepAt = performance.now();
          await eventually(
            "web's allocation rises",
            async () =>
              m((await pa("web"))?.spec.containers[0].cpuLimit ?? "0") > m(webLimit) + 400,
            10_000,
          );
          assert.ok(performance.now() - stepAt < 3000, "within about one market interval");
        },
      );

      await t.step("deleting a pod removes its PodAllocation", async () => {
        await core.deleteNamespacedPod({ name: "batch", namespace: "shop", gracePeriodSeconds: 0 });
        await eventually(
          "batch allocation gone",
          async () => (await pa("batch")) === undefined,
          30_000,
        );
      });
    } finally {
      clearInterval(ticker);
      await agent?.stop();
      await simulator.stop();
      await testbed.stop();
      fixture.cleanup();
    }
  },
);
