/**
 * `deno task lab-bench`: the same lab scenario (same seed, same workload
 * timing) under static limits, no limits, a VPA-style recommender and MBCAS,
 * one after the other on this machine's real CPU; prints one table, checks
 * MBCAS's targets, and writes the runs, a report per policy and a comparison
 * chart to `--out`.
 *
 * @module
 */
import { join } from "node:path";
import { z } from "zod";
import { parseCliOptions } from "./_options.ts";
import { benchRow, type LabBenchRow } from "../lab/metrics.ts";
import { renderComparisonSvg, renderReport } from "../lab/report.ts";
import { labAllocatable, labMissing, runLab } from "../lab/run.ts";
import { buildScenario, type Scenario, type ScenarioName, SCENARIOS } from "../lab/scenario.ts";
import type { LabPolicy, LabRun } from "../lab/types.ts";
import { programArgs } from "../config/mod.ts";

const POLICIES: readonly LabPolicy[] = ["static", "none", "vpa", "mbcas"];
const USAGE = `usage: deno task lab-bench [--duration SECONDS] [--scenario ${SCENARIOS.join("|")}]
                           [--seed N] [--policies static,none,vpa,mbcas] [--out DIR]

  --duration S   length of each run, seconds (default 150; at least 120)
  --scenario S   mixed (default) or spike
  --seed N       seed of the workloads' schedules (default 1)
  --policies L   which policies to run, in order (default all four)
  --out DIR      where to write results.json, comparison.svg and report-<policy>.html
                 (default lab-bench-results)
  --from FILE    recompute the table, chart and reports from a results.json instead of running`;

const optionsSchema = z.object({
  duration: z.coerce.number({ error: "must be a number of seconds" }).int("must be whole seconds")
    .min(120, "must be at least 120 (each run lasts two minutes or more)").max(3600),
  scenario: z.enum(SCENARIOS, { error: `must be one of ${SCENARIOS.join(", ")}` }),
  seed: z.coerce.number({ error: "must be a number" }).int().min(0),
  policies: z.string().transform((text, ctx) => {
    const list = text.split(",").map((p) => p.trim());
    for (const p of list) {
      if (!(POLICIES as readonly string[]).includes(p)) {
        ctx.addIssue({ code: "custom", message: `${JSON.stringify(p)} is not one of ${POLICIES}` });
        return z.NEVER;
      }
    }
    return list as LabPolicy[];
  }),
  out: z.string().min(1),
  from: z.string().min(1, "must name a results.json").optional(),
});

/** MBCAS's targets from the issue, checked against the rows; one line each. */
export function checkTargets(rows: LabBenchRow[], scenario: Scenario): string[] {
  const by = new Map(rows.map((r) => [r.policy, r]));
  const mbcas = by.get("mbcas");
  if (mbcas === undefined) return [];
  const lines: string[] = [];
  const verdict = (ok: boolean | null, text: string) =>
    lines.push(`${ok === null ? "n/a " : ok ? "MET " : "MISS"}  ${text}`);
  const staticRow = by.get("static");
  const none = by.get("none");
  for (const pod of scenario.roles.protected) {
    if (staticRow === undefined) break;
    const s = staticRow.throttledSeconds[pod] ?? 0;
    const m = mbcas.throttledSeconds[pod] ?? 0;
    const cut = s === 0 ? null : 1 - m / s;
    verdict(
      cut === null ? null : cut >= 0.6,
      `${pod}: throttled time ${m.toFixed(1)} s vs static ${s.toFixed(1)} s (${
        cut === null ? "-" : `${Math.round(cut * 100)}% lower`
      }; target ≥ 60% lower)`,
    );
  }
  if (none !== undefined) {
    const ratio = mbcas.latencyP99Ms !== null && none.latencyP99Ms
      ? mbcas.latencyP99Ms / none.latencyP99Ms
      : null;
    verdict(
      ratio === null ? null : ratio <= 1.25,
      `latency p99 ${fmt(mbcas.latencyP99Ms)} ms vs no limits ${fmt(none.latencyP99Ms)} ms (${
        ratio === null ? "-" : `${ratio.toFixed(2)}×`
      }; target ≤ 1.25×)`,
    );
    const share = none.batchCpuSeconds === 0 ? null : mbcas.batchCpuSeconds / none.batchCpuSeconds;
    verdict(
      share === null ? null : share >= 0.8,
      `batch ${mbcas.batchCpuSeconds.toFixed(1)} CPU-s vs no limits ${
        none.batchCpuSeconds.toFixed(1)
      } (${share === null ? "-" : `${Math.round(share * 100)}%`}; target ≥ 80%)`,
    );
  }
  verdict(
    mbcas.fairness === null ? null : mbcas.fairness >= 0.95,
    `fairness ${fmt(mbcas.fairness, 3)} (target ≥ 0.95)`,
  );
  verdict(
    mbcas.spikeToLimitP50S === null ? false : mbcas.spikeToLimitP50S <= 3,
    `spike to limit p50 ${fmt(mbcas.spikeToLimitP50S)} s (target ≤ 3 s)`,
  );
  verdict(
    mbcas.maxResizesPerPodPerMinute <= 2,
    `at most ${mbcas.maxResizesPerPodPerMinute} resizes of one pod in a minute (target ≤ 2)`,
  );
  return lines;
}

