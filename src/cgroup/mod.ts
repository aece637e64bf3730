/**
 * The agent's eyes on the kernel: finds every pod's and container's cgroup on
 * a node (cgroup v1, v2 and hybrid; systemd and cgroupfs drivers; nested
 * kubelet roots such as kind's), reads their CPU counters, and turns two
 * readings into the signals the market needs: usage, throttled ratio,
 * throttled time, limit, and PSI stall rates.
 *
 * Discovery and reading touch only files below the cgroup root, so the agent
 * runs with `--allow-read=/sys/fs/cgroup`. Rates are pure functions of two
 * samples. Every failure (a vanished cgroup, a missing or garbled file, a
 * counter reset, a zero interval) is a typed result, never a crash and never a
 * silent zero.
 *
 * @example
 * ```ts
 * import { computeSignals, detectLayout, discover, readSample } from "./mod.ts";
 * const layout = detectLayout("/sys/fs/cgroup");
 * const { pods } = discover(layout);
 * const container = pods[0].containers[0];
 * const a = readSample(layout, container.relativePath, performance.now());
 * // ... one second later
 * const b = readSample(layout, container.relativePath, performance.now());
 * if (a.status === "ok" && b.status === "ok") console.log(computeSignals(a.sample, b.sample));
 * ```
 *
 * @module
 */
export { CgroupRootError, detectLayout, discover } from "./discover.ts";
export type { DiscoverOptions } from "./discover.ts";
export { CgroupSampler, readSample } from "./sample.ts";
export type { CgroupSamplerOptions } from "./sample.ts";
export { readCpuUsageNanos } from "./_usage.ts";
export { computeSignals, limitMillicores } from "./signals.ts";
export { bareContainerID } from "./_names.ts";
export { cpuWeightFile, readCpuWeight, writeCpuWeight } from "./weight.ts";
export type { CpuWeightFile, CpuWeightResult } from "./weight.ts";
export type * from "./types.ts";
