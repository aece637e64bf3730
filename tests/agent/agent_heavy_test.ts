/**
 * The agent clears the market at once when a container steps into heavy
 * throttling, not only every market interval: with a 10 s interval, a pod
 * that goes from unthrottled to throttled in every period gets its larger
 * allocation within a few sampling intervals.
 */
import assert from "node:assert/strict";
import { NodeAgent } from "../../src/agent/mod.ts";
import { burstablePod, eventually, kubeConfig } from "../k8s/_helpers.ts";
import { requireOrSkip, testbedMissing } from "../_support/requirements.ts";
import { millicores as m, NodeLab, NS } from "./_node_lab.ts";

requireOrSkip(
  "agent: stepping into heavy throttling clears the market at once, between market intervals",
  testbedMissing(),
  async () => {
    const lab = await NodeLab.start(2000);
    let agent: NodeAgent | undefined;
    try {
      const pod = (name: string) =>
        burstablePod(NS, name, "node-a", [{ name: "app", cpuRequest: "250m", cpuLimit: "500m" }]);
      const [webId] = await lab.runPod(pod("web"));
      const [batchId] = await lab.runPod(pod("batch"));
      lab.load.set(webId, { usage: 300, throttled: 0 });
      lab.load.set(batchId, { usage: 500, throttled: 2500 }); // wants 3 cores: a contended node
      agent = new NodeAgent(kubeConfig(lab.testbed.identities.agent.kubeconfig), {
        nodeName: "node-a",
        cgroupRoot: lab.fixture.root,
        samplingIntervalMs: 200,
        marketIntervalMs: 10_000,
      });
      await agent.start();
      const before = await eventually("web's first allocation", async () => {
        const web = await lab.pa("web");
        const limit = m(web?.spec.containers[0].cpuLimit ?? "0");
        return web?.spec.market.contended && limit > 0 && limit < 600 ? limit : undefined;
      }, 15_000);
      const clearings = agent.stats.clearings;
      lab.load.set(webId, { usage: 500, throttled: 1500 }); // now throttled in every period
      const stepAt = performance.now();
      await eventually(
        "web's allocation rises",
        async () => m((await lab.pa("web"))?.spec.containers[0].cpuLimit ?? "0") > before + 500,
        12_000,
      );
      const took = performance.now() - stepAt;
      assert.ok(
        took < 3000,
        `allocation raised ${Math.round(took)} ms after the step (interval 10 s)`,
      );
      assert.ok(agent.stats.clearings > clearings, "an extra clearing ran");
    } finally {
      await agent?.stop();
      await lab.stop();
    }
  },
);

requireOrSkip(
  "agent: a heavily throttled container whose need keeps growing is cleared again at once, not at the next interval",
  testbedMissing(),
  async () => {
    const lab = await NodeLab.start(4000);
    let agent: NodeAgent | undefined;
    try {
      const [webId] = await lab.runPod(
        burstablePod(NS, "web", "node-a", [{ name: "app", cpuRequest: "250m", cpuLimit: "500m" }]),
      );
      lab.load.set(webId, { usage: 400, throttled: 0 });
      agent = new NodeAgent(kubeConfig(lab.testbed.identities.agent.kubeconfig), {
        nodeName: "node-a",
        cgroupRoot: lab.fixture.root,
        samplingIntervalMs: 200,
        marketIntervalMs: 60_000, // no periodic clearing within this test's waits
      });
      await agent.start();
      const limit = async () => m((await lab.pa("web"))?.spec.containers[0].cpuLimit ?? "0");
      await new Promise((r) => setTimeout(r, 1000)); // a few samples
      await agent.clearAndPublish();
      const first = await eventually("web's first allocation", async () => {
        const l = await limit();
        return l > 0 ? l : undefined;
      });
      // Steps into heavy throttling (every period), needing 700m: cleared at once.
      lab.load.set(webId, { usage: 400, throttled: 300 });
      const stepped = await eventually("raised at the step", async () => {
        const l = await limit();
        return l > first + 200 ? l : undefined;
      }, 5_000);
      // Still throttled in every period, its need grows to 2000m: no new step into heavy
      // throttling, but its demand outgrew what the last clearing used.
      const clearings = agent.stats.clearings;
      lab.load.set(webId, { usage: 400, throttled: 1600 });
      const grownAt = performance.now();
      const raised = await eventually("raised again", async () => {
        const l = await limit();
        return l >= stepped * 1.5 ? l : undefined;
      }, 10_000);
      const took = performance.now() - grownAt;
      console.log(`  ${first}m → ${stepped}m → ${raised}m, the last ${Math.round(took)} ms after`);
      assert.ok(took < 5_000, `raised ${Math.round(took)} ms after the need grew (interval 60 s)`);
      assert.ok(agent.stats.clearings > clearings, "an extra clearing ran");
    } finally {
      await agent?.stop();
      await lab.stop();
    }
  },
);
