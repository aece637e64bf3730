/**
 * The agent against the real API server, the kubelet simulator and a cgroup
 * fixture tree whose counters the test advances in real time.
 */
import assert from "node:assert/strict";
import * as k8s from "@kubernetes/client-node";
import { NodeAgent } from "../../src/agent/mod.ts";
import { burstablePod, eventually, guaranteedPod, kubeConfig } from "../k8s/_helpers.ts";
import { requireOrSkip, testbedMissing } from "../_support/requirements.ts";
import { millicores as m, NodeLab, NS } from "./_node_lab.ts";

requireOrSkip(
  "agent: publishes PodAllocations from kernel signals, follows demand, cleans up",
  testbedMissing(),
  async (t) => {
    const lab = await NodeLab.start(4000);
    let agent: NodeAgent | undefined;
    try {
      const [webId] = await lab.runPod(
        burstablePod(NS, "web", "node-a", [{
          name: "app",
          cpuRequest: "250m",
          cpuLimit: "500m",
          memory: "64Mi",
        }]),
      );
      await lab.runPod(guaranteedPod(NS, "fixed", "node-a", "1"), "guaranteed");
      lab.load.set(webId, { usage: 500, throttled: 200 });
      // The agent runs with its own least-privilege identity.
      agent = new NodeAgent(kubeConfig(lab.testbed.identities.agent.kubeconfig), {
        nodeName: "node-a",
        cgroupRoot: lab.fixture.root,
        samplingIntervalMs: 200,
        marketIntervalMs: 1000,
      });
      await agent.start();

      await t.step(
        "a PodAllocation appears for the managed pod only, from usage plus throttled time",
        async () => {
          const web = await eventually("web allocation", () => lab.pa("web"));
          assert.equal(await lab.pa("fixed"), undefined, "the Guaranteed pod is unmanaged");
          const c = web.spec.containers[0];
          // The market is the node minus the unmanaged pod's 1 core; the only
          // bidder, protected, is guaranteed its target and runs under it: no
          // idle CPU is handed to a pod that shows no unmet demand.
          assert.equal(web.spec.market.capacityMillicores, 3000);
          assert.equal(web.spec.tier, "protected");
          assert.ok(
            Math.abs(c.evidence.demandMillicores - 700 * 1.15) < 100,
            `demand ${c.evidence.demandMillicores}`,
          );
          assert.equal(m(c.cpuLimit), c.evidence.demandMillicores, "limit = target");
          assert.equal(c.cpuGuarantee, c.cpuLimit);
          assert.equal(c.evidence.floorMillicores, 250);
          assert.equal(c.evidence.measured, true);
          assert.equal(web.spec.market.intervalSeconds, 1);
          assert.equal(web.metadata.ownerReferences[0].kind, "Pod");
          assert.equal(
            web.spec.podUID,
            (await lab.core.readNamespacedPod({ name: "web", namespace: NS })).metadata?.uid,
          );
        },
      );

      await t.step(
        "a contended node splits capacity by weight; a demand step up shows within a market interval",
        async () => {
          const [batchId] = await lab.runPod(
            burstablePod(NS, "batch", "node-a", [{
              name: "app",
              cpuRequest: "250m",
              cpuLimit: "500m",
            }]),
          );
          lab.load.set(batchId, { usage: 500, throttled: 2500 }); // wants 3 cores
          const split = await eventually("batch allocation and a contended market", async () => {
            const [web, batch] = [await lab.pa("web"), await lab.pa("batch")];
            return batch?.spec.market.contended && web ? { web, batch } : undefined;
          }, 20_000);
          const webLimit = split.web.spec.containers[0].cpuLimit;
          const batchLimit = split.batch.spec.containers[0].cpuLimit;
          assert.ok(split.batch.spec.market.price > 0);
          // Equal weights: web gets its demand (~805m), batch the rest of 3000m;
          // both protected, so each runs under its guarantee.
          assert.ok(
            // (web's last publish may differ from the newest clearing by less
            // than the publishing threshold: 5% or 20m)
            Math.abs(m(webLimit) + m(batchLimit) - 3000) <= Math.max(20, 0.05 * m(webLimit)),
            `${webLimit} + ${batchLimit}`,
          );
          lab.load.set(webId, { usage: 500, throttled: 1000 }); // web now wants 1.5 cores
          const stepAt = performance.now();
          await eventually(
            "web's allocation rises",
            async () =>
              m((await lab.pa("web"))?.spec.containers[0].cpuLimit ?? "0") > m(webLimit) + 400,
            10_000,
          );
          assert.ok(performance.now() - stepAt < 3000, "within about one market interval");
        },
      );

      await t.step(
        "the agent renews its node's heartbeat Lease with its own identity",
        async () => {
          const coordination = lab.cluster.admin.makeApiClient(k8s.CoordinationV1Api);
          const lease = await eventually("heartbeat Lease", async () => {
            try {
              return await coordination.readNamespacedLease({
                name: "mbcas-agent-node-a",
                namespace: "mbcas-system",
              });
            } catch {
              return undefined;
            }
          });
          assert.equal(lease.spec?.holderIdentity, "node-a");
          assert.ok(lease.spec?.renewTime !== undefined, "renewed");
          assert.equal(lease.metadata?.labels?.["app.kubernetes.io/component"], "agent-heartbeat");
        },
      );

      await t.step("deleting a pod removes its PodAllocation", async () => {
        await lab.core.deleteNamespacedPod({ name: "batch", namespace: NS, gracePeriodSeconds: 0 });
        await eventually(
          "batch allocation gone",
          async () => (await lab.pa("batch")) === undefined,
          30_000,
        );
      });
    } finally {
      await agent?.stop();
      await lab.stop();
    }
  },
);
