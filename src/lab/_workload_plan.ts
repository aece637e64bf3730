/**
 * Pure core of the lab workloads (`src/lab/workload.ts`): option parsing into
 * a typed plan, the seeded PRNG, Poisson arrivals for a rate schedule, the
 * on/off phase function of the bursty kind and the per-second output line.
 * Nothing here reads a clock, a file or the environment.
 *
 * Times: the schedule and the phases are in seconds since the scenario epoch
 * (`--epoch-ms`), so every policy run of a scenario sees the same timing.
 *
 * @module
 */
import { parseArgs } from "node:util";
import type { WorkloadKind } from "./types.ts";

export type { WorkloadKind };

/** The workload kinds, in the order the usage text lists them. */
export const WORKLOAD_KINDS: readonly WorkloadKind[] = ["latency", "bursty", "batch", "idle"];

/** Iterations of the xorshift loop that make one batch/bursty work unit (about 1 ms of CPU). */
export const UNIT_ITERATIONS = 500_000;

/** Highest request rate accepted, requests per second. */
export const MAX_RATE = 10_000;

/** Highest CPU cost of one request accepted, milliseconds. */
export const MAX_COST_MS = 60_000;

/** Highest number of busy threads accepted. */
export const MAX_PARALLELISM = 64;

/** From `fromS` seconds after the epoch on, requests arrive at `rate` per second. */
export interface RateStep {
  /** Start of the step, seconds since the epoch. */
  fromS: number;
  /** Requests per second from then on (until the next step). */
  rate: number;
}

/** On/off phases of the bursty kind: on during `[offsetS + k·(onS+offS), offsetS + k·(onS+offS) + onS)`. */
export interface PhasePlan {
  /** Length of an on phase, seconds (> 0). */
  onS: number;
  /** Length of an off phase, seconds (0 = always on). */
  offS: number;
  /** Start of the first on phase, seconds after the epoch (may be negative). */
  offsetS: number;
}

/** Options every kind takes. */
export interface CommonPlan {
  /** File the per-second lines are appended to. */
  out: string;
  /** Unix ms when the scenario started; schedules, phases and the output grid are aligned to it. */
  epochMs: number;
  /** Seed of the random arrivals (a safe integer ≥ 0; only its value modulo 2^32 matters). */
  seed: number;
  /** Seconds to run before exiting on its own; null = until SIGTERM. */
  durationS: number | null;
}

/** Latency-sensitive service: Poisson arrivals, a fixed CPU cost per request, one FIFO server. */
export interface LatencyPlan extends CommonPlan {
  /** Kind. */
  kind: "latency";
  /** Arrival rate over time; first step at 0, steps strictly increasing. */
  schedule: RateStep[];
  /** CPU time each request costs, milliseconds. */
  costMs: number;
}

/** On/off bursts of `parallelism` busy threads. */
export interface BurstyPlan extends CommonPlan {
  /** Kind. */
  kind: "bursty";
  /** The phases. */
  phases: PhasePlan;
  /** Busy threads during on phases. */
  parallelism: number;
}

/** Always-hungry batch job of `parallelism` busy threads. */
export interface BatchPlan extends CommonPlan {
  /** Kind. */
  kind: "batch";
  /** Busy threads. */
  parallelism: number;
}

/** A process that sleeps. */
export interface IdlePlan extends CommonPlan {
  /** Kind. */
  kind: "idle";
}

/** What a workload process is to do, as validated from its command line. */
export type WorkloadPlan = LatencyPlan | BurstyPlan | BatchPlan | IdlePlan;

/** Outcome of parsing a command line: a plan, a request for help, or one error line. */
export type ParseOutcome =
  | { status: "plan"; plan: WorkloadPlan }
  | { status: "help" }
  | { status: "error"; message: string };

/** Usage text of the workload program. */
export const USAGE =
  `usage: deno run --no-prompt --allow-write=OUT src/lab/workload.ts --kind KIND --out OUT [options]

Runs one lab workload until SIGTERM (or --duration-s) and appends one JSON line per
second to OUT: {"t", "kind", "cpuMs", "units" (batch, bursty), "latenciesMs" and "queue" (latency)}.

Every kind:
  --kind KIND            latency | bursty | batch | idle (required)
  --out FILE             file to append the per-second lines to (required)
  --epoch-ms MS          unix ms when the scenario started (default: now); schedules,
                         phases and the output lines are aligned to it
  --seed N               seed of the random arrivals, a whole number >= 0 (default 1;
                         only its value modulo 2^32 matters)
  --duration-s S         exit 0 on its own S seconds after starting (default: run until SIGTERM)
latency (Poisson arrivals, one FIFO server):
  --rate R               requests per second (default 20)
  --rate-schedule LIST   "S:R,S:R,...": from S seconds after the epoch on, R requests per
                         second; the first S must be 0 (excludes --rate)
  --cost-ms MS           CPU time each request costs (default 5)
bursty (on/off phases):
  --on-s S               length of an on phase (default 10)
  --off-s S              length of an off phase (default 10; 0 = always on)
  --phase-offset-s S     the first on phase starts S seconds after the epoch (default 0)
  --parallelism N        busy threads during on phases, 1..${MAX_PARALLELISM} (default 1)
batch (always hungry):
  --parallelism N        busy threads, 1..${MAX_PARALLELISM} (default 1)`;

