/**
 * `deno task inspect`: samples every container cgroup under a cgroup root
 * twice, `--interval-ms` apart, and prints one JSON line per container with its
 * CPU signals, then one line per directory it could not classify.
 *
 * Runs with `--allow-read` on the cgroup root only.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { z } from "zod";
import {
  CgroupRootError,
  computeSignals,
  type ContainerCgroup,
  detectLayout,
  discover,
  limitMillicores,
  readSample,
  type SampleResult,
} from "../cgroup/mod.ts";
import { programArgs } from "../config/mod.ts";

const USAGE = `usage: deno task inspect -- [--cgroup-root DIR] [--interval-ms N]

Samples every Kubernetes container cgroup under DIR (default /sys/fs/cgroup)
twice, N ms apart (default 1000), and prints one JSON line per container:
  {"podUID", "qos", "containerID", "path", "cgroupVersion", "usageMillicores",
   "throttledRatio", "throttledMillicores", "limitMillicores", "psiSomeAvg10", ...}
then one {"unclassified": path, "reason": ...} line per directory it could not classify.`;

/** Deno 2.9 refuses every read under /sys, /proc and /dev unless given --allow-all (denoland/deno#27564). */
const SYS_DENIED = (root: string) =>
  `inspect: Deno reads nothing under ${root} without --allow-all (it treats /sys as a special path).
Either bind-mount the cgroup root elsewhere and keep read-only, least-privilege access (what the agent's DaemonSet does):
  sudo mkdir -p /run/mbcas/cgroup && sudo mount --rbind ${root} /run/mbcas/cgroup
  deno task inspect -- --cgroup-root /run/mbcas/cgroup
or run with --allow-all: deno task inspect:host`;

const optionsSchema = z.object({
  cgroupRoot: z.string().min(1, "must be a directory path"),
  intervalMs: z.coerce.number({ error: "must be a whole number of milliseconds" }).int(
    "must be a whole number of milliseconds",
  ).min(1, "must be at least 1").max(600_000, "must be at most 600000"),
});

/** Runs the inspect CLI; returns the exit code. Output goes through `print`/`printError`. */
export async function runInspectCli(
  args: string[],
  print: (line: string) => void,
  printError: (line: string) => void,
  now: () => number = () => performance.now(),
  sleep: (ms: number) => Promise<void> = (ms) => new Promise((r) => setTimeout(r, ms)),
): Promise<number> {
  let options: z.infer<typeof optionsSchema>;
  try {
    const { values } = parseArgs({
      args,
      options: {
        "cgroup-root": { type: "string", default: "/sys/fs/cgroup" },
        "interval-ms": { type: "string", default: "1000" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
    });
    if (values.help) {
      print(USAGE);
      return 0;
    }
    const parsed = optionsSchema.safeParse({
      cgroupRoot: values["cgroup-root"],
      intervalMs: values["interval-ms"],
    });
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const flag = issue.path[0] === "intervalMs" ? "--interval-ms" : "--cgroup-root";
      const given = issue.path[0] === "intervalMs" ? values["interval-ms"] : values["cgroup-root"];
      printError(`inspect: ${flag} ${issue.message}, got ${JSON.stringify(given)}`);
      return 2;
    }
    options = parsed.data;
  } catch (error) {
    printError(`inspect: ${(error as Error).message}\n${USAGE}`);
    return 2;
  }

  let layout;
  let found;
  try {
    layout = detectLayout(options.cgroupRoot);
    found = discover(layout);
  } catch (error) {
    if (error instanceof CgroupRootError) {
      printError(`inspect: ${error.message}`);
      return 2;
    }
    if (error instanceof Deno.errors.NotCapable && /^\/(sys|proc|dev)\b/.test(options.cgroupRoot)) {
      printError(SYS_DENIED(options.cgroupRoot));
      return 2;
    }
    throw error;
  }
  const { pods, unclassified } = found;
  const containers = pods.flatMap((pod) => pod.containers);
  const first = containers.map((c) => readSample(layout, c.relativePath, now()));
  await sleep(options.intervalMs);
  const second = containers.map((c) => readSample(layout, c.relativePath, now()));
  containers.forEach((container, i) => {
    print(JSON.stringify(describe(container, layout.version, first[i], second[i])));
  });
  for (const entry of unclassified) {
    print(JSON.stringify({ unclassified: entry.relativePath, reason: entry.reason }));
  }
  return 0;
}

function describe(
  container: ContainerCgroup,
  cgroupVersion: 1 | 2,
  before: SampleResult,
  after: SampleResult,
): Record<string, unknown> {
  const base = {
    podUID: container.podUID,
    qos: container.qos,
    containerID: container.containerID,
    sandbox: container.sandbox,
    path: container.relativePath,
    cgroupVersion,
  };
  const failed = before.status !== "ok" ? before : after.status !== "ok" ? after : null;
  if (failed !== null || before.status !== "ok" || after.status !== "ok") {
    const { status, ...detail } = failed!;
    return { ...base, status, ...detail };
  }
  const result = computeSignals(before.sample, after.sample);
  if (result.status !== "ok") {
    const { status, ...detail } = result;
    return { ...base, status, ...detail, limitMillicores: limitMillicores(after.sample) };
  }
  const s = result.signals;
  return {
    ...base,
    status: "ok",
    usageMillicores: round(s.usageMillicores),
    throttledRatio: round(s.throttledRatio, 3),
    throttledMillicores: round(s.throttledMillicores),
    limitMillicores: s.limitMillicores === null ? null : round(s.limitMillicores),
    psiSomeAvg10: s.psiSomeAvg10,
    psiSomeStallRatio: s.psiSomeStallRatio === null ? null : round(s.psiSomeStallRatio, 3),
  };
}

function round(value: number, digits = 1): number {
  const factor = 10 ** digits;
  return Math.round(value * factor) / factor;
}

if (import.meta.main) {
  const code = await runInspectCli(programArgs(), console.log, console.error);
  Deno.exit(code);
}
