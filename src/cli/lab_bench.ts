/**
 * `deno task lab-bench`: the same lab scenario (same seed, same workload
 * timing) under static limits, no limits, a VPA-style recommender and MBCAS,
 * one after the other on this machine's real CPU, `--repeat` times; prints
 * each repetition's table and MBCAS's targets, then (for several) each
 * target's median and min–max over the repetitions, and writes the runs, a
 * report per run, a comparison chart (medians) and `summary.md` (markdown
 * for docs/lab.md) to `--out`.
 *
 * @module
 */
import { join } from "node:path";
import { z } from "zod";
import { parseCliOptions } from "./_options.ts";
import { benchRow, type LabBenchRow, workDonePods } from "../lab/metrics.ts";
import { type BenchRow, renderComparisonSvg, renderReport } from "../lab/report.ts";
import { labAllocatable, labMissing, runLab } from "../lab/run.ts";
import { buildScenario, type Scenario, type ScenarioName, SCENARIOS } from "../lab/scenario.ts";
import type { LabCpuAccount, LabPolicy, LabRun } from "../lab/types.ts";
import { programArgs } from "../config/mod.ts";

const POLICIES: readonly LabPolicy[] = ["static", "none", "vpa", "mbcas"];
const USAGE = `usage: deno task lab-bench [--duration SECONDS] [--scenario ${SCENARIOS.join("|")}]
                           [--seed N] [--policies static,none,vpa,mbcas] [--repeat N] [--out DIR]

  --duration S   length of each run, seconds (default 150; at least 120)
  --scenario S   mixed (default) or spike
  --seed N       seed of the workloads' schedules (default 1)
  --policies L   which policies to run, in order (default all four)
  --repeat N     run every policy N times, repetition by repetition (default 1; 1..10); prints
                 each repetition's table and targets, then each target's median and min–max
  --out DIR      where to write results.json, summary.md (markdown tables for docs/lab.md),
                 comparison.svg (medians over the repetitions) and report-<policy>.html
                 (report-<policy>-<repetition>.html with --repeat above 1)
                 (default lab-bench-results)
  --from FILE    recompute the tables, chart, summary and reports from a results.json
                 (every repetition it holds; --repeat does not apply) instead of running`;

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
  repeat: z.coerce.number({ error: "must be a whole number from 1 to 10" })
    .int("must be a whole number from 1 to 10").min(1, "must be at least 1")
    .max(10, "must be at most 10"),
  out: z.string().min(1),
  from: z.string().min(1, "must name a results.json").optional(),
});

/** How a target's figure prints. */
export type FigureUnit = "ratio" | "percent" | "seconds" | "count" | "index";

/** One of MBCAS's targets, checked against one repetition's rows. */
export interface TargetCheck {
  /** Stable key, the same in every repetition (e.g. `batch-vs-none`, `throttled:web`). */
  key: string;
  /** What is measured, for the summaries (e.g. "batch CPU-s vs no limits"). */
  figure: string;
  /** The target, as text (e.g. "≥ 75%"). */
  target: string;
  /** MBCAS's figure (a value, or a ratio to another policy); null when it cannot be worked out. */
  value: number | null;
  /** How {@link TargetCheck.value} prints. */
  unit: FigureUnit;
  /** Met (true), missed (false) or not applicable (null). */
  met: boolean | null;
  /** The line's text after the verdict. */
  text: string;
}

/** A figure as text, in its unit ("–" for null). */
export function formatFigure(value: number | null, unit: FigureUnit): string {
  if (value === null || !Number.isFinite(value)) return "–";
  switch (unit) {
    case "ratio":
      return `${value.toFixed(2)}×`;
    case "percent":
      return `${Math.round(value * 100)}%`;
    case "seconds":
      return `${value.toFixed(1)} s`;
    case "count":
      return String(Math.round(value * 10) / 10);
    case "index":
      return value.toFixed(3);
  }
}

/** The p99 check's reference: the same arrivals on a CPU of their own, and its ratio to no limits. */
function dedicatedText(mbcas: LabBenchRow, none: LabBenchRow | undefined): string {
  const dedicated = mbcas.latencyP99DedicatedMs ?? null;
  if (dedicated === null) return "";
  const ratio = none?.latencyP99Ms ? dedicated / none.latencyP99Ms : null;
  return `; on a CPU of its own the same arrivals give ${fmt(dedicated)} ms${
    ratio === null ? "" : ` (${formatFigure(ratio, "ratio")} of no limits)`
  }`;
}

