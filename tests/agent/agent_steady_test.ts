/** The agent under a noisy steady load (few writes) and after the load drops (slow release). */
import assert from "node:assert/strict";
import { NodeAgent } from "../../src/agent/mod.ts";
import { burstablePod, eventually, kubeConfig } from "../k8s/_helpers.ts";
import { requireOrSkip, testbedMissing } from "../_support/requirements.ts";
import { millicores as m, NodeLab, NS } from "./_node_lab.ts";

requireOrSkip(
  "agent: quiet under noise, slow to shrink after the load drops",
  testbedMissing(),
  async (t) => {
    const lab = await NodeLab.start(1500);
    let agent: NodeAgent | undefined;
    const pod = (name: string) =>
      burstablePod(NS, name, "node-a", [{ name: "app", cpuRequest: "250m", cpuLimit: "1" }]);
    try {
      const [web] = await lab.runPod(pod("web"));
      const [batch] = await lab.runPod(pod("batch"));
      // web needs ~450m ± 10% (below its fair share, so its allocation follows its demand);
      // batch wants far more than the node: the market is contended.
      lab.load.set(web, { usage: 390, throttled: 0, noise: 0.1 });
      lab.load.set(batch, { usage: 900, throttled: 2000 });
      agent = new NodeAgent(kubeConfig(lab.testbed.identities.agent.kubeconfig), {
        nodeName: "node-a",
        cgroupRoot: lab.fixture.root,
        samplingIntervalMs: 250,
        marketIntervalMs: 1000,
      });
      await agent.start();
      await eventually(
        "both published",
        async () => (await lab.pa("web")) && (await lab.pa("batch")),
        20_000,
      );

      await t.step(
        "a noisy steady state: at most one write per pod in 30 s (market cleared every second)",
        async () => {
          await new Promise((r) => setTimeout(r, 15_000)); // settle: the estimate finds the top of the noise
          const versions = { web: new Set<string>(), batch: new Set<string>() };
          const until = performance.now() + 30_000;
          let clearings = agent!.stats.clearings;
          while (performance.now() < until) {
            for (const name of ["web", "batch"] as const) {
              versions[name].add((await lab.pa(name)).metadata.resourceVersion);
            }
            await new Promise((r) => setTimeout(r, 250));
          }
          clearings = agent!.stats.clearings - clearings;
          assert.ok(clearings >= 25, `the market was cleared ${clearings} times`);
          assert.ok(versions.web.size <= 2, `web written ${versions.web.size - 1} times`);
          assert.ok(versions.batch.size <= 2, `batch written ${versions.batch.size - 1} times`);
          assert.ok((await lab.pa("web")).spec.market.contended);
        },
      );

      await t.step(
        "after the load drops, the allocation shrinks slowly (60 s half-life), not in one step",
        async () => {
          const before = m((await lab.pa("web")).spec.containers[0].cpuLimit);
          lab.load.set(web, { usage: 20, throttled: 0 });
          const seen: number[] = [];
          const start = performance.now();
          while (performance.now() - start < 25_000) {
            seen.push(m((await lab.pa("web")).spec.containers[0].cpuLimit));
            await new Promise((r) => setTimeout(r, 500));
          }
          const early = seen.slice(0, 8); // the first 4 s
          assert.ok(
            Math.min(...early) >= before * 0.9,
            `fell from ${before}m to ${Math.min(...early)}m within 4 s`,
          );
          assert.ok(
            seen.at(-1)! < before,
            `it does shrink (${before}m -> ${seen.at(-1)}m after 25 s)`,
          );
          assert.ok(
            seen.at(-1)! > 300,
            `but slowly: still ${seen.at(-1)}m, far above the ~23m the idle load needs`,
          );
        },
      );
    } finally {
      await agent?.stop();
      await lab.stop();
    }
  },
);
