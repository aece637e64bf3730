/**
 * `deno task bench:cgroup`: CPU cost of one discovery pass and one sampling
 * pass (every container read once) over 110 pods × 3 containers, on generated
 * v2 and v1 trees and, as root, on real kernel cgroups: every file each pass,
 * and the agent's pass (`slowLimits`: the CFS quota every 30th pass, averaged
 * over the passes; `pressureWhenThrottled`: PSI only for a container
 * throttled since its previous sample) twice: with no container throttled
 * (the benchmark's containers run nothing) and as it would be with every
 * container throttled (PSI read for all, the same reads as before
 * `pressureWhenThrottled`). Target: the agent's sampling pass ≤ 5 ms of CPU.
 * The agent runs without V8's optimising compilers (its manifest's
 * DENO_V8_FLAGS); run the benchmark with the same flags for its figures:
 * `DENO_V8_FLAGS=--no-opt,--no-maglev deno task bench:cgroup`.
 */
import { cpuUsage } from "node:process";
import { CgroupSampler, detectLayout, discover } from "../../src/cgroup/mod.ts";
import type { CgroupLayout, CgroupSamplerOptions } from "../../src/cgroup/mod.ts";
import { CgroupFixture, containerId, type FixtureLayout, podUid } from "../cgroup/_fixtures.ts";
import { RealCgroupTree, realCgroupV1Missing } from "../cgroup/_real_kernel.ts";

const PODS = 110;
const CONTAINERS = 3;
const PASSES = 200;

interface Row {
  tree: string;
  containers: number;
  discoverMs: number;
  sampleMs: number;
  wallMs: number;
  /** The agent's pass with no container throttled: the quota every 30th sample, no PSI. */
  agentSampleMs: number;
  /** The agent's pass with every container throttled: the quota every 30th sample, PSI every time. */
  agentThrottledMs: number;
}

/** Mean CPU and wall time of a sampling pass over `paths`, after a warm-up. */
function samplingPass(
  layout: CgroupLayout,
  paths: string[],
  options: CgroupSamplerOptions,
): { cpuMs: number; wallMs: number } {
  const sampler = new CgroupSampler(layout, options);
  try {
    for (let i = 0; i < 20; i++) for (const p of paths) sampler.read(p, i); // warm-up
    const start = cpuMs();
    const wall = performance.now();
    for (let i = 0; i < PASSES; i++) {
      for (const p of paths) {
        const r = sampler.read(p, i);
        if (r.status !== "ok") throw new Error(`${p}: ${JSON.stringify(r)}`);
      }
    }
    return { cpuMs: (cpuMs() - start) / PASSES, wallMs: (performance.now() - wall) / PASSES };
  } finally {
    sampler.close();
  }
}

function cpuMs(): number {
  const u = cpuUsage();
  return (u.user + u.system) / 1000;
}

/** Costs for `paths` (default: every container discovery finds). */
function measure(
  tree: string,
  layout: CgroupLayout,
  paths = discover(layout).pods.flatMap((p) => p.containers.map((c) => c.relativePath)),
): Row {
  const start = cpuMs();
  for (let i = 0; i < 20; i++) discover(layout);
  const discoverMs = (cpuMs() - start) / 20;
  const every = samplingPass(layout, paths, {});
  const agent = samplingPass(layout, paths, { slowLimits: true, pressureWhenThrottled: true });
  const throttled = samplingPass(layout, paths, { slowLimits: true });
  return {
    tree,
    containers: paths.length,
    discoverMs,
    sampleMs: every.cpuMs,
    wallMs: every.wallMs,
    agentSampleMs: agent.cpuMs,
    agentThrottledMs: throttled.cpuMs,
  };
}

const rows: Row[] = [];
for (const layout of ["v2-systemd", "v1-cgroupfs"] as FixtureLayout[]) {
  const fixture = CgroupFixture.create(layout);
  try {
    for (let p = 0; p < PODS; p++) {
      fixture.addPod({
        uid: podUid(p),
        qos: p % 3 === 0 ? "guaranteed" : "burstable",
        containers: Array.from({ length: CONTAINERS }, (_, c) => ({
          id: containerId(p * 10 + c),
          shares: c === 0 ? 2 : 512,
          quotaMicros: c === 0 ? null : 50_000,
        })),
      });
    }
    rows.push(measure(`generated ${layout}`, detectLayout(fixture.root)));
  } finally {
    fixture.cleanup();
  }
}

const missing = realCgroupV1Missing();
if (missing === null) {
  const tree = new RealCgroupTree();
  try {
    for (let p = 0; p < PODS; p++) {
      const uid = crypto.randomUUID();
      for (let c = 0; c < CONTAINERS; c++) {
        tree.addContainer(containerId(p * 10 + c), c === 0 ? null : 50_000, 512, uid);
      }
    }
    const layout = detectLayout("/sys/fs/cgroup");
    const all = discover(layout);
    // Only this tree's containers (the machine may have others).
    const own = { ...layout };
    rows.push(
      measure(
        `real kernel v${layout.version}${layout.psiDir ? " + unified PSI" : ""}`,
        own,
        all.pods.filter((p) => p.relativePath.startsWith(tree.kubepodsRoot)).flatMap((p) =>
          p.containers.map((c) => c.relativePath)
        ),
      ),
    );
  } finally {
    await tree.cleanup();
  }
} else {
  console.log(`(real kernel row skipped: ${missing})`);
}

console.log(
  `cgroup module cost per pass, ${PODS} pods × ${CONTAINERS} containers, mean of ${PASSES} sampling passes (Deno ${Deno.version.deno}; DENO_V8_FLAGS=${
    Deno.env.get("DENO_V8_FLAGS") ?? "(unset: V8's optimising compilers on)"
  })`,
);
console.log(
  "tree                                containers  discovery CPU  sampling CPU (every file)  sampling wall  agent's pass, none throttled  agent's pass, all throttled  (target: ≤ 5 ms)",
);
const judged = (ms: number, width: number) =>
  `${ms.toFixed(2)} ms ${ms <= 5 ? "met" : "MISSED"}`.padEnd(width);
for (const r of rows) {
  console.log(
    `${r.tree.padEnd(36)}${String(r.containers).padEnd(12)}${
      `${r.discoverMs.toFixed(2)} ms`.padEnd(15)
    }${`${r.sampleMs.toFixed(2)} ms`.padEnd(27)}${`${r.wallMs.toFixed(2)} ms`.padEnd(15)}${
      judged(r.agentSampleMs, 30)
    }${judged(r.agentThrottledMs, 0)}`,
  );
}