/**
 * MBCAS's targets, checked against the other policies of the same
 * repetition: node use ≥ 0.85 × no limits'; batch CPU-s ≥ 0.75 × no limits'
 * and ≥ 1.2 × static's; latency p99 ≤ 0.5 × no limits'; throttled time of
 * every protected pod ≥ 60% below static; work done ≥ 90% by every bursty
 * protected pod and every latency pod; latency load step to elastic limits
 * down in the kernel, p50 ≤ 2 s; kernel resizes per pod-minute p95 ≤ 2 and
 * max ≤ 4; Jain's fairness ≥ 0.97. A target whose baseline policy did not
 * run, or whose figure is undefined, is not applicable. Empty without an
 * MBCAS row.
 */
export function targetChecks(rows: LabBenchRow[], scenario: Scenario): TargetCheck[] {
  const by = new Map(rows.map((r) => [r.policy, r]));
  const mbcas = by.get("mbcas");
  if (mbcas === undefined) return [];
  const checks: TargetCheck[] = [];
  const add = (
    check: Omit<TargetCheck, "met" | "text">,
    met: (v: number) => boolean,
    text: string,
  ) => checks.push({ ...check, met: check.value === null ? null : met(check.value), text });
  const ratio = (a: number | null, b: number | null | undefined) =>
    a === null || b === null || b === undefined || b === 0 ? null : a / b;
  const missing = (policy: string) => `no ${policy} run`;
  const none = by.get("none");
  const staticRow = by.get("static");

  const use = ratio(mbcas.utilisation, none?.utilisation);
  add(
    {
      key: "node-use",
      figure: "node use vs no limits",
      target: "≥ 0.85×",
      value: use,
      unit: "ratio",
    },
    (v) => v >= 0.85,
    `node use ${pct(mbcas.utilisation)} vs no limits ${
      none === undefined ? missing("none") : pct(none.utilisation)
    } (${formatFigure(use, "ratio")}; target ≥ 0.85×)`,
  );
  const batchNone = ratio(mbcas.batchCpuSeconds, none?.batchCpuSeconds);
  add(
    {
      key: "batch-vs-none",
      figure: "batch CPU-s vs no limits",
      target: "≥ 75%",
      value: batchNone,
      unit: "percent",
    },
    (v) => v >= 0.75,
    `batch ${mbcas.batchCpuSeconds.toFixed(1)} CPU-s vs no limits ${
      none === undefined ? missing("none") : none.batchCpuSeconds.toFixed(1)
    } (${formatFigure(batchNone, "percent")}; target ≥ 75%)`,
  );
  const batchStatic = ratio(mbcas.batchCpuSeconds, staticRow?.batchCpuSeconds);
  add(
    {
      key: "batch-vs-static",
      figure: "batch CPU-s vs static",
      target: "≥ 1.2×",
      value: batchStatic,
      unit: "ratio",
    },
    (v) => v >= 1.2,
    `batch ${mbcas.batchCpuSeconds.toFixed(1)} CPU-s vs static ${
      staticRow === undefined ? missing("static") : staticRow.batchCpuSeconds.toFixed(1)
    } (${formatFigure(batchStatic, "ratio")}; target ≥ 1.2×)`,
  );
  const p99 = ratio(mbcas.latencyP99Ms, none?.latencyP99Ms);
  add(
    {
      key: "latency-p99",
      figure: "latency p99 vs no limits",
      target: "≤ 0.5×",
      value: p99,
      unit: "ratio",
    },
    (v) => v <= 0.5,
    `latency p99 ${fmt(mbcas.latencyP99Ms)} ms vs no limits ${
      none === undefined ? missing("none") : `${fmt(none.latencyP99Ms)} ms`
    } (${formatFigure(p99, "ratio")}; target ≤ 0.5×)${dedicatedText(mbcas, none)}`,
  );
  for (const pod of scenario.roles.protected) {
    const s = staticRow?.throttledSeconds[pod];
    const m = mbcas.throttledSeconds[pod] ?? 0;
    const cut = s === undefined || s === 0 ? null : 1 - m / s;
    add(
      {
        key: `throttled:${pod}`,
        figure: `${pod} throttled time below static`,
        target: "≥ 60%",
        value: cut,
        unit: "percent",
      },
      (v) => v >= 0.6,
      `${pod}: throttled time ${m.toFixed(1)} s vs static ${
        staticRow === undefined ? missing("static") : `${(s ?? 0).toFixed(1)} s`
      } (${cut === null ? "-" : `${Math.round(cut * 100)}% lower`}; target ≥ 60% lower)`,
    );
  }
  for (const pod of scenario.pods) {
    const latency = scenario.roles.latency.includes(pod.name) && pod.workload === "latency";
    const bursty = scenario.roles.protected.includes(pod.name) && pod.workload === "bursty";
    if (!latency && !bursty) continue;
    const done = mbcas.workDone?.[pod.name] ?? null;
    add(
      {
        key: `work-done:${pod.name}`,
        figure: `${pod.name} work done`,
        target: "≥ 90%",
        value: done,
        unit: "percent",
      },
      (v) => v >= 0.9,
      `${pod.name}: work done ${formatFigure(done, "percent")}${
        latency ? " of the requests that arrived" : " of its busy threads' CPU"
      } (target ≥ 90%)`,
    );
  }
  const [answered, steps] = mbcas.elasticStepsAnswered ?? [0, 0];
  const step = mbcas.elasticStepP50S ?? null;
  const yielding = mbcas.elasticStepsYielding ?? 0;
  // An elastic pod that yields in the kernel at a step needs no cut there:
  // the kernel runs the latency pod first within a scheduling period. Such
  // steps are counted, not timed; the check stands on the others.
  const allYielding = steps > 0 && yielding === steps;
  checks.push({
    key: "elastic-step",
    figure: "latency load step → elastic limits down, p50",
    target: "≤ 2 s",
    value: step,
    unit: "seconds",
    met: steps === 0 || allYielding ? null : step !== null && step <= 2,
    text: `latency load step → elastic limits down in the kernel: p50 ${
      formatFigure(step, "seconds")
    } (${answered}/${steps} answered; target ≤ 2 s)${
      yielding > 0
        ? `; at ${yielding}/${steps} the elastic pod yielded in the kernel (lowest CPU weight), so no cut was needed${
          allYielding ? ": not applicable" : ""
        }`
        : ""
    }`,
  });
  const p95 = mbcas.resizesPerPodMinuteP95 ?? null;
  const max = mbcas.resizesPerPodMinuteMax ?? null;
  add(
    {
      key: "resizes-p95",
      figure: "kernel resizes per pod-minute, p95",
      target: "≤ 2",
      value: p95,
      unit: "count",
    },
    (v) => v <= 2,
    `kernel resizes per pod-minute: p95 ${formatFigure(p95, "count")} (target ≤ 2)`,
  );
  add(
    {
      key: "resizes-max",
      figure: "kernel resizes per pod-minute, max",
      target: "≤ 4",
      value: max,
      unit: "count",
    },
    (v) => v <= 4,
    `kernel resizes per pod-minute: max ${formatFigure(max, "count")} (target ≤ 4)`,
  );
  add(
    {
      key: "fairness",
      figure: "fairness (Jain)",
      target: "≥ 0.97",
      value: mbcas.fairness,
      unit: "index",
    },
    (v) => v >= 0.97,
    `fairness ${fmt(mbcas.fairness, 3)} (target ≥ 0.97)`,
  );
  return checks;
}

