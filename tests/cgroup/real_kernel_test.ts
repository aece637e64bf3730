/**
 * The cgroup module against the real kernel (cgroup v1 here, hybrid when the
 * v2 `unified` mount exists): real busy loops in a kubelet-style tree, with and
 * without a CFS quota, read back through discovery and sampling, in-process
 * and in a subprocess holding nothing but `--allow-read` on the cgroup root.
 */
import assert from "node:assert/strict";
import { computeSignals, detectLayout, discover, readSample } from "../../src/cgroup/mod.ts";
import type { CpuSignals } from "../../src/cgroup/mod.ts";
import { requireOrSkip } from "../_support/requirements.ts";
import { containerId } from "./_fixtures.ts";
import { RealCgroupTree, realCgroupV1Missing } from "./_real_kernel.ts";

const INSPECT = new URL("../../src/cli/inspect.ts", import.meta.url).pathname;

requireOrSkip(
  "real kernel (v1): a 200m quota on a busy loop reads 200m ± 10% and throttled; an unlimited burner reads ≈1000m unthrottled",
  realCgroupV1Missing(),
  async () => {
    const tree = new RealCgroupTree();
    try {
      const limited = tree.addContainer(containerId(1), 20_000);
      const unlimited = tree.addContainer(containerId(2), null);
      tree.startBurner(limited);
      tree.startBurner(unlimited);
      await sleep(500);

      // The test process has --allow-all, so /sys/fs/cgroup is readable directly.
      const layout = detectLayout("/sys/fs/cgroup");
      assert.equal(layout.version, 1);
      const found = discover(layout);
      assert.ok(
        found.kubepodsRoots.includes(tree.kubepodsRoot),
        `found roots ${found.kubepodsRoots}`,
      );
      const pod = found.pods.find((p) => p.podUID === tree.podUID);
      if (pod === undefined) throw new Error("pod not discovered");
      assert.equal(pod.qos, "burstable");
      assert.deepEqual(pod.containers.map((c) => c.id).sort(), [limited.id, unlimited.id].sort());

      const signals = await measure(layout, [limited.relativePath, unlimited.relativePath], 3000);
      const [capped, free] = signals;
      assert.equal(capped.limitMillicores, 200);
      assert.ok(
        Math.abs(capped.usageMillicores - 200) <= 20,
        `capped usage ${capped.usageMillicores}m`,
      );
      assert.ok(capped.throttledRatio >= 0.8, `capped throttled ratio ${capped.throttledRatio}`);
      // A runnable thread held back 80 ms of every 100 ms period: ≈800m of throttled time.
      assert.ok(
        capped.throttledMillicores >= 500 && capped.throttledMillicores <= 1000,
        `throttled ${capped.throttledMillicores}m`,
      );
      assert.equal(free.limitMillicores, null);
      assert.ok(
        Math.abs(free.usageMillicores - 1000) <= 100,
        `free usage ${free.usageMillicores}m`,
      );
      assert.equal(free.throttledRatio, 0);
      assert.equal(free.throttledMillicores, 0);
      if (layout.psiDir !== null) {
        // Hybrid: PSI from the unified hierarchy. The throttled loop stalls most of the time.
        assert.ok(
          capped.psiSomeStallRatio !== null && capped.psiSomeStallRatio > 0.5,
          `psi ${capped.psiSomeStallRatio} (free burner: ${free.psiSomeStallRatio})`,
        );
      }
    } finally {
      await tree.cleanup();
    }
    assert.deepEqual(tree.leftovers(), []);
  },
);

requireOrSkip(
  "real kernel (v1): inspect under exactly --allow-read=<bind-mounted cgroup root> sees the burners, and nothing else is touched",
  realCgroupV1Missing(),
  async () => {
    const tree = new RealCgroupTree();
    try {
      const limited = tree.addContainer(containerId(3), 30_000);
      tree.startBurner(limited);
      const root = tree.bindMount();
      const output = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "--no-prompt",
          `--allow-read=${root}`,
          INSPECT,
          "--cgroup-root",
          root,
          "--interval-ms",
          "1500",
        ],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const stderr = new TextDecoder().decode(output.stderr);
      assert.equal(output.code, 0, stderr);
      const lines = new TextDecoder().decode(output.stdout).trim().split("\n").map((l) =>
        JSON.parse(l)
      );
      const line = lines.find((l) => l.containerID === limited.id);
      assert.ok(line, `container line in ${JSON.stringify(lines)}`);
      assert.equal(line.podUID, tree.podUID);
      assert.equal(line.qos, "burstable");
      assert.equal(line.cgroupVersion, 1);
      assert.equal(line.limitMillicores, 300);
      assert.ok(Math.abs(line.usageMillicores - 300) <= 30, `usage ${line.usageMillicores}`);
      assert.ok(line.throttledRatio >= 0.8);

      // Deno refuses reads under /sys without --allow-all; inspect says so and exits 2.
      const denied = await new Deno.Command(Deno.execPath(), {
        args: ["run", "--no-prompt", "--allow-read=/sys/fs/cgroup", INSPECT, "--interval-ms", "10"],
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.equal(denied.code, 2);
      assert.match(
        new TextDecoder().decode(denied.stderr),
        /--allow-all.*bind-mount|bind-mount.*--allow-all/s,
      );
    } finally {
      await tree.cleanup();
    }
    assert.deepEqual(tree.leftovers(), []);
  },
);

async function measure(
  layout: ReturnType<typeof detectLayout>,
  paths: string[],
  ms: number,
): Promise<CpuSignals[]> {
  const before = paths.map((p) => readSample(layout, p, performance.now()));
  await sleep(ms);
  const after = paths.map((p) => readSample(layout, p, performance.now()));
  return paths.map((_, i) => {
    const a = before[i];
    const b = after[i];
    if (a.status !== "ok" || b.status !== "ok") {
      throw new Error(`sample failed: ${JSON.stringify([a, b])}`);
    }
    const r = computeSignals(a.sample, b.sample);
    if (r.status !== "ok") throw new Error(`signals failed: ${JSON.stringify(r)}`);
    return r.signals;
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
