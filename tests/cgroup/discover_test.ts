import assert from "node:assert/strict";
import { join } from "node:path";
import {
  CgroupRootError,
  type ContainerCgroup,
  detectLayout,
  discover,
} from "../../src/cgroup/mod.ts";
import { ALL_LAYOUTS, CgroupFixture, containerId, type FixturePod, podUid } from "./_fixtures.ts";

/** A node with one pod of each QoS class, a sandbox in each, and mixed runtimes. */
function populate(fixture: CgroupFixture): FixturePod[] {
  const pods: FixturePod[] = [
    {
      uid: podUid(1),
      qos: "guaranteed",
      containers: [
        { id: containerId(10), shares: 2, quotaMicros: null }, // sandbox
        { id: containerId(11), shares: 512, quotaMicros: 50_000 },
      ],
    },
    {
      uid: podUid(2),
      qos: "burstable",
      containers: [
        { id: containerId(20), shares: 2, quotaMicros: null, runtime: "cri-o" }, // sandbox
        { id: containerId(21), shares: 256, quotaMicros: 100_000, runtime: "cri-o" },
        { id: containerId(22), shares: 102, quotaMicros: null, runtime: "cri-o" },
      ],
    },
    {
      uid: podUid(3),
      qos: "besteffort",
      containers: [
        { id: containerId(30), shares: 2, quotaMicros: null, runtime: "docker" }, // sandbox
        { id: containerId(31), shares: 2, quotaMicros: null, runtime: "docker" },
      ],
    },
  ];
  for (const pod of pods) fixture.addPod(pod);
  return pods;
}

for (const layoutName of ALL_LAYOUTS) {
  Deno.test(`discover (${layoutName}): every pod and container, with UID, QoS, runtime and path`, () => {
    const fixture = CgroupFixture.create(layoutName);
    try {
      const pods = populate(fixture);
      const layout = detectLayout(fixture.root);
      assert.equal(layout.version, fixture.isV2 ? 2 : 1);
      assert.equal(layout.cpuDir, fixture.cpuDir);
      assert.equal(layout.cpuacctDir, fixture.cpuacctDir);
      if (layoutName === "hybrid-systemd") {
        assert.equal(layout.psiDir, join(fixture.root, "unified"));
      }
      const found = discover(layout);
      assert.deepEqual(found.kubepodsRoots, [fixture.kubepodsRoot]);
      assert.equal(found.unclassified.length, 0, JSON.stringify(found.unclassified));
      assert.equal(found.pods.length, 3);
      for (const pod of pods) {
        const got = found.pods.find((p) => p.podUID === pod.uid);
        if (got === undefined) throw new Error(`pod ${pod.uid} not found`);
        assert.equal(got.qos, pod.qos);
        assert.equal(got.driver, fixture.kubepodsRoot.endsWith(".slice") ? "systemd" : "cgroupfs");
        assert.equal(got.relativePath, fixture.podPath(pod.uid, pod.qos));
        assert.deepEqual(
          got.containers.map((c) => c.id).sort(),
          pod.containers.map((c) => c.id).sort(),
        );
        for (const c of pod.containers) {
          const container: ContainerCgroup = got.containers.find((x) => x.id === c.id)!;
          assert.equal(container.relativePath, fixture.containerPath(pod, c));
          if (got.driver === "systemd") {
            const scheme = {
              containerd: "containerd",
              "cri-o": "cri-o",
              docker: "docker",
            }[c.runtime ?? "containerd"];
            assert.equal(container.containerID, `${scheme}://${c.id}`);
          } else {
            assert.equal(container.containerID, c.id); // bare ids: runtime unknown from the name
          }
        }
      }
    } finally {
      fixture.cleanup();
    }
  });
}

Deno.test("discover: sandbox by known container ids, or by minimum shares when unknown", () => {
  const fixture = CgroupFixture.create("v2-systemd");
  try {
    populate(fixture);
    const layout = detectLayout(fixture.root);
    const known = new Set([containerId(11), containerId(21), containerId(22), containerId(31)]);
    const byIds = discover(layout, { knownContainerIDs: known });
    const sandboxes = byIds.pods.flatMap((p) => p.containers).filter((c) => c.sandbox).map((c) =>
      c.id
    );
    assert.deepEqual(sandboxes.sort(), [containerId(10), containerId(20), containerId(30)].sort());

    const heuristic = discover(layout).pods.flatMap((p) => p.containers);
    const sandbox = (id: string) => heuristic.find((c) => c.id === id)!.sandbox;
    assert.equal(sandbox(containerId(10)), true);
    assert.equal(sandbox(containerId(11)), false);
    assert.equal(sandbox(containerId(20)), true);
    assert.equal(sandbox(containerId(21)), false);
    // BestEffort: every container has the minimum shares, so nothing can be told.
    assert.equal(sandbox(containerId(30)), null);
    assert.equal(sandbox(containerId(31)), null);
  } finally {
    fixture.cleanup();
  }
});

Deno.test("discover: reports what it cannot classify inside the kubelet tree, ignores the rest", () => {
  for (const layoutName of ["v2-systemd", "v1-cgroupfs"] as const) {
    const fixture = CgroupFixture.create(layoutName);
    try {
      const [pod] = populate(fixture);
      const podPath = fixture.podPath(pod.uid, pod.qos);
      const strange = [
        `${fixture.kubepodsRoot}/not-a-pod`,
        `${podPath}/${
          layoutName === "v2-systemd"
            ? "crio-conmon-" + containerId(99) + ".scope"
            : "sidecar-helper"
        }`,
        `${podPath}/${containerId(98).slice(0, 40)}`, // truncated id
      ];
      for (const path of strange) fixture.mkdir(path);
      fixture.mkdir("/system.slice/other.service/whatever"); // outside the kubelet tree: not reported
      const found = discover(detectLayout(fixture.root));
      assert.deepEqual(found.unclassified.map((u) => u.relativePath).sort(), strange.sort());
      for (const u of found.unclassified) assert.ok(u.reason.length > 0);
      if (layoutName === "v2-systemd") {
        assert.match(
          found.unclassified.find((u) => u.relativePath.includes("conmon"))!.reason,
          /conmon/,
        );
      }
      assert.equal(found.pods.length, 3);
    } finally {
      fixture.cleanup();
    }
  }
});

Deno.test("discover: static pods (hash UIDs) and a pod whose cgroup vanished mid-scan", () => {
  const fixture = CgroupFixture.create("v1-cgroupfs");
  try {
    const hashUid = "6f3a1b2c4d5e6f708192a3b4c5d6e7f8";
    fixture.addPod({
      uid: hashUid,
      qos: "burstable",
      containers: [{ id: containerId(5), shares: 102, quotaMicros: null }],
    });
    const found = discover(detectLayout(fixture.root));
    assert.equal(found.pods[0].podUID, hashUid);
    fixture.removeContainer(containerId(5));
    assert.deepEqual(discover(detectLayout(fixture.root)).pods[0].containers, []);
  } finally {
    fixture.cleanup();
  }
});

Deno.test("detectLayout: a missing root or a plain directory is a CgroupRootError naming it", () => {
  const dir = Deno.makeTempDirSync();
  try {
    assert.throws(
      () => detectLayout(join(dir, "nope")),
      (e: Error) => e instanceof CgroupRootError && e.message.includes("does not exist"),
    );
    assert.throws(
      () => detectLayout(dir),
      (e: Error) => e instanceof CgroupRootError && e.message.includes("not a cgroup mount"),
    );
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