const KIND_OPTIONS: Record<WorkloadKind, readonly string[]> = {
  latency: ["rate", "rate-schedule", "cost-ms"],
  bursty: ["on-s", "off-s", "phase-offset-s", "parallelism"],
  batch: ["parallelism"],
  idle: [],
};

const NUMBER_PATTERN = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/;

class OptionError extends Error {}

interface NumberRule {
  min: number;
  max: number;
  integer?: boolean;
  /** When true, `min` itself is excluded. */
  above?: boolean;
}

function numberOption(name: string, raw: string, rule: NumberRule): number {
  const value = NUMBER_PATTERN.test(raw.trim()) ? Number(raw) : NaN;
  const what = rule.integer ? "a whole number" : "a number";
  const low = rule.above ? `greater than ${rule.min}` : `at least ${rule.min}`;
  if (!Number.isFinite(value) || (rule.integer && !Number.isInteger(value))) {
    throw new OptionError(`--${name} must be ${what}, got ${JSON.stringify(raw)}`);
  }
  if (rule.above ? value <= rule.min : value < rule.min) {
    throw new OptionError(`--${name} must be ${low}, got ${JSON.stringify(raw)}`);
  }
  if (value > rule.max) {
    throw new OptionError(`--${name} must be at most ${rule.max}, got ${JSON.stringify(raw)}`);
  }
  return value;
}

/**
 * Parses `--rate-schedule` text ("0:20,60:40,120:10") into steps. Throws an
 * Error whose message names the option and the value when it is malformed.
 */
export function parseRateSchedule(text: string): RateStep[] {
  const bad = (why: string) =>
    new OptionError(`--rate-schedule ${why}, got ${JSON.stringify(text)}`);
  const entries = text.split(",").map((entry) => entry.trim());
  const steps: RateStep[] = [];
  for (const entry of entries) {
    const parts = entry.split(":");
    if (parts.length !== 2 || !NUMBER_PATTERN.test(parts[0]) || !NUMBER_PATTERN.test(parts[1])) {
      throw bad(`entry ${JSON.stringify(entry)} is not SECONDS:RATE`);
    }
    const fromS = Number(parts[0]);
    const rate = Number(parts[1]);
    if (!Number.isFinite(fromS) || fromS < 0) {
      throw bad(`entry ${JSON.stringify(entry)} starts before 0`);
    }
    if (!Number.isFinite(rate) || rate < 0 || rate > MAX_RATE) {
      throw bad(`entry ${JSON.stringify(entry)} has a rate outside 0..${MAX_RATE}`);
    }
    const previous = steps.at(-1);
    if (previous === undefined && fromS !== 0) throw bad("must start at second 0");
    if (previous !== undefined && fromS <= previous.fromS) {
      throw bad(`entry ${JSON.stringify(entry)} does not start after the one before`);
    }
    steps.push({ fromS, rate });
  }
  return steps;
}

/**
 * Parses and validates a workload command line. `nowMs` is the default of
 * `--epoch-ms`. Errors come back as one line naming the option and its value.
 */
