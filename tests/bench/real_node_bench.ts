/**
 * `deno task bench:realnode`: on the local real node (src/cluster), MBCAS
 * deployed from the shipped manifests, an opted-in service (request 100m,
 * limit 200m, priority 4) whose load switches on for 10 s every 40 s next to
 * a batch job that wants more than the node has. For every load step it
 * measures, on the kernel, the time from the step to the first raised CFS
 * quota of the service's container (written by the real kubelet), the peak,
 * and the lowest limit while idle; then prints p50, p99 and max.
 *
 * Options: --steps N (default 10). Needs root; takes about (N × 40 + 90) s.
 * The agent's release half-life and the controller's cooldown are 4 s, as in
 * the end-to-end test, so the limit is back down before the next step.
 */
import { parseArgs } from "node:util";
import { deployMbcas } from "../../src/lab/run.ts";
import { percentile } from "../../src/lab/report.ts";
import {
  containerCgroup,
  measureLoadSteps,
  realNodeMissing,
  startLoadPods,
  withLocalCluster,
} from "../_support/real_node.ts";

const { values } = parseArgs({
  args: Deno.args.filter((a) => a !== "--"),
  options: { steps: { type: "string", default: "10" } },
});
const steps = Number(values.steps);
if (!Number.isInteger(steps) || steps < 1 || steps > 100) {
  console.error(`bench:realnode: --steps must be a whole number in 1..100, got ${values.steps}`);
  Deno.exit(2);
}
const missing = realNodeMissing();
if (missing !== null) {
  console.error(`bench:realnode: ${missing}`);
  Deno.exit(1);
}

const NS = "mbcas-bench";
await withLocalCluster(async (cluster) => {
  await deployMbcas(
    cluster,
    {
      agent: ["--release-half-life-seconds", "4"],
      // Several load steps a minute, each up and back down: more resizes than the
      // default per-pod budget (4 a minute) allows.
      controller: ["--cooldown-seconds", "4", "--max-resizes-per-pod-per-minute", "16"],
    },
    (line) => console.error(line),
    "deploy/overlays/local",
  );
  const phases = { epochMs: Date.now() + 30_000, onS: 10, offS: 30, steps };
  const { web } = await startLoadPods(cluster, NS, phases);
  const measured = await measureLoadSteps(containerCgroup(web), phases, (k, step) =>
    console.error(
      `step ${k + 1}/${steps}: limit ${step.limitBefore}m → first raise after ${
        step.spikeToQuotaMs ?? "never"
      } ms, peak ${step.peak}m, lowest while idle ${step.lowestAfter}m`,
    ));
  const raised = measured.map((s) => s.spikeToQuotaMs).filter((m): m is number => m !== null)
    .sort((a, b) => a - b);
  console.log(
    `real node: load step → raised CFS quota in the kernel, over ${measured.length} steps ` +
      `(${measured.length - raised.length} never raised)`,
  );
  if (raised.length > 0) {
    console.log(
      `  p50 ${percentile(raised, 50)} ms, p99 ${percentile(raised, 99)} ms, max ${
        raised.at(-1)
      } ms`,
    );
  }
  console.log(
    `  peak limit p50 ${percentile(measured.map((s) => s.peak).sort((a, b) => a - b), 50)}m; ` +
      `back to ≤ 200m while idle in ${
        measured.filter((s) => s.lowestAfter <= 200).length
      }/${measured.length} steps`,
  );
});