function fmt(v: number | null, digits = 1): string {
  return v === null ? "-" : v.toFixed(digits);
}

/** The comparison table, one line per policy. */
export function formatTable(rows: LabBenchRow[], scenario: Scenario): string {
  const header = [
    "policy",
    "lat p50 ms",
    "lat p99 ms",
    ...scenario.pods.map((p) => `thr ${p.name} s`),
    "batch CPU-s",
    "util",
    "fairness",
    "resizes",
    "max/pod/min",
    "spike→limit p50/p99 s (answered)",
  ];
  const lines = rows.map((r) => [
    r.policy,
    fmt(r.latencyP50Ms),
    fmt(r.latencyP99Ms),
    ...scenario.pods.map((p) => (r.throttledSeconds[p.name] ?? 0).toFixed(1)),
    r.batchCpuSeconds.toFixed(1),
    `${Math.round(r.utilisation * 100)}%`,
    fmt(r.fairness, 3),
    String(r.resizes),
    String(r.maxResizesPerPodPerMinute),
    `${fmt(r.spikeToLimitP50S)}/${fmt(r.spikeToLimitP99S)} (${r.spikesAnswered[0]}/${
      r.spikesAnswered[1]
    })`,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i].length)));
  return [header, ...lines].map((l) => l.map((c, i) => c.padEnd(widths[i])).join("  ")).join(
    "\n",
  );
}

async function main(args: string[]): Promise<number> {
  const options = parseCliOptions(
    "lab-bench",
    args,
    {
      duration: { type: "string", default: "150" },
      scenario: { type: "string", default: "mixed" },
      seed: { type: "string", default: "1" },
      policies: { type: "string", default: POLICIES.join(",") },
      out: { type: "string", default: "lab-bench-results" },
      from: { type: "string" },
    },
    optionsSchema,
    USAGE,
  );
  if (typeof options === "number") return options;
  await Deno.mkdir(options.out, { recursive: true });
  if (options.from !== undefined) return await recompute(options.from, options.out);
  const missing = labMissing();
  if (missing !== null) {
    console.error(`lab-bench: the lab cannot run here: ${missing}`);
    return 1;
  }
  const allocatable = labAllocatable();
  const scenario = buildScenario(options.scenario, options.duration, allocatable);
  const rows: LabBenchRow[] = [];
  const runs: LabRun[] = [];
  for (const policy of options.policies) {
    console.error(
      `lab-bench: ${policy}: ${scenario.name}, ${options.duration} s, seed ${options.seed}`,
    );
    const run = await runLab({
      scenario,
      policy,
      seed: options.seed,
      log: (line) => console.error(`lab-bench: ${policy}: ${line}`),
    });
    runs.push(run);
    rows.push(benchRow(run, scenario));
    await Deno.writeTextFile(join(options.out, `report-${policy}.html`), renderReport(run));
    // After every policy, so a failure later keeps what was measured.
    await Deno.writeTextFile(join(options.out, "results.json"), JSON.stringify({ rows, runs }));
  }
  await summarise(runs, rows, scenario, options.out);
  return 0;
}

/** Writes the chart and prints the table and the targets. */
async function summarise(
  runs: LabRun[],
  rows: LabBenchRow[],
  scenario: Scenario,
  out: string,
): Promise<void> {
  await Deno.writeTextFile(join(out, "comparison.svg"), renderComparisonSvg(rows));
  const run = runs[0];
  console.log(
    `lab bench: scenario ${scenario.name}, ${run.durationSeconds} s per policy, seed ${run.seed}, node ${run.nodeCapacityMillicores}m on ${navigator.hardwareConcurrency} cores`,
  );
  console.log(formatTable(rows, scenario));
  console.log("");
  for (const line of checkTargets(rows, scenario)) console.log(line);
  console.log(`\nwritten to ${await Deno.realPath(out)}`);
}

/** `--from`: the figures of recorded runs, recomputed. */
async function recompute(from: string, out: string): Promise<number> {
  let runs: LabRun[];
  try {
    runs = JSON.parse(await Deno.readTextFile(from)).runs;
    if (!Array.isArray(runs) || runs.length === 0) throw new Error("it holds no runs");
  } catch (error) {
    console.error(`lab-bench: --from ${JSON.stringify(from)}: ${(error as Error).message}`);
    return 2;
  }
  const first = runs[0];
  const scenario = buildScenario(
    first.scenario as ScenarioName,
    first.durationSeconds,
    first.nodeCapacityMillicores,
  );
  const rows = runs.map((run) => benchRow(run, scenario));
  for (const run of runs) {
    await Deno.writeTextFile(join(out, `report-${run.policy}.html`), renderReport(run));
  }
  await Deno.writeTextFile(join(out, "results.json"), JSON.stringify({ rows, runs }));
  await summarise(runs, rows, scenario, out);
  return 0;
}

if (import.meta.main) Deno.exit(await main(programArgs()));
