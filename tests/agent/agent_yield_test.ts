/**
 * Elastic pods yield in the kernel (src/agent/yield.ts), end to end through
 * the agent: the real API server (test bed) with the kubelet simulator, and a
 * cgroup v2 fixture tree whose pod weights the agent writes. The weight is
 * recorded in the PodAllocation before it is lowered, the market's elastic
 * budget no longer leaves the protected pods' use free, and the kubelet's
 * weight comes back when the pod turns protected and when the agent stops.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { NodeAgent } from "../../src/agent/mod.ts";
import { burstablePod, eventually, guaranteedPod, kubeConfig } from "../k8s/_helpers.ts";
import { requireOrSkip, testbedMissing } from "../_support/requirements.ts";
import { millicores as m, NodeLab, NS } from "./_node_lab.ts";

const TIER = "mbcas.io/tier";

requireOrSkip(
  "agent: elastic pods yield in the kernel: recorded, lowered, restored when protected and at stop",
  testbedMissing(),
  async (t) => {
    const lab = await NodeLab.start(2000);
    let agent: NodeAgent | undefined;
    const start = async (elasticYield: boolean) => {
      agent = new NodeAgent(kubeConfig(lab.testbed.identities.agent.kubeconfig), {
        nodeName: "node-a",
        cgroupRoot: lab.fixture.root,
        samplingIntervalMs: 200,
        marketIntervalMs: 1000,
        elasticYield,
      });
      await agent.start();
    };
    const setTier = (tier: string) =>
      lab.core.patchNamespacedPod({
        name: "batch",
        namespace: NS,
        body: [{ op: "replace", path: "/metadata/annotations/mbcas.io~1tier", value: tier }],
      });
    try {
      const [webId] = await lab.runPod(
        burstablePod(NS, "web", "node-a", [{ name: "app", cpuRequest: "300m", cpuLimit: "400m" }]),
      );
      const batchPod = burstablePod(NS, "batch", "node-a", [
        { name: "app", cpuRequest: "100m", cpuLimit: "500m" },
      ]);
      batchPod.metadata!.annotations = { [TIER]: "elastic" };
      const [batchId] = await lab.runPod(batchPod);
      // A pod MBCAS does not manage (Guaranteed): its 200m is kept out of the market's capacity.
      await lab.runPod(guaranteedPod(NS, "fixed", "node-a", "200m"), "guaranteed");
      lab.load.set(webId, { usage: 300, throttled: 0 });
      lab.load.set(batchId, { usage: 500, throttled: 1500 }); // wants the whole node
      const batchUid = (await lab.core.readNamespacedPod({ name: "batch", namespace: NS }))
        .metadata!.uid!;
      const weightFile = join(
        lab.fixture.root,
        lab.fixture.podPath(batchUid, "burstable"),
        "cpu.weight",
      );
      const weight = () => Number(Deno.readTextFileSync(weightFile).trim());
      const kubelet = weight();
      assert.ok(kubelet > 1, `the kubelet's weight ${kubelet}`);
      const webWeightFile = join(
        lab.fixture.root,
        lab.fixture.podPath(
          (await lab.core.readNamespacedPod({ name: "web", namespace: NS })).metadata!.uid!,
          "burstable",
        ),
        "cpu.weight",
      );
      const webWeight = Deno.readTextFileSync(webWeightFile);

      await start(true);

      await t.step(
        "the kubelet's weight is recorded in the PodAllocation, then lowered to 1",
        async () => {
          const pa = await eventually("batch's record", async () => {
            const pa = await lab.pa("batch");
            return pa?.spec.originalCpuWeight !== undefined ? pa : undefined;
          }, 20_000);
          assert.equal(pa.spec.originalCpuWeight, kubelet);
          await eventually("batch lowered", () => weight() === 1 || undefined, 10_000);
          assert.equal(
            Deno.readTextFileSync(webWeightFile),
            webWeight,
            "a protected pod is untouched",
          );
          assert.equal((await lab.pa("web")).spec.originalCpuWeight, undefined);
        },
      );

      await t.step(
        "yielding, the elastic budget is the node less the headroom, past the unmanaged pod's share, whatever web uses",
        async () => {
          const pa = await eventually("a yielding market", async () => {
            const pa = await lab.pa("batch");
            const market = pa?.spec.market;
            // The capacity leaves out the unmanaged pod's 200m; a yielding elastic pod, which
            // that pod outranks by weight, may reach into it: 2000m less 5% of the capacity.
            return market !== undefined && market.capacityMillicores === 1800 &&
                market.elasticBudgetMillicores === 2000 - Math.round(1800 * 0.05)
              ? pa
              : undefined;
          }, 20_000);
          // batch wants the node; web's ~345m is not taken out of its limit (1910m).
          assert.ok(m(pa.spec.containers[0].cpuLimit) > 1800, pa.spec.containers[0].cpuLimit);
          lab.load.set(webId, { usage: 400, throttled: 600 }); // web wants a core now
          await eventually(
            "web's allocation rises",
            async () =>
              m((await lab.pa("web"))?.spec.containers[0].cpuLimit ?? "0") > 900 || undefined,
            15_000,
          );
          // Not tracking web: its ~1150m would leave batch at most 900m.
          const after = await lab.pa("batch");
          assert.ok(m(after.spec.containers[0].cpuLimit) > 1800, after.spec.containers[0].cpuLimit);
        },
      );

      await t.step(
        "turned protected, batch gets the kubelet's weight back and the record goes",
        async () => {
          await setTier("protected");
          await eventually("batch restored", () => weight() === kubelet || undefined, 15_000);
          await eventually("record dropped", async () => {
            const pa = await lab.pa("batch");
            return pa?.spec.tier === "protected" && pa.spec.originalCpuWeight === undefined ||
              undefined;
          }, 15_000);
        },
      );

      await t.step(
        "elastic again, then the agent stops: the weight is restored, the record kept",
        async () => {
          await setTier("elastic");
          await eventually("batch lowered again", () => weight() === 1 || undefined, 20_000);
          await agent!.stop();
          agent = undefined;
          assert.equal(weight(), kubelet);
          assert.equal((await lab.pa("batch")).spec.originalCpuWeight, kubelet);
        },
      );

      await t.step(
        "an agent with --elastic-yield false writes no weight and drops the record",
        async () => {
          await start(false);
          await eventually(
            "record dropped",
            async () => (await lab.pa("batch"))?.spec.originalCpuWeight === undefined || undefined,
            15_000,
          );
          assert.equal(weight(), kubelet);
          const pa = await lab.pa("batch");
          // Not yielding: the elastic budget leaves web's use free again.
          assert.ok(
            pa.spec.market.elasticBudgetMillicores <
              pa.spec.market.capacityMillicores -
                Math.round(pa.spec.market.capacityMillicores * 0.05),
            JSON.stringify(pa.spec.market),
          );
        },
      );
    } finally {
      await agent?.stop();
      await lab.stop();
    }
  },
);
