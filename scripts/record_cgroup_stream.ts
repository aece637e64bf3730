/**
 * Records a real CPU-signal stream for the estimator's tests (root, cgroup v1
 * or hybrid): one busy thread in a kubelet-style cgroup, 10 s under a 200m
 * quota, then 10 s unlimited, then 10 s idle, sampled once a second through
 * the cgroup module. Writes JSON to stdout.
 *
 * Run: deno run -A scripts/record_cgroup_stream.ts > tests/agent/fixtures/recorded_burner_v1.json
 */
import { join } from "node:path";
import { CgroupSampler, computeSignals, detectLayout } from "../src/cgroup/mod.ts";
import { RealCgroupTree, realCgroupV1Missing } from "../tests/cgroup/_real_kernel.ts";

const missing = realCgroupV1Missing();
if (missing !== null) {
  console.error(`record_cgroup_stream: ${missing}`);
  Deno.exit(2);
}
const tree = new RealCgroupTree();
try {
  const container = tree.addContainer("f".repeat(64), 20_000);
  tree.startBurner(container);
  const layout = detectLayout("/sys/fs/cgroup");
  const sampler = new CgroupSampler(layout);
  const samples = [];
  let previous = sampler.read(container.relativePath, performance.now());
  for (let second = 1; second <= 30; second++) {
    if (second === 11) {
      Deno.writeTextFileSync(join(layout.cpuDir, container.relativePath, "cpu.cfs_quota_us"), "-1");
    }
    if (second === 21) Deno.kill(container.pid!, "SIGSTOP");
    await new Promise((r) => setTimeout(r, 1000));
    const current = sampler.read(container.relativePath, performance.now());
    if (previous.status === "ok" && current.status === "ok") {
      const r = computeSignals(previous.sample, current.sample);
      if (r.status === "ok") {
        const s = r.signals;
        samples.push({
          second,
          phase: second <= 10 ? "quota-200m" : second <= 20 ? "unlimited" : "stopped",
          usageMillicores: Math.round(s.usageMillicores * 10) / 10,
          throttledRatio: Math.round(s.throttledRatio * 1000) / 1000,
          throttledMillicores: Math.round(s.throttledMillicores * 10) / 10,
          psiSomeStallRatio: s.psiSomeStallRatio === null
            ? null
            : Math.round(s.psiSomeStallRatio * 1000) / 1000,
        });
      }
    }
    previous = current;
  }
  Deno.kill(container.pid!, "SIGCONT");
  sampler.close();
  console.log(
    JSON.stringify(
      {
        recordedWith: "scripts/record_cgroup_stream.ts",
        kernel: Deno.osRelease(),
        cgroup: layout.version,
        samples,
      },
      null,
      1,
    ),
  );
} finally {
  await tree.cleanup();
}
