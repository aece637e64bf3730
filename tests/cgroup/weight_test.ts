/**
 * A pod cgroup's CPU weight, read and written: on generated trees of every
 * layout (fixtures), and on the real kernel (root), where a pod lowered to
 * the lowest weight gives way to a busy neighbour on the same CPU and gets
 * its share back once its weight is restored.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  cpuWeightFile,
  detectLayout,
  discover,
  readCpuUsageNanos,
  readCpuWeight,
  writeCpuWeight,
} from "../../src/cgroup/mod.ts";
import { requireOrSkip } from "../_support/requirements.ts";
import { ALL_LAYOUTS, CgroupFixture, containerId, podUid } from "./_fixtures.ts";
import { RealCgroupTree, realCgroupV1Missing } from "./_real_kernel.ts";

for (const layoutName of ALL_LAYOUTS) {
  Deno.test(`weight (${layoutName}): a pod cgroup's weight reads as the kubelet wrote it, is lowered, read back and restored`, () => {
    const fixture = CgroupFixture.create(layoutName);
    try {
      const uid = podUid(1);
      fixture.addPod({
        uid,
        qos: "burstable",
        containers: [{ id: containerId(1), shares: 307, quotaMicros: 40_000 }],
      });
      const layout = detectLayout(fixture.root);
      const pod = discover(layout).pods.find((p) => p.podUID === uid)!;
      const file = cpuWeightFile(layout.version);
      const original = readCpuWeight(layout, pod.relativePath);
      assert.equal(original.status, "ok");
      const kubelet = layout.version === 1 ? 307 : 1 + Math.floor((305 * 9999) / 262142);
      assert.deepEqual(original, { status: "ok", value: kubelet });

      assert.deepEqual(writeCpuWeight(layout, pod.relativePath, file.lowest), {
        status: "ok",
        value: file.lowest,
      });
      assert.equal(
        Deno.readTextFileSync(join(layout.cpuDir, pod.relativePath, file.name)).trim(),
        String(file.lowest),
      );
      // The containers' own weights are left alone (discovery tells sandboxes by theirs).
      const container = readCpuWeight(layout, pod.containers[0].relativePath);
      assert.deepEqual(container, { status: "ok", value: kubelet });

      assert.deepEqual(writeCpuWeight(layout, pod.relativePath, kubelet), {
        status: "ok",
        value: kubelet,
      });
    } finally {
      fixture.cleanup();
    }
  });
}

Deno.test("weight: a missing cgroup, a garbled file and a value out of range are told apart; nothing is created", () => {
  const fixture = CgroupFixture.create("v2-systemd");
  try {
    const layout = detectLayout(fixture.root);
    const gone = "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podnothere.slice";
    assert.equal(readCpuWeight(layout, gone).status, "missing");
    assert.equal(writeCpuWeight(layout, gone, 1).status, "missing");
    assert.throws(() => Deno.statSync(join(layout.cpuDir, gone)), Deno.errors.NotFound);

    const uid = podUid(2);
    fixture.addPod({
      uid,
      qos: "burstable",
      containers: [{ id: containerId(2), shares: 102, quotaMicros: null }],
    });
    const path = fixture.podPath(uid, "burstable");
    Deno.writeTextFileSync(join(layout.cpuDir, path, "cpu.weight"), "heavy\n");
    const garbled = readCpuWeight(layout, path);
    assert.equal(garbled.status, "malformed");
    Deno.writeTextFileSync(join(layout.cpuDir, path, "cpu.weight"), "0\n");
    assert.match(JSON.stringify(readCpuWeight(layout, path)), /outside 1\.\.10000/);

    assert.throws(
      () => writeCpuWeight(layout, path, 0),
      /cpu\.weight must be an integer from 1 to 10000, got 0/,
    );
    assert.throws(() => writeCpuWeight(layout, path, 10_001), /got 10001/);
    assert.throws(() => writeCpuWeight(layout, path, 1.5), /got 1\.5/);
  } finally {
    fixture.cleanup();
  }
});

Deno.test("weight: a weight the file system will not take is refused, with the path", () => {
  const fixture = CgroupFixture.create("v1-cgroupfs");
  try {
    const uid = podUid(3);
    fixture.addPod({
      uid,
      qos: "burstable",
      containers: [{ id: containerId(3), shares: 102, quotaMicros: null }],
    });
    const layout = detectLayout(fixture.root);
    const path = fixture.podPath(uid, "burstable");
    // Refused even to root (a read-only mount is the real node's case): the "file" is a directory.
    const file = join(layout.cpuDir, path, "cpu.shares");
    Deno.removeSync(file);
    Deno.mkdirSync(file);
    const result = writeCpuWeight(layout, path, 2);
    assert.equal(result.status, "refused");
    assert.match(JSON.stringify(result), /cpu\.shares/);
  } finally {
    fixture.cleanup();
  }
});

requireOrSkip(
  "real kernel (v1): a pod lowered to the lowest weight gives way to a busy neighbour on its CPU, and shares again once restored",
  realCgroupV1Missing(),
  async () => {
    const tree = new RealCgroupTree();
    try {
      // Two pods, one busy loop each, both pinned to CPU 0: they contend.
      const protectedPod = crypto.randomUUID();
      const elasticPod = crypto.randomUUID();
      const a = tree.addContainer(containerId(11), null, 1024, protectedPod);
      const b = tree.addContainer(containerId(12), null, 1024, elasticPod);
      const layout = detectLayout("/sys/fs/cgroup");
      const podOf = (relativePath: string) => relativePath.slice(0, relativePath.lastIndexOf("/"));
      const original = readCpuWeight(layout, podOf(b.relativePath));
      assert.equal(original.status, "ok");
      const originalValue = (original as { value: number }).value;
      tree.startBurner(a, "0");
      tree.startBurner(b, "0");
      await sleep(300);

      const share = async () => {
        const before = [a, b].map((c) => readCpuUsageNanos(layout, c.relativePath)!);
        await sleep(2_000);
        const after = [a, b].map((c) => readCpuUsageNanos(layout, c.relativePath)!);
        const used = after.map((x, i) => x - before[i]);
        return used[1] / (used[0] + used[1]);
      };
      const equal = await share();
      assert.ok(equal > 0.3 && equal < 0.7, `equal weights: the second pod's share ${equal}`);

      assert.deepEqual(writeCpuWeight(layout, podOf(b.relativePath), 2), {
        status: "ok",
        value: 2,
      });
      await sleep(200);
      const lowered = await share();
      assert.ok(lowered < 0.1, `lowered to 2: the second pod's share ${lowered}`);

      assert.deepEqual(writeCpuWeight(layout, podOf(b.relativePath), originalValue), {
        status: "ok",
        value: originalValue,
      });
      await sleep(200);
      const restored = await share();
      assert.ok(restored > 0.3 && restored < 0.7, `restored: the second pod's share ${restored}`);
    } finally {
      await tree.cleanup();
    }
    assert.deepEqual(tree.leftovers(), []);
  },
);

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
