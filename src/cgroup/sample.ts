/**
 * Reading one container's CPU counters from its cgroup files, on v1 or v2.
 * Every failure is a typed result: a vanished cgroup, a missing file, a file
 * with garbage in it. Nothing here crashes, and nothing reads as an idle zero.
 *
 * @module
 */
import { join } from "node:path";
import {
  MalformedFile,
  parseCpuMax,
  parseKeyedCounters,
  parsePressure,
  parseSingleInteger,
  weightToShares,
} from "./_files.ts";
import type { CgroupLayout, CpuSample, PsiSample, SampleResult } from "./types.ts";

/** A required file was absent. */
class MissingFile extends Error {
  constructor(readonly file: string) {
    super(`missing ${file}`);
  }
}

/** Reads one sample of the container cgroup at `relativePath`, stamped with `atMs`. */
export function readSample(layout: CgroupLayout, relativePath: string, atMs: number): SampleResult {
  const cpuDir = join(layout.cpuDir, relativePath);
  let file = cpuDir;
  try {
    const read = (dir: string, name: string, required: boolean): string | null => {
      file = join(dir, name);
      try {
        return Deno.readTextFileSync(file);
      } catch (error) {
        if (!(error instanceof Deno.errors.NotFound)) throw error;
        if (required) throw new MissingFile(file);
        return null;
      }
    };
    const sample = layout.version === 2
      ? readV2(cpuDir, atMs, read)
      : readV1(layout, relativePath, cpuDir, atMs, read);
    const psiText = layout.psiDir === null
      ? null
      : read(join(layout.psiDir, relativePath), "cpu.pressure", false);
    sample.psi = psiText === null ? null : parsePressure(psiText);
    return { status: "ok", sample };
  } catch (error) {
    if (error instanceof MissingFile) {
      return exists(cpuDir)
        ? { status: "missing-file", file: error.file }
        : { status: "vanished", path: cpuDir };
    }
    if (error instanceof MalformedFile) return { status: "malformed", file, detail: error.message };
    throw error;
  }
}

type Reader = (dir: string, name: string, required: boolean) => string | null;

function readV2(dir: string, atMs: number, read: Reader): CpuSample {
  const stat = parseKeyedCounters(read(dir, "cpu.stat", true)!);
  const usage = stat.get("usage_usec");
  if (usage === undefined) throw new MalformedFile("no usage_usec");
  const max = parseCpuMax(read(dir, "cpu.max", true)!);
  const weight = read(dir, "cpu.weight", false);
  return {
    atMs,
    usageNanos: usage * 1000,
    periods: stat.get("nr_periods") ?? 0,
    throttledPeriods: stat.get("nr_throttled") ?? 0,
    throttledNanos: (stat.get("throttled_usec") ?? 0) * 1000,
    quotaMicros: max.quotaMicros,
    periodMicros: max.periodMicros,
    shares: weight === null ? null : weightToShares(parseSingleInteger(weight)),
    psi: null as PsiSample | null,
  };
}

function readV1(
  layout: CgroupLayout,
  relativePath: string,
  cpuDir: string,
  atMs: number,
  read: Reader,
): CpuSample {
  const usage = parseSingleInteger(
    read(join(layout.cpuacctDir, relativePath), "cpuacct.usage", true)!,
  );
  const stat = parseKeyedCounters(read(cpuDir, "cpu.stat", true)!);
  const quota = parseSingleInteger(read(cpuDir, "cpu.cfs_quota_us", true)!, true);
  const period = parseSingleInteger(read(cpuDir, "cpu.cfs_period_us", true)!);
  if (period === 0) throw new MalformedFile("period is 0");
  const shares = read(cpuDir, "cpu.shares", false);
  return {
    atMs,
    usageNanos: usage,
    periods: stat.get("nr_periods") ?? 0,
    throttledPeriods: stat.get("nr_throttled") ?? 0,
    throttledNanos: stat.get("throttled_time") ?? 0,
    quotaMicros: quota < 0 ? null : quota,
    periodMicros: period,
    shares: shares === null ? null : parseSingleInteger(shares),
    psi: null,
  };
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}