/** The verdict word of a check, padded: `MET `, `MISS` or `n/a `. */
function verdict(met: boolean | null): string {
  return met === null ? "n/a " : met ? "MET " : "MISS";
}

/** MBCAS's targets (see {@link targetChecks}) as lines: `MET `, `MISS` or `n/a `, two spaces, the check. */
export function checkTargets(rows: LabBenchRow[], scenario: Scenario): string[] {
  return targetChecks(rows, scenario).map((c) => `${verdict(c.met)}  ${c.text}`);
}

function fmt(v: number | null, digits = 1): string {
  return v === null ? "-" : v.toFixed(digits);
}

function pct(v: number): string {
  return `${Math.round(v * 100)}%`;
}

/** Columns as text, padded to the widest cell. */
function columns(header: string[], lines: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i].length)));
  return [header, ...lines].map((l) => l.map((c, i) => c.padEnd(widths[i])).join("  ").trimEnd())
    .join("\n");
}

/**
 * The comparison table, one line per policy, in two blocks: what the pods
 * got (latency, throttled seconds per pod, batch CPU-s, node use, fairness,
 * work done of each latency and bursty pod outside the batch role) and how
 * the limits moved (kernel resizes: total, most of one pod in any 60 s,
 * p95/max per pod and whole minute; spike to raised limit; latency load
 * step to elastic limits down) and what the agent wrote (PodAllocation
 * writes per minute for the node).
 */
