/**
 * A pod cgroup's CPU weight: `cpu.shares` (v1, 2..262144) or `cpu.weight`
 * (v2, 1..10000). The kernel shares a contended CPU between sibling cgroups
 * in proportion to it; the kubelet sets a pod's from its CPU requests. The
 * agent lowers an elastic pod's to the lowest value, so every other pod gets
 * the CPU it wants first, and puts the kubelet's value back when it is done.
 *
 * @module
 */
import { join } from "node:path";
import { parseSingleInteger } from "./_files.ts";
import type { CgroupLayout, CgroupVersion } from "./types.ts";

/** The file that holds a cgroup's CPU weight, and its range, by cgroup version. */
export interface CpuWeightFile {
  /** `cpu.shares` (v1) or `cpu.weight` (v2). */
  name: "cpu.shares" | "cpu.weight";
  /** The lowest value the kernel accepts: 2 (v1) or 1 (v2). */
  lowest: number;
  /** The highest: 262144 (v1) or 10000 (v2). */
  highest: number;
}

/** The CPU weight file of a hierarchy of the given version. */
export function cpuWeightFile(version: CgroupVersion): CpuWeightFile {
  return version === 1
    ? { name: "cpu.shares", lowest: 2, highest: 262_144 }
    : { name: "cpu.weight", lowest: 1, highest: 10_000 };
}

/** What reading or writing a CPU weight gave. */
export type CpuWeightResult =
  | { status: "ok"; value: number }
  /** The cgroup (or its weight file) is not there: the pod is gone or not started. */
  | { status: "missing"; path: string }
  /** Permission denied, a read-only mount, or a value the kernel refused. */
  | { status: "refused"; path: string; detail: string }
  /** The file does not hold one integer in the version's range. */
  | { status: "malformed"; path: string; detail: string };

/** Reads the CPU weight of the cgroup at `relativePath` (relative to the CPU hierarchy). */
export function readCpuWeight(layout: CgroupLayout, relativePath: string): CpuWeightResult {
  const file = cpuWeightFile(layout.version);
  const path = join(layout.cpuDir, relativePath, file.name);
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (error) {
    return failure(error, path);
  }
  try {
    const value = parseSingleInteger(text);
    if (value < file.lowest || value > file.highest) {
      return {
        status: "malformed",
        path,
        detail: `${value} is outside ${file.lowest}..${file.highest}`,
      };
    }
    return { status: "ok", value };
  } catch (error) {
    return { status: "malformed", path, detail: (error as Error).message };
  }
}

/**
 * Writes `value` as the CPU weight of the existing cgroup at `relativePath`
 * and reads it back; never creates a file or directory.
 *
 * @throws {RangeError} when `value` is not an integer in the version's range.
 */
export function writeCpuWeight(
  layout: CgroupLayout,
  relativePath: string,
  value: number,
): CpuWeightResult {
  const file = cpuWeightFile(layout.version);
  if (!Number.isInteger(value) || value < file.lowest || value > file.highest) {
    throw new RangeError(
      `${file.name} must be an integer from ${file.lowest} to ${file.highest}, got ${value}`,
    );
  }
  const path = join(layout.cpuDir, relativePath, file.name);
  try {
    Deno.writeTextFileSync(path, `${value}\n`, { create: false });
  } catch (error) {
    return failure(error, path);
  }
  const back = readCpuWeight(layout, relativePath);
  if (back.status === "ok" && back.value !== value) {
    return { status: "refused", path, detail: `wrote ${value}, reads back ${back.value}` };
  }
  return back;
}

function failure(error: unknown, path: string): CpuWeightResult {
  if (error instanceof Deno.errors.NotFound) return { status: "missing", path };
  return { status: "refused", path, detail: (error as Error).message };
}
