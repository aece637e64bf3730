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
const KEY = /^[a-z_.0-9]+$/;

/** Parses a flat-keyed file (`cpu.stat`): lines of `key value`, values non-negative integers. */
export function parseKeyedCounters(text: string): Map<string, number> {
  const counters = new Map<string, number>();
  for (const line of nonEmptyLines(text)) {
    const space = line.indexOf(" ");
    const key = line.slice(0, space);
    const value = line.slice(space + 1);
    if (space <= 0 || !KEY.test(key) || !DIGITS.test(value)) {
      throw new MalformedFile(`unexpected line ${JSON.stringify(truncate(line))}`);
    }
    counters.set(key, safeInteger(value, key));
  }
  if (counters.size === 0) throw new MalformedFile("empty file");
  return counters;
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
  for (const line of nonEmptyLines(text)) {
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

/** The trimmed, non-empty lines of a file. */
function* nonEmptyLines(text: string): Generator<string> {
  let start = 0;
  while (start < text.length) {
    let end = text.indexOf("\n", start);
    if (end < 0) end = text.length;
    const line = text.slice(start, end).trim();
    start = end + 1;
    if (line !== "") yield line;
  }
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