export function formatTable(rows: LabBenchRow[], scenario: Scenario): string {
  const donePods = workDonePods(scenario);
  const outcomes = columns(
    [
      "policy",
      "lat p50 ms",
      "lat p99 ms",
      ...scenario.pods.map((p) => `thr ${p.name} s`),
      "batch CPU-s",
      "util",
      "fairness",
      ...donePods.map((p) => `done ${p}`),
    ],
    rows.map((r) => [
      r.policy,
      fmt(r.latencyP50Ms),
      fmt(r.latencyP99Ms),
      ...scenario.pods.map((p) => (r.throttledSeconds[p.name] ?? 0).toFixed(1)),
      r.batchCpuSeconds.toFixed(1),
      pct(r.utilisation),
      fmt(r.fairness, 3),
      ...donePods.map((p) => formatFigure(r.workDone?.[p] ?? null, "percent")),
    ]),
  );
  const control = columns(
    [
      "policy",
      "resizes",
      "max/pod/60s",
      "resizes/pod-min p95/max",
      "spike→limit p50/p99 s (answered)",
      "step→elastic↓ p50 s (answered)",
      "PodAllocation writes/min",
    ],
    rows.map((r) => [
      r.policy,
      String(r.resizes),
      String(r.maxResizesPerPodPerMinute),
      `${formatFigure(r.resizesPerPodMinuteP95 ?? null, "count")}/${
        formatFigure(r.resizesPerPodMinuteMax ?? null, "count")
      }`,
      `${fmt(r.spikeToLimitP50S)}/${fmt(r.spikeToLimitP99S)} (${r.spikesAnswered[0]}/${
        r.spikesAnswered[1]
      })`,
      `${fmt(r.elasticStepP50S ?? null)} (${(r.elasticStepsAnswered ?? [0, 0]).join("/")})`,
      fmt(r.allocationWritesPerMinute ?? null),
    ]),
  );
  return `${outcomes}\n\n${control}`;
}