export function parseWorkloadArgs(args: readonly string[], nowMs: number): ParseOutcome {
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({
      args: [...args],
      options: {
        kind: { type: "string" },
        out: { type: "string" },
        "epoch-ms": { type: "string" },
        seed: { type: "string" },
        "duration-s": { type: "string" },
        rate: { type: "string" },
        "rate-schedule": { type: "string" },
        "cost-ms": { type: "string" },
        "on-s": { type: "string" },
        "off-s": { type: "string" },
        "phase-offset-s": { type: "string" },
        parallelism: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (error) {
    // node:util's messages can span lines; the error is to be one line.
    return { status: "error", message: (error as Error).message.replace(/\s*\n\s*/g, " ") };
  }
  if (values.help) return { status: "help" };
  try {
    return { status: "plan", plan: buildPlan(values as Record<string, string | undefined>, nowMs) };
  } catch (error) {
    if (error instanceof OptionError) return { status: "error", message: error.message };
    throw error;
  }
}

function buildPlan(values: Record<string, string | undefined>, nowMs: number): WorkloadPlan {
  const kind = values.kind;
  if (kind === undefined) {
    throw new OptionError("--kind is required (latency, bursty, batch or idle)");
  }
  if (!(WORKLOAD_KINDS as readonly string[]).includes(kind)) {
    throw new OptionError(
      `--kind must be latency, bursty, batch or idle, got ${JSON.stringify(kind)}`,
    );
  }
  const workloadKind = kind as WorkloadKind;
  const allowed = KIND_OPTIONS[workloadKind];
  for (const option of Object.values(KIND_OPTIONS).flat()) {
    if (values[option] !== undefined && !allowed.includes(option)) {
      throw new OptionError(
        `--${option} does not apply to --kind ${workloadKind}, got ${
          JSON.stringify(values[option])
        }`,
      );
    }
  }
  const out = values.out;
  if (out === undefined || out === "") {
    throw new OptionError(`--out must name a file, got ${JSON.stringify(out ?? null)}`);
  }
  const get = (name: string, fallback: string) => values[name] ?? fallback;
  const common: CommonPlan = {
    out,
    epochMs: numberOption("epoch-ms", get("epoch-ms", String(nowMs)), {
      min: 0,
      max: 8.64e15,
    }),
    seed: numberOption("seed", get("seed", "1"), {
      min: 0,
      max: Number.MAX_SAFE_INTEGER,
      integer: true,
    }),
    durationS: values["duration-s"] === undefined
      ? null
      : numberOption("duration-s", values["duration-s"], { min: 0, max: 1e6, above: true }),
  };
  switch (workloadKind) {
    case "latency": {
      if (values.rate !== undefined && values["rate-schedule"] !== undefined) {
        throw new OptionError(
          `--rate-schedule excludes --rate, got --rate ${JSON.stringify(values.rate)}`,
        );
      }
      const schedule = values["rate-schedule"] !== undefined
        ? parseRateSchedule(values["rate-schedule"])
        : [{ fromS: 0, rate: numberOption("rate", get("rate", "20"), { min: 0, max: MAX_RATE }) }];
      const costMs = numberOption("cost-ms", get("cost-ms", "5"), {
        min: 0,
        max: MAX_COST_MS,
        above: true,
      });
      return { ...common, kind: "latency", schedule, costMs };
    }
    case "bursty":
      return {
        ...common,
        kind: "bursty",
        phases: {
          onS: numberOption("on-s", get("on-s", "10"), { min: 0, max: 1e7, above: true }),
          offS: numberOption("off-s", get("off-s", "10"), { min: 0, max: 1e7 }),
          offsetS: numberOption("phase-offset-s", get("phase-offset-s", "0"), {
            min: -1e7,
            max: 1e7,
          }),
        },
        parallelism: parallelism(get("parallelism", "1")),
      };
    case "batch":
      return { ...common, kind: "batch", parallelism: parallelism(get("parallelism", "1")) };
    case "idle":
      return { ...common, kind: "idle" };
  }
}

function parallelism(raw: string): number {
  return numberOption("parallelism", raw, { min: 1, max: MAX_PARALLELISM, integer: true });
}

/** The mulberry32 PRNG: a function returning uniform numbers in [0, 1), determined by `seed` modulo 2^32. */
export function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 15), z | 1);
    z ^= z + Math.imul(z ^ (z >>> 7), z | 61);
    return ((z ^ (z >>> 14)) >>> 0) / 4294967296;
  };
}

/** The rate of `schedule` at `tS` seconds after the epoch (0 before the first step). */
export function rateAt(schedule: readonly RateStep[], tS: number): number {
  let rate = 0;
  for (const step of schedule) {
    if (step.fromS > tS) break;
    rate = step.rate;
  }
  return rate;
}

/**
 * Arrival times (seconds since the epoch, non-decreasing) of a Poisson process
 * whose rate follows `schedule`, drawn from `seed`. The sequence depends only
 * on the schedule and the seed, never on when it is read. Exact for piecewise
 * constant rates (time rescaling: unit-exponential gaps in cumulative
 * intensity). Infinite unless the last step's rate is 0.
 */
