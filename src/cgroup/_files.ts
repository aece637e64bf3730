import type { PsiLine, PsiSample } from "./types.ts";

/** A cgroup file whose contents are not what the kernel writes. */
export class MalformedFile extends Error {
  /** Creates the error with a short description of what was wrong. */
  constructor(detail: string) {
    super(detail);
    this.name = "MalformedFile";
  }
}

/** The CPU pressure (PSI) file of a cgroup. */
export const PRESSURE_FILE = "cpu.pressure";

const DIGITS = /^\d+$/;

// The agent parses a file or two per container every second, and it runs
// without V8's optimising compilers (its manifest: 12 MB less RSS): the
// parsers leave the work per character to the engine's native string and
// regular-expression code, which runs compiled either way, and keep the
// interpreted code per line to a few steps.

/**
 * One line of a flat-keyed file, matched where the previous one ended: an
 * optional `key value` between blanks, then the line's end. A line that is
 * anything else does not match.
 */
const COUNTER_LINE = /[^\S\n]*(?:([a-z_.0-9]+) (\d+))?[^\S\n]*(?:\n|$)/y;

/** The counters of `cpu.stat` a CPU sample uses (v1 and v2 names); absent keys are undefined. */
export interface CpuStatCounters {
  /** v2: cumulative CPU time, microseconds. */
  usageUsec?: number;
  /** CFS enforcement periods elapsed. */
  nrPeriods?: number;
  /** Periods in which the cgroup was throttled. */
  nrThrottled?: number;
  /** v2: cumulative throttled time, microseconds. */
  throttledUsec?: number;
  /** v1: cumulative throttled time, nanoseconds. */
  throttledTime?: number;
}

/** Parses a flat-keyed file (`cpu.stat`): lines of `key value`, values non-negative integers. */
export function parseKeyedCounters(text: string): Map<string, number> {
  const counters = new Map<string, number>();
  forEachCounter(text, (key, value) => counters.set(key, value));
  return counters;
}

/** Parses `cpu.stat`, keeping the counters a CPU sample uses. */
export function parseCpuStat(text: string): CpuStatCounters {
  const stat: CpuStatCounters = {};
  forEachCounter(text, (key, value) => {
    switch (key) {
      case "usage_usec":
        stat.usageUsec = value;
        break;
      case "nr_periods":
        stat.nrPeriods = value;
        break;
      case "nr_throttled":
        stat.nrThrottled = value;
        break;
      case "throttled_usec":
        stat.throttledUsec = value;
        break;
      case "throttled_time":
        stat.throttledTime = value;
        break;
    }
  });
  return stat;
}

/**
 * Calls `visit` with the key and value of every `key value` line (keys
 * `[a-z_.0-9]+`, values safe non-negative integers; blank lines and blanks
 * around a line allowed); throws MalformedFile on any other line, or when
 * there is no line at all.
 */
function forEachCounter(text: string, visit: (key: string, value: number) => void): void {
  let lines = 0;
  COUNTER_LINE.lastIndex = 0;
  while (COUNTER_LINE.lastIndex < text.length) {
    const at = COUNTER_LINE.lastIndex;
    const match = COUNTER_LINE.exec(text);
    if (match === null) {
      const end = text.indexOf("\n", at);
      const line = text.slice(at, end < 0 ? text.length : end).trim();
      throw new MalformedFile(`unexpected line ${JSON.stringify(truncate(line))}`);
    }
    if (match[1] !== undefined) {
      visit(match[1], safeInteger(match[2], match[1]));
      lines++;
    }
  }
  if (lines === 0) throw new MalformedFile("empty file");
}

/** Parses a single integer file (`cpu.shares`, `cpuacct.usage`, `cpu.cfs_quota_us`). */
export function parseSingleInteger(text: string, allowMinusOne = false): number {
  const value = text.trim();
  if (allowMinusOne && value === "-1") return -1;
  if (!DIGITS.test(value)) {
    throw new MalformedFile(`expected an integer, got ${JSON.stringify(truncate(value))}`);
  }
  return safeInteger(value, "value");
}

/** Parses `cpu.max` (v2): `<quota|max> <period>` in microseconds. */
export function parseCpuMax(text: string): { quotaMicros: number | null; periodMicros: number } {
  const match = /^(max|\d+) (\d+)$/.exec(text.trim());
  if (match === null) {
    throw new MalformedFile(
      `expected "<quota|max> <period>", got ${JSON.stringify(truncate(text.trim()))}`,
    );
  }
  const periodMicros = safeInteger(match[2], "period");
  if (periodMicros === 0) throw new MalformedFile("period is 0");
  return { quotaMicros: match[1] === "max" ? null : safeInteger(match[1], "quota"), periodMicros };
}

const PSI_LINE = /^(some|full) avg10=(\d+\.\d+) avg60=(\d+\.\d+) avg300=(\d+\.\d+) total=(\d+)$/;

/** Parses a PSI file (`cpu.pressure`): a `some` line and, on most kernels, a `full` line. */
export function parsePressure(text: string): PsiSample {
  let some: PsiLine | null = null;
  let full: PsiLine | null = null;
  for (const untrimmed of text.split("\n")) {
    const line = untrimmed.trim();
    if (line === "") continue;
    const match = PSI_LINE.exec(line);
    if (match === null) {
      throw new MalformedFile(`unexpected line ${JSON.stringify(truncate(line))}`);
    }
    const parsed: PsiLine = {
      avg10: Number(match[2]),
      avg60: Number(match[3]),
      avg300: Number(match[4]),
      totalMicros: safeInteger(match[5], "total"),
    };
    if (match[1] === "some") some = parsed;
    else full = parsed;
  }
  if (some === null) throw new MalformedFile('no "some" line');
  return { some, full };
}

/** cgroup v2 `cpu.weight` (1..10000) back to v1-style shares (2..262144), as the kubelet maps them. */
export function weightToShares(weight: number): number {
  return Math.round(2 + ((weight - 1) * 262142) / 9999);
}

function safeInteger(digits: string, what: string): number {
  const value = Number(digits);
  if (!Number.isSafeInteger(value)) {
    throw new MalformedFile(`${what} ${truncate(digits)} is out of range`);
  }
  return value;
}

function truncate(text: string): string {
  return text.length > 40 ? `${text.slice(0, 37)}...` : text;
}