/** The median of the finite values (the mean of the two middle ones for an even count); null when none. */
export function median(values: readonly (number | null)[]): number | null {
  const sorted = values.filter((v): v is number => v !== null && Number.isFinite(v))
    .sort((a, b) => a - b);
  if (sorted.length === 0) return null;
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** One target over the repetitions: MBCAS's figure and how often it was met. */
export interface TargetSpread {
  /** The target's key (see {@link TargetCheck.key}). */
  key: string;
  /** What is measured. */
  figure: string;
  /** The target, as text. */
  target: string;
  /** How the figures print. */
  unit: FigureUnit;
  /** Median of MBCAS's figure over the repetitions where it was defined; null when never. */
  median: number | null;
  /** Lowest figure; null when never defined. */
  min: number | null;
  /** Highest figure; null when never defined. */
  max: number | null;
  /** Repetitions that met the target. */
  met: number;
  /** Repetitions where it was not applicable (or not checked). */
  notApplicable: number;
  /** Repetitions. */
  repetitions: number;
}

/**
 * Each target over the repetitions (the checks of each, in order): median
 * and min–max of MBCAS's figure, and how many repetitions met it. Targets
 * keep the order in which they first appear.
 */
export function targetSpread(checksByRepetition: TargetCheck[][]): TargetSpread[] {
  const keys = [...new Set(checksByRepetition.flat().map((c) => c.key))];
  return keys.map((key) => {
    const found = checksByRepetition.map((checks) => checks.find((c) => c.key === key));
    const first = found.find((c) => c !== undefined)!;
    const values = found.map((c) => c?.value ?? null).filter((v): v is number =>
      v !== null && Number.isFinite(v)
    );
    return {
      key,
      figure: first.figure,
      target: first.target,
      unit: first.unit,
      median: median(values),
      min: values.length === 0 ? null : Math.min(...values),
      max: values.length === 0 ? null : Math.max(...values),
      met: found.filter((c) => c?.met === true).length,
      notApplicable: found.filter((c) => c === undefined || c.met === null).length,
      repetitions: checksByRepetition.length,
    };
  });
}

/** "median (min–max)" of a spread's figures in their unit; just the value when they are all equal. */
function spreadText(
  median: number | null,
  min: number | null,
  max: number | null,
  f: (v: number | null) => string,
): string {
  if (median === null) return "–";
  return min === max ? f(median) : `${f(median)} (${f(min)}–${f(max)})`;
}

/** "met in k of n" (and how many were not applicable). */
function metText(s: TargetSpread): string {
  if (s.notApplicable === s.repetitions) return "n/a";
  const na = s.notApplicable === 0 ? "" : ` (n/a in ${s.notApplicable})`;
  return `met in ${s.met} of ${s.repetitions}${na}`;
}

/** The spread summary's lines: `figure: median (min–max), target …: met in k of n`. */
export function formatSpread(spread: TargetSpread[]): string[] {
  return spread.map((s) =>
    `${s.figure}: ${
      spreadText(s.median, s.min, s.max, (v) => formatFigure(v, s.unit))
    } (target ${s.target}): ${metText(s)}`
  );
}

/** Milliseconds as "297 ms" or, from a second, "6.7 s". */
function latencyText(v: number | null): string {
  if (v === null || !Number.isFinite(v)) return "–";
  return v >= 1000 ? `${(v / 1000).toFixed(1)} s` : `${Math.round(v)} ms`;
}

/** A markdown cell of one figure over the repetitions: "median (min–max)", or the value when all agree. */
function cell(values: (number | null)[], f: (v: number | null) => string): string {
  const defined = values.filter((v): v is number => v !== null && Number.isFinite(v));
  if (defined.length === 0) return "–";
  return spreadText(median(defined), Math.min(...defined), Math.max(...defined), f);
}

/** A markdown table: header, separator, rows (cells escaped for `|`). */
function markdownTable(header: string[], rows: string[][]): string {
  const line = (cells: string[]) => `| ${cells.map((c) => c.replaceAll("|", "\\|")).join(" | ")} |`;
  return [line(header), line(header.map(() => "---")), ...rows.map(line)].join("\n");
}

/** What {@link summaryMarkdown} says about the runs. */
export interface SummaryMeta {
  /** Length of a run, seconds. */
  durationSeconds: number;
  /** Seed of the workloads' schedules. */
  seed: number;
  /** The node's CPU, millicores. */
  nodeMillicores: number;
}

/**
 * Where the machine's CPU went besides the scenario's pods, one line per
 * policy (medians over the repetitions, CPU-seconds of the recorded run):
 * MBCAS's pods, this benchmark's own process, and the rest of the machine;
 * null when no run recorded it.
 */
export function cpuAccountLines(rowsByRepetition: LabBenchRow[][]): string[] | null {
  const policies = [...new Set(rowsByRepetition.flat().map((r) => r.policy))];
  const lines: string[] = [];
  for (const policy of policies) {
    const accounts = rowsByRepetition.flat().filter((r) => r.policy === policy)
      .map((r) => r.cpuAccount ?? null).filter((a): a is LabCpuAccount => a !== null);
    if (accounts.length === 0) continue;
    const of = (f: (a: LabCpuAccount) => number) => fmt(median(accounts.map(f)));
    const rest = (a: LabCpuAccount) =>
      a.machineCpuSeconds - a.scenarioPodsCpuSeconds - a.mbcasPodsCpuSeconds - a.harnessCpuSeconds;
    // The commands that used most of the rest, by their median over the repetitions.
    const commands = [...new Set(accounts.flatMap((a) => Object.keys(a.restByCommand ?? {})))]
      .map((command) => ({
        command,
        cpuSeconds: median(accounts.map((a) => a.restByCommand?.[command] ?? 0)) ?? 0,
      }))
      .filter((c) => c.cpuSeconds >= 0.1)
      .sort((a, b) => b.cpuSeconds - a.cpuSeconds || a.command.localeCompare(b.command))
      .slice(0, 6);
    const byCommand = commands.length === 0
      ? ""
      : ` (${commands.map((c) => `${c.command} ${fmt(c.cpuSeconds)}`).join(", ")})`;
    lines.push(
      `${policy}: machine ${of((a) => a.machineCpuSeconds)} CPU-s in ${
        of((a) => a.seconds)
      } s; scenario pods ${of((a) => a.scenarioPodsCpuSeconds)}, MBCAS's pods ${
        of((a) => a.mbcasPodsCpuSeconds)
      }, this benchmark's process ${of((a) => a.harnessCpuSeconds)}, the rest ${
        of(rest)
      }${byCommand}`,
    );
  }
  return lines.length === 0 ? null : lines;
}

/**
 * `summary.md`, ready for docs/lab.md: one line on the runs, a table of each
 * policy's median and min–max over the repetitions (latency p99 of the
 * latency pods, batch CPU-s, node use, work done of the bursty protected
 * pods, throttled seconds of the protected pods, kernel resizes per
 * pod-minute p95 and max, fairness) and a table of MBCAS's targets (median
 * and min–max of its figure, and in how many repetitions it was met).
 * Policies keep the order of the first repetition.
 */
export function summaryMarkdown(
  rowsByRepetition: LabBenchRow[][],
  scenario: Scenario,
  meta: SummaryMeta,
): string {
  const n = rowsByRepetition.length;
  const policies = [...new Set(rowsByRepetition.flat().map((r) => r.policy))];
  const bursty = scenario.pods.filter((p) =>
    p.workload === "bursty" && scenario.roles.protected.includes(p.name)
  ).map((p) => p.name);
  const latencyName = scenario.roles.latency.join("+") || "latency";
  const header = [
    "policy",
    `${latencyName} p99`,
    "batch CPU-s",
    "node use",
    ...bursty.map((p) => `${p} work done`),
    ...scenario.roles.protected.map((p) => `throttled ${p} s`),
    "resizes/pod-min p95",
    "resizes/pod-min max",
    "fairness",
  ];
  const rows = policies.map((policy) => {
    const runs = rowsByRepetition.map((rows) => rows.find((r) => r.policy === policy))
      .filter((r): r is LabBenchRow => r !== undefined);
    const of = (f: (r: LabBenchRow) => number | null) => runs.map(f);
    const count = (v: number | null) => formatFigure(v, "count");
    return [
      policy,
      cell(of((r) => r.latencyP99Ms), latencyText),
      cell(of((r) => r.batchCpuSeconds), (v) => fmt(v)),
      cell(of((r) => r.utilisation), (v) => formatFigure(v, "percent")),
      ...bursty.map((p) =>
        cell(of((r) => r.workDone?.[p] ?? null), (v) => formatFigure(v, "percent"))
      ),
      ...scenario.roles.protected.map((p) =>
        cell(of((r) => r.throttledSeconds[p] ?? null), (v) => fmt(v))
      ),
      cell(of((r) => r.resizesPerPodMinuteP95 ?? null), count),
      cell(of((r) => r.resizesPerPodMinuteMax ?? null), count),
      cell(of((r) => r.fairness), (v) => fmt(v, 3)),
    ];
  });
  const spread = targetSpread(rowsByRepetition.map((rows) => targetChecks(rows, scenario)));
  const targets = spread.map((s) => [
    `${s.figure} ${s.target}`,
    spreadText(s.median, s.min, s.max, (v) => formatFigure(v, s.unit)),
    metText(s).replace(/^met in /, ""),
  ]);
  const what = n === 1 ? "one run" : `median (min–max) over ${n} repetitions`;
  const account = cpuAccountLines(rowsByRepetition);
  const dedicated = rowsByRepetition.flat().find((r) => (r.latencyP99DedicatedMs ?? null) !== null)
    ?.latencyP99DedicatedMs;
  return [
    `Scenario \`${scenario.name}\`, ${meta.durationSeconds} s per policy, seed ${meta.seed}, node ${meta.nodeMillicores}m; ${what}.`,
    "",
    markdownTable(header, rows),
    "",
    `MBCAS's targets (${what}; a ratio is to the named policy of the same repetition):`,
    "",
    markdownTable(["target", "MBCAS", "met"], targets),
    "",
    ...(account === null ? [] : [
      `Where the machine's CPU went (${what}; the rest is the control plane, the kubelet, ` +
      `containerd, other pods and the kernel):`,
      "",
      ...account.map((line) => `- ${line}`),
      "",
    ]),
    ...(dedicated == null ? [] : [
      `On a CPU of its own, with nothing else running, \`${latencyName}\` would serve the same ` +
      `arrivals with a p99 of ${
        latencyText(dedicated)
      }: their queueing alone, the same under every policy.`,
      "",
    ]),
  ].join("\n");
}

/**
 * One row per policy of the medians over the repetitions of every figure the
 * comparison chart draws (the chart of several repetitions shows medians);
 * a throttled key missing in a repetition does not count there. Policies keep
 * the order in which they first appear.
 */
export function medianRows(rowsByRepetition: BenchRow[][]): BenchRow[] {
  const policies = [...new Set(rowsByRepetition.flat().map((r) => r.policy))];
  return policies.map((policy) => {
    const rows = rowsByRepetition.flatMap((rs) => rs.filter((r) => r.policy === policy));
    const m = (f: (r: BenchRow) => number | null) => median(rows.map(f));
    const keys = [...new Set(rows.flatMap((r) => Object.keys(r.throttledSeconds)))];
    return {
      policy,
      latencyP50Ms: m((r) => r.latencyP50Ms),
      latencyP99Ms: m((r) => r.latencyP99Ms),
      throttledSeconds: Object.fromEntries(
        keys.map((k) => [k, m((r) => r.throttledSeconds[k] ?? null) ?? 0]),
      ),
      batchCpuSeconds: m((r) => r.batchCpuSeconds) ?? 0,
      utilisation: m((r) => r.utilisation) ?? 0,
      fairness: m((r) => r.fairness),
      resizes: m((r) => r.resizes) ?? 0,
      spikeToLimitP50S: m((r) => r.spikeToLimitP50S),
      spikeToLimitP99S: m((r) => r.spikeToLimitP99S),
    };
  });
}

/** A run as results.json keeps it: with its repetition (1, 2, …; absent in files written before `--repeat`). */
export type RecordedRun = LabRun & { repetition?: number };

/**
 * Groups runs into repetitions, in order. A run's `repetition` (a whole
 * number ≥ 1) places it; a run without one (results.json written before
 * `--repeat`) joins the current repetition unless that already has its
 * policy, which starts the next.
 */
export function groupRepetitions(runs: RecordedRun[]): LabRun[][] {
  const groups = new Map<number, LabRun[]>();
  let inferred = 1;
  let seen = new Set<string>();
  for (const run of runs) {
    let repetition: number;
    if (Number.isInteger(run.repetition) && run.repetition! >= 1) {
      repetition = run.repetition!;
    } else {
      if (seen.has(run.policy)) {
        inferred++;
        seen = new Set();
      }
      seen.add(run.policy);
      repetition = inferred;
    }
    groups.set(repetition, [...groups.get(repetition) ?? [], run]);
  }
  return [...groups.keys()].sort((a, b) => a - b).map((k) => groups.get(k)!);
}

/** The text of results.json: every run and row, each with its repetition (1, 2, …). */
export function resultsJson(
  runsByRepetition: LabRun[][],
  rowsByRepetition: LabBenchRow[][],
): string {
  const tag = <T extends object>(lists: T[][]) =>
    lists.flatMap((list, i) => list.map((item) => ({ ...item, repetition: i + 1 })));
  return JSON.stringify({
    repetitions: runsByRepetition.length,
    rows: tag(rowsByRepetition),
    runs: tag(runsByRepetition),
  });
}

/** The report file of a run: `report-<policy>.html`, or `report-<policy>-<repetition>.html` for several. */
function reportName(policy: LabPolicy, repetition: number, repetitions: number): string {
  return repetitions === 1 ? `report-${policy}.html` : `report-${policy}-${repetition}.html`;
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
      repeat: { type: "string", default: "1" },
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
  const repetitions = options.repeat;
  const rowsByRepetition: LabBenchRow[][] = [];
  const runsByRepetition: LabRun[][] = [];
  for (let repetition = 1; repetition <= repetitions; repetition++) {
    const rows: LabBenchRow[] = [];
    const runs: LabRun[] = [];
    rowsByRepetition.push(rows);
    runsByRepetition.push(runs);
    const of = repetitions === 1 ? "" : ` (repetition ${repetition} of ${repetitions})`;
    for (const policy of options.policies) {
      console.error(
        `lab-bench: ${policy}${of}: ${scenario.name}, ${options.duration} s, seed ${options.seed}`,
      );
      const run = await runLab({
        scenario,
        policy,
        seed: options.seed,
        log: (line) => console.error(`lab-bench: ${policy}: ${line}`),
      });
      runs.push(run);
      rows.push(benchRow(run, scenario));
      await Deno.writeTextFile(
        join(options.out, reportName(policy, repetition, repetitions)),
        renderReport(run),
      );
      // After every policy, so a failure later keeps what was measured.
      await Deno.writeTextFile(
        join(options.out, "results.json"),
        resultsJson(runsByRepetition, rowsByRepetition),
      );
    }
    printRepetition(runs, rows, scenario, repetition, repetitions);
  }
  await summarise(runsByRepetition, rowsByRepetition, scenario, options.out);
  return 0;
}

/** Prints one repetition's table and target checks. */
function printRepetition(
  runs: LabRun[],
  rows: LabBenchRow[],
  scenario: Scenario,
  repetition: number,
  repetitions: number,
): void {
  const run = runs[0];
  const of = repetitions === 1 ? "" : `repetition ${repetition} of ${repetitions}: `;
  console.log(
    `lab bench: ${of}scenario ${scenario.name}, ${run.durationSeconds} s per policy, seed ${run.seed}, node ${run.nodeCapacityMillicores}m on ${navigator.hardwareConcurrency} cores`,
  );
  console.log(formatTable(rows, scenario));
  console.log("");
  for (const line of checkTargets(rows, scenario)) console.log(line);
  for (const line of cpuAccountLines([rows]) ?? []) console.log(`CPU: ${line}`);
  console.log("");
}

/**
 * Writes the chart (medians over the repetitions, see {@link medianRows})
 * and summary.md, and prints the spread of the targets over the
 * repetitions when there are several.
 */
async function summarise(
  runsByRepetition: LabRun[][],
  rowsByRepetition: LabBenchRow[][],
  scenario: Scenario,
  out: string,
): Promise<void> {
  const n = rowsByRepetition.length;
  await Deno.writeTextFile(
    join(out, "comparison.svg"),
    renderComparisonSvg(medianRows(rowsByRepetition)),
  );
  const run = runsByRepetition[0][0];
  await Deno.writeTextFile(
    join(out, "summary.md"),
    summaryMarkdown(rowsByRepetition, scenario, {
      durationSeconds: run.durationSeconds,
      seed: run.seed,
      nodeMillicores: run.nodeCapacityMillicores,
    }),
  );
  if (n > 1) {
    console.log(`MBCAS's targets over ${n} repetitions: median (min–max)`);
    const spread = targetSpread(rowsByRepetition.map((rows) => targetChecks(rows, scenario)));
    for (const line of formatSpread(spread)) console.log(line);
    console.log("");
  }
  const chart = n === 1 ? "" : ` (comparison.svg shows medians over the ${n} repetitions)`;
  console.log(`written to ${await Deno.realPath(out)}${chart}`);
}

/** `--from`: the figures of recorded runs (one or several repetitions), recomputed. */
async function recompute(from: string, out: string): Promise<number> {
  let runs: RecordedRun[];
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
  const runsByRepetition = groupRepetitions(runs);
  const n = runsByRepetition.length;
  const rowsByRepetition = runsByRepetition.map((rs) => rs.map((run) => benchRow(run, scenario)));
  for (const [i, rs] of runsByRepetition.entries()) {
    for (const run of rs) {
      await Deno.writeTextFile(join(out, reportName(run.policy, i + 1, n)), renderReport(run));
    }
  }
  await Deno.writeTextFile(
    join(out, "results.json"),
    resultsJson(runsByRepetition, rowsByRepetition),
  );
  for (const [i, rs] of runsByRepetition.entries()) {
    printRepetition(rs, rowsByRepetition[i], scenario, i + 1, n);
  }
  await summarise(runsByRepetition, rowsByRepetition, scenario, out);
  return 0;
}

if (import.meta.main) Deno.exit(await main(programArgs()));