export function* arrivalSeconds(schedule: readonly RateStep[], seed: number): Generator<number> {
  const random = mulberry32(seed);
  const draw = () => -Math.log(1 - random());
  let step = 0;
  let t = schedule[0]?.fromS ?? 0;
  let remaining = draw();
  while (step < schedule.length) {
    const { rate } = schedule[step];
    const end = step + 1 < schedule.length ? schedule[step + 1].fromS : Infinity;
    if (rate > 0 && t + remaining / rate < end) {
      t += remaining / rate;
      yield t;
      remaining = draw();
      continue;
    }
    if (end === Infinity) return;
    if (rate > 0) remaining = Math.max(0, remaining - (end - t) * rate);
    t = end;
    step++;
  }
}

/** The arrivals of {@link arrivalSeconds} that fall in `[fromS, toS)`. */
export function poissonArrivals(
  schedule: readonly RateStep[],
  seed: number,
  fromS: number,
  toS: number,
): number[] {
  const arrivals: number[] = [];
  for (const t of arrivalSeconds(schedule, seed)) {
    if (t >= toS) break;
    if (t >= fromS) arrivals.push(t);
  }
  return arrivals;
}

function positiveModulo(x: number, m: number): number {
  const r = x % m;
  return r < 0 ? r + m : r;
}

/** Whether `tS` seconds after the epoch falls in an on phase. */
export function isOnPhase(tS: number, phases: PhasePlan): boolean {
  if (phases.offS === 0) return true;
  return positiveModulo(tS - phases.offsetS, phases.onS + phases.offS) < phases.onS;
}

/** The first time after `tS` (seconds since the epoch) when the phase flips; Infinity when it never does. */
export function nextPhaseChangeS(tS: number, phases: PhasePlan): number {
  if (phases.offS === 0) return Infinity;
  const period = phases.onS + phases.offS;
  const into = positiveModulo(tS - phases.offsetS, period);
  const start = tS - into;
  return into < phases.onS ? start + phases.onS : start + period;
}

/** The next output time after `nowMs`: the grid of whole seconds after the epoch. */
export function nextTickMs(nowMs: number, epochMs: number): number {
  return epochMs + (Math.floor((nowMs - epochMs) / 1000) + 1) * 1000;
}

/**
 * Latencies (ms) of requests completed, pairing each completion time with its
 * scheduled arrival time (both unix ms, same order).
 */
export function latenciesMs(
  arrivalsMs: readonly number[],
  completionsMs: readonly number[],
): number[] {
  return completionsMs.map((done, i) => done - arrivalsMs[i]);
}

/**
 * Requests waiting or in service at `nowMs`: the not-yet-completed arrivals
 * (`pendingArrivalsMs`, sorted) scheduled at or before `nowMs`.
 */
export function queueLength(pendingArrivalsMs: readonly number[], nowMs: number): number {
  let n = 0;
  while (n < pendingArrivalsMs.length && pendingArrivalsMs[n] <= nowMs) n++;
  return n;
}

/** What one second of a workload measured. */
export interface SecondMeasure {
  /** Unix ms at the end of the interval. */
  t: number;
  /** Kind of the workload. */
  kind: WorkloadKind;
  /** Process CPU time used over the interval, microseconds. */
  cpuMicros: number;
  /** Work units completed over the interval (batch, bursty). */
  units: number;
  /** Latencies of requests completed over the interval, ms (latency). */
  latenciesMs: readonly number[];
  /** Requests waiting or in service at the end of the interval (latency). */
  queue: number;
}

/** One output line: the fields of {@link SecondMeasure} that apply to the kind. */
export interface SummaryLine {
  /** Unix ms at the end of the interval. */
  t: number;
  /** Kind of the workload. */
  kind: WorkloadKind;
  /** Process CPU time used over the interval, ms (one decimal). */
  cpuMs: number;
  /** Work units completed (batch, bursty only). */
  units?: number;
  /** Latencies of requests completed, ms with two decimals (latency only). */
  latenciesMs?: number[];
  /** Requests waiting or in service (latency only). */
  queue?: number;
}

function round(value: number, digits: number): number {
  const factor = 10 ** digits;
  return Math.round(value * factor) / factor;
}

/** Builds the output record of one interval, keeping only the fields of its kind. */
export function summarize(measure: SecondMeasure): SummaryLine {
  const line: SummaryLine = {
    t: Math.round(measure.t),
    kind: measure.kind,
    cpuMs: round(measure.cpuMicros / 1000, 1),
  };
  if (measure.kind === "batch" || measure.kind === "bursty") line.units = measure.units;
  if (measure.kind === "latency") {
    line.latenciesMs = measure.latenciesMs.map((l) => round(l, 2));
    line.queue = measure.queue;
  }
  return line;
}

/** The text appended to the output file for one interval: one JSON line. */
export function summaryText(measure: SecondMeasure): string {
  return `${JSON.stringify(summarize(measure))}\n`;
}
