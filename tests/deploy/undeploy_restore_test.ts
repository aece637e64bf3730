/**
 * `deno task undeploy` restores the declared CPU limits before it removes
 * MBCAS (issue 13): the pure decisions of scripts/_deploy.ts (which pods need
 * a restore, the patch bodies, the summary), and the script against the test
 * bed — restoring by itself when no controller runs, leaving a pod already at
 * its baseline alone, naming a pod it could not restore (exit 1 after
 * removing everything else), and counting the restores of a running
 * controller.
 */
import assert from "node:assert/strict";
import {
  type AllocationRecord,
  controllerReady,
  CRD_NAME,
  describeChanges,
  oneLine,
  parseAllocations,
  parsePods,
  type PodRecord,
  releasePatch,
  resizePatch,
  RESTORE_FINALIZER,
  restoreFailure,
  restoreNeed,
  restoreSummary,
  sameCpuLimit,
} from "../../scripts/_deploy.ts";
import { KubeletSimulator, startTestbed } from "../../src/testbed/mod.ts";
import { kubeConfig } from "../k8s/_helpers.ts";
import { requireOrSkip, testbedMissing } from "../_support/requirements.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const UID_A = "0f8e1f3c-1111-4a4a-9b9b-000000000001";
const UID_B = "0f8e1f3c-1111-4a4a-9b9b-000000000002";

// ---------------------------------------------------------------------------
// The pure decisions

function allocation(over: Partial<AllocationRecord> = {}): AllocationRecord {
  return {
    namespace: "shop",
    name: "web",
    podUID: UID_A,
    finalizers: [RESTORE_FINALIZER],
    baseline: [{ name: "app", cpuLimit: "500m" }],
    ...over,
  };
}

function pod(limits: Record<string, string | null>, uid = UID_A): PodRecord {
  return {
    namespace: "shop",
    name: "web",
    uid,
    containers: Object.entries(limits).map(([name, cpuLimit]) => ({ name, cpuLimit })),
  };
}

Deno.test("undeploy restore: reads PodAllocations, their finalizers and baselines", () => {
  const list = {
    kind: "PodAllocationList",
    items: [
      {
        metadata: { namespace: "shop", name: "web", finalizers: [RESTORE_FINALIZER, "x/y"] },
        spec: { podName: "web", podUID: UID_A },
        status: {
          baseline: {
            recordedAt: "2026-12-01T05:00:00Z",
            containers: [{ name: "app", cpuLimit: "500m" }, { name: "side", cpuLimit: " 1 " }],
          },
        },
      },
      { metadata: { namespace: "shop", name: "idle" }, spec: { podUID: UID_B }, status: {} },
      { metadata: { namespace: "shop", name: "odd" }, status: { baseline: { containers: 3 } } },
      { metadata: { name: "no-namespace" } },
      "garbage",
    ],
  };
  assert.deepEqual(parseAllocations(list), [
    {
      namespace: "shop",
      name: "web",
      podUID: UID_A,
      finalizers: [RESTORE_FINALIZER, "x/y"],
      baseline: [{ name: "app", cpuLimit: "500m" }, { name: "side", cpuLimit: "1" }],
    },
    { namespace: "shop", name: "idle", podUID: UID_B, finalizers: [], baseline: null },
    { namespace: "shop", name: "odd", podUID: "", finalizers: [], baseline: null },
  ]);
  assert.deepEqual(parseAllocations({ items: [] }), []);
  assert.deepEqual(parseAllocations(null), []);
});

Deno.test("undeploy restore: reads the pods' UIDs and spec CPU limits", () => {
  const list = {
    items: [{
      metadata: { namespace: "shop", name: "web", uid: UID_A },
      spec: {
        containers: [
          { name: "app", resources: { limits: { cpu: "800m", memory: "64Mi" } } },
          { name: "nolimit", resources: { requests: { cpu: "100m" } } },
          { name: "bare" },
        ],
      },
    }],
  };
  assert.deepEqual(parsePods(list), [{
    namespace: "shop",
    name: "web",
    uid: UID_A,
    containers: [
      { name: "app", cpuLimit: "800m" },
      { name: "nolimit", cpuLimit: null },
      { name: "bare", cpuLimit: null },
    ],
  }]);
});

Deno.test("undeploy restore: CPU limits compare as amounts", () => {
  assert.equal(sameCpuLimit("500m", "0.5"), true);
  assert.equal(sameCpuLimit("1", "1000m"), true);
  assert.equal(sameCpuLimit("1.5", "1500m"), true);
  assert.equal(sameCpuLimit("500m", "501m"), false);
  assert.equal(sameCpuLimit(null, null), true);
  assert.equal(sameCpuLimit(null, "1"), false);
  assert.equal(sameCpuLimit("1", null), false);
  assert.equal(sameCpuLimit("lots", "lots"), true, "not a quantity: as text");
  assert.equal(sameCpuLimit("lots", "1"), false);
});

Deno.test("undeploy restore: which pods need their declared limits back", () => {
  assert.deepEqual(restoreNeed(allocation({ baseline: null }), pod({ app: "800m" })), {
    state: "no-baseline",
  });
  assert.deepEqual(restoreNeed(allocation(), undefined), { state: "pod-gone" });
  assert.deepEqual(
    restoreNeed(allocation(), pod({ app: "800m" }, UID_B)),
    { state: "pod-gone" },
    "a pod recreated under the same name is another pod",
  );
  assert.deepEqual(restoreNeed(allocation({ podUID: "" }), pod({ app: "800m" })), {
    state: "pod-gone",
  });
  assert.deepEqual(restoreNeed(allocation(), pod({ app: "0.5" })), { state: "at-baseline" });
  assert.deepEqual(restoreNeed(allocation(), pod({ app: "800m" })), {
    state: "differs",
    changes: [{ name: "app", current: "800m", baseline: "500m" }],
  });
  // Only the containers that differ; baseline containers the pod lacks are ignored.
  const two = allocation({
    baseline: [
      { name: "app", cpuLimit: "500m" },
      { name: "side", cpuLimit: "200m" },
      { name: "gone", cpuLimit: "1" },
    ],
  });
  assert.deepEqual(restoreNeed(two, pod({ app: "500m", side: null })), {
    state: "differs",
    changes: [{ name: "side", current: null, baseline: "200m" }],
  });
  assert.deepEqual(restoreNeed(allocation({ baseline: [] }), pod({ app: "800m" })), {
    state: "at-baseline",
  });
});

Deno.test("undeploy restore: the resize and release patch bodies", () => {
  assert.equal(
    resizePatch(UID_A, [{ name: "app", current: "800m", baseline: "500m" }]),
    `{"metadata":{"uid":"${UID_A}"},"spec":{"containers":` +
      `[{"name":"app","resources":{"limits":{"cpu":"500m"}}}]}}`,
  );
  assert.deepEqual(
    JSON.parse(resizePatch(UID_A, [
      { name: "a", current: "1", baseline: "250m" },
      { name: "b", current: "1", baseline: null },
    ])).spec.containers,
    [
      { name: "a", resources: { limits: { cpu: "250m" } } },
      { name: "b", resources: { limits: { cpu: null } } },
    ],
  );
  assert.equal(
    releasePatch([RESTORE_FINALIZER]),
    '[{"op":"test","path":"/metadata/finalizers/0","value":"allocation.mbcas.io/restore"},' +
      '{"op":"remove","path":"/metadata/finalizers/0"}]',
  );
  assert.match(releasePatch(["other/one", RESTORE_FINALIZER])!, /"\/metadata\/finalizers\/1"/);
  assert.equal(releasePatch([]), null);
  assert.equal(releasePatch(["other/one"]), null);
  assert.equal(RESTORE_FINALIZER, "allocation.mbcas.io/restore");
});

Deno.test("undeploy restore: a running controller is one with a ready replica", () => {
  const deployment = (readyReplicas?: number) => ({
    kind: "Deployment",
    status: readyReplicas === undefined ? {} : { readyReplicas },
  });
  assert.equal(controllerReady(deployment(2)), true);
  assert.equal(controllerReady(deployment(0)), false);
  assert.equal(controllerReady(deployment()), false);
  assert.equal(controllerReady({ kind: "List", items: [deployment(0), deployment(1)] }), true);
  assert.equal(controllerReady({ kind: "List", items: [] }), false);
  assert.equal(controllerReady(null), false);
});

Deno.test("undeploy restore: the summary and the failure are exact", () => {
  assert.deepEqual(restoreSummary({ byController: [], byUndeploy: [], failed: [] }), [
    "restored the declared CPU limits of 0 pods: 0 by the controller, 0 by undeploy; " +
    "0 could not be restored",
  ]);
  const report = {
    byController: ["a/one", "a/two"],
    byUndeploy: ["b/three"],
    failed: [{ pod: "c/four", error: 'pods "four" is forbidden' }],
  };
  assert.deepEqual(restoreSummary(report), [
    "restored the declared CPU limits of 3 pods: 2 by the controller, 1 by undeploy; " +
    "1 could not be restored",
    '  could not restore c/four: pods "four" is forbidden',
  ]);
  assert.equal(
    restoreSummary({ byController: [], byUndeploy: ["b/three"], failed: [] })[0],
    "restored the declared CPU limits of 1 pod: 0 by the controller, 1 by undeploy; " +
      "0 could not be restored",
  );
  assert.deepEqual(restoreFailure({ byController: [], byUndeploy: ["x/y"], failed: [] }), []);
  assert.deepEqual(restoreFailure(report), [
    "1 pod could not be restored to its declared CPU limits (everything else was removed); " +
    "set them by hand or recreate the pods:",
    '  c/four: pods "four" is forbidden',
  ]);
  const two = restoreFailure({
    byController: [],
    byUndeploy: [],
    failed: [{ pod: "c/a", error: "e1" }, { pod: "c/b", error: "e2" }],
  });
  assert.match(two[0], /^2 pods could not be restored to their declared CPU limits/);
  assert.deepEqual(two.slice(1), ["  c/a: e1", "  c/b: e2"]);
  assert.equal(
    oneLine("  Error from server:\n  the pod is invalid\n\n"),
    "Error from server: the pod is invalid",
  );
  assert.equal(
    describeChanges([
      { name: "app", current: "800m", baseline: "500m" },
      { name: "side", current: null, baseline: "1" },
    ]),
    "app 800m -> 500m, side none -> 1",
  );
});

// ---------------------------------------------------------------------------
// Against the test bed

interface Output {
  code: number;
  stdout: string;
  stderr: string;
}

async function output(command: string, args: string[], stdin?: string): Promise<Output> {
  const child = new Deno.Command(command, {
    args,
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(stdin));
    await writer.close();
  }
  const result = await child.output();
  const decode = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: result.code, stdout: decode(result.stdout), stderr: decode(result.stderr) };
}

/** `deno task undeploy` with these arguments. */
function undeploy(args: string[]): Promise<Output> {
  return output(Deno.execPath(), [
    "run",
    "--no-prompt",
    "--allow-run",
    "--allow-read",
    "--allow-env",
    "--allow-write",
    "scripts/deploy.ts",
    "--undeploy",
    ...args,
  ]);
}

async function until(what: string, probe: () => Promise<boolean>, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await probe()) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`not within ${timeoutMs} ms: ${what}`);
}

/** The lines of `text` in order: each must come after the one before. */
function assertInOrder(text: string, patterns: RegExp[]): void {
  const lines = text.split("\n");
  let at = -1;
  for (const pattern of patterns) {
    const next = lines.findIndex((l, i) => i > at && pattern.test(l));
    assert.ok(next > at, `${pattern} after line ${at} in:\n${text}`);
    at = next;
  }
}

const NS = "shop";

requireOrSkip(
  "undeploy against the test bed: restores the declared CPU limits, then removes MBCAS",
  testbedMissing(),
  async (t) => {
    const testbed = await startTestbed();
    const kubeconfig = testbed.identities.admin.kubeconfig;
    const simulator = new KubeletSimulator(kubeConfig(kubeconfig), { nodeName: "node-a" });
    const kubectl = async (args: string[], stdin?: string) => {
      const result = await output("kubectl", ["--kubeconfig", kubeconfig, ...args], stdin);
      assert.equal(result.code, 0, `kubectl ${args.join(" ")}: ${result.stderr}`);
      return result.stdout;
    };
    const installCrd = async () => {
      await kubectl(["apply", "--server-side", "-k", "deploy/crd"]);
      await kubectl(["wait", "--for=condition=Established", `crd/${CRD_NAME}`, "--timeout=30s"]);
    };
    /** A Running Burstable pod on node-a (CPU request 250m, memory 64Mi); returns its UID. */
    const makePod = async (name: string, cpuLimit: string): Promise<string> => {
      await kubectl(
        ["create", "-f", "-"],
        JSON.stringify({
          apiVersion: "v1",
          kind: "Pod",
          metadata: { name, namespace: NS },
          spec: {
            nodeName: "node-a",
            terminationGracePeriodSeconds: 0,
            containers: [{
              name: "app",
              image: "registry.k8s.io/pause:3.10",
              resources: {
                requests: { cpu: "250m", memory: "64Mi" },
                limits: { cpu: cpuLimit, memory: "64Mi" },
              },
              resizePolicy: [{ resourceName: "cpu", restartPolicy: "NotRequired" }],
            }],
          },
        }),
      );
      await until(
        `pod ${name} Running`,
        async () =>
          (await kubectl(["get", "pod", name, "-n", NS, "-o", "jsonpath={.status.phase}"])) ===
            "Running",
      );
      return await kubectl(["get", "pod", name, "-n", NS, "-o", "jsonpath={.metadata.uid}"]);
    };
    /** What MBCAS's controller does: a resize of the CPU limit. */
    const resize = (name: string, cpu: string) =>
      kubectl([
        "patch",
        "pod",
        name,
        "-n",
        NS,
        "--subresource",
        "resize",
        "--type",
        "strategic",
        "-p",
        JSON.stringify({
          spec: { containers: [{ name: "app", resources: { limits: { cpu } } }] },
        }),
      ]);
    const specCpu = (name: string) =>
      kubectl([
        "get",
        "pod",
        name,
        "-n",
        NS,
        "-o",
        "jsonpath={.spec.containers[0].resources.limits.cpu}",
      ]);
    const generation = (name: string) =>
      kubectl(["get", "pod", name, "-n", NS, "-o", "jsonpath={.metadata.generation}"]);
    /** A PodAllocation as the controller leaves it: the finalizer and status.baseline. */
    const makeAllocation = async (name: string, uid: string, baseline: string) => {
      await kubectl(
        ["create", "-f", "-"],
        JSON.stringify({
          apiVersion: "allocation.mbcas.io/v1alpha1",
          kind: "PodAllocation",
          metadata: { name, namespace: NS, finalizers: [RESTORE_FINALIZER] },
          spec: {
            podName: name,
            podUID: uid,
            nodeName: "node-a",
            containers: [{ name: "app", cpuLimit: "800m" }],
            market: {
              capacityMillicores: 4000,
              contended: false,
              computedAt: "2026-12-01T05:00:00Z",
            },
          },
        }),
      );
      await kubectl([
        "patch",
        CRD_NAME,
        name,
        "-n",
        NS,
        "--subresource",
        "status",
        "--type",
        "merge",
        "-p",
        JSON.stringify({
          status: {
            baseline: {
              recordedAt: "2026-12-01T05:00:00Z",
              containers: [{ name: "app", cpuLimit: baseline }],
            },
          },
        }),
      ]);
      const stored = JSON.parse(await kubectl(["get", CRD_NAME, name, "-n", NS, "-o", "json"]));
      assert.equal(stored.status?.baseline?.containers?.[0]?.cpuLimit, baseline, "baseline kept");
    };
    const assertCrdGone = async () => {
      const crds = await kubectl(["get", "crd", "--ignore-not-found", "-o", "name"]);
      assert.doesNotMatch(crds, /podallocations/);
    };

    try {
      await kubectl(["create", "namespace", NS]);
      await simulator.start();

      await t.step("no controller: undeploy restores the pod itself, then releases", async () => {
        await installCrd();
        const uid = await makePod("web", "500m");
        await resize("web", "800m");
        assert.equal(await specCpu("web"), "800m");
        await makeAllocation("web", uid, "500m");
        // A PodAllocation whose pod is gone: released, not counted.
        await makeAllocation("ghost", "0f8e1f3c-1111-4a4a-9b9b-00000000dead", "500m");

        const result = await undeploy(["--kubeconfig", kubeconfig, "--timeout", "30"]);
        assert.equal(result.code, 0, result.stdout + result.stderr);
        assert.equal(await specCpu("web"), "500m", "the declared limit is back");
        assertInOrder(result.stdout, [
          /^deploy: deleting the agent first \(daemonset\/mbcas-agent\)/,
          /^deploy: 2 PodAllocations, 2 with their pod's declared CPU limits recorded \(status\.baseline\); 1 pod of those with other CPU limits now$/,
          /^deploy: deleting every PodAllocation/,
          /^deploy: the controller is not running: undeploy restores the pods itself$/,
          /^deploy: restoring shop\/web: app 800m -> 500m$/,
          /^deploy: released 2 PodAllocations \(removed the allocation\.mbcas\.io\/restore finalizer\)$/,
          /^deploy: deleting the demo/,
          /^deploy: deleting the CRD last/,
          /^deploy: restored the declared CPU limits of 1 pod: 0 by the controller, 1 by undeploy; 0 could not be restored$/,
          /^deploy: undeployed from context "admin": \d+ objects deleted$/,
        ]);
        assert.equal(result.stderr, "");
        await assertCrdGone();
      });

      await t.step("a pod already at its baseline is left alone: 0 restores", async () => {
        await installCrd();
        const uid = await kubectl([
          "get",
          "pod",
          "web",
          "-n",
          NS,
          "-o",
          "jsonpath={.metadata.uid}",
        ]);
        const before = await generation("web");
        await makeAllocation("web", uid, "0.5"); // = 500m
        const result = await undeploy(["--kubeconfig", kubeconfig, "--timeout", "30"]);
        assert.equal(result.code, 0, result.stdout + result.stderr);
        assert.match(
          result.stdout,
          /^deploy: 1 PodAllocation, 1 with their pod's declared CPU limits recorded \(status\.baseline\); 0 pods of those with other CPU limits now$/m,
        );
        assert.doesNotMatch(result.stdout, /restoring /);
        assert.match(
          result.stdout,
          /^deploy: restored the declared CPU limits of 0 pods: 0 by the controller, 0 by undeploy; 0 could not be restored$/m,
        );
        assert.equal(await specCpu("web"), "500m");
        assert.equal(await generation("web"), before, "the pod was not patched");
        await assertCrdGone();
      });

      await t.step("a restore that fails is named, and undeploy exits 1 at the end", async () => {
        await installCrd();
        const webUid = await kubectl([
          "get",
          "pod",
          "web",
          "-n",
          NS,
          "-o",
          "jsonpath={.metadata.uid}",
        ]);
        await resize("web", "900m");
        await makeAllocation("web", webUid, "500m");
        // Limits = requests for CPU and memory would make the pod Guaranteed: a resize
        // may not change the QoS class, so the API server refuses this restore.
        const apiUid = await makePod("api", "500m");
        await resize("api", "800m");
        await makeAllocation("api", apiUid, "250m");

        const result = await undeploy(["--kubeconfig", kubeconfig, "--timeout", "30"]);
        assert.equal(result.code, 1, result.stdout + result.stderr);
        assert.equal(await specCpu("web"), "500m");
        assert.equal(await specCpu("api"), "800m");
        assertInOrder(result.stdout, [
          /^deploy: restoring shop\/api: app 800m -> 250m$/,
          /^deploy: could not restore shop\/api: .*(QoS|QOS)/,
          /^deploy: restoring shop\/web: app 900m -> 500m$/,
          /^deploy: released 2 PodAllocations/,
          /^deploy: deleting the CRD last/,
          /^deploy: restored the declared CPU limits of 1 pod: 0 by the controller, 1 by undeploy; 1 could not be restored$/,
          /^deploy: {3}could not restore shop\/api: .*(QoS|QOS)/,
          /^deploy: undeployed from context "admin"/,
        ]);
        const errors = result.stderr.trimEnd().split("\n");
        assert.equal(errors.length, 2, result.stderr);
        assert.equal(
          errors[0],
          "deploy: 1 pod could not be restored to its declared CPU limits (everything else " +
            "was removed); set them by hand or recreate the pods:",
        );
        assert.match(errors[1], /^deploy: {3}shop\/api: .*Pod "api" is invalid.*(QoS|QOS)/);
        await assertCrdGone();
      });

      await t.step("a running controller restores and releases; undeploy counts it", async () => {
        await installCrd();
        // The controller Deployment of the overlay (by name), with a replica the
        // simulated kubelet runs and reports ready.
        await kubectl(["create", "namespace", "mbcas-system"]);
        await kubectl(
          ["create", "-f", "-"],
          JSON.stringify({
            apiVersion: "apps/v1",
            kind: "Deployment",
            metadata: { name: "mbcas-controller", namespace: "mbcas-system" },
            spec: {
              replicas: 1,
              selector: { matchLabels: { app: "stand-in" } },
              template: {
                metadata: { labels: { app: "stand-in" } },
                spec: {
                  nodeName: "node-a",
                  terminationGracePeriodSeconds: 0,
                  containers: [{ name: "controller", image: "registry.k8s.io/pause:3.10" }],
                },
              },
            },
          }),
        );
        await until("the stand-in controller is ready", async () =>
          (await kubectl([
            "get",
            "deployment",
            "mbcas-controller",
            "-n",
            "mbcas-system",
            "-o",
            "jsonpath={.status.readyReplicas}",
          ])) === "1");
        const webUid = await kubectl([
          "get",
          "pod",
          "web",
          "-n",
          NS,
          "-o",
          "jsonpath={.metadata.uid}",
        ]);
        await resize("web", "700m");
        await makeAllocation("web", webUid, "500m");

        // The controller's side of the contract: on deletion, resize back to
        // status.baseline, then remove the finalizer.
        let stop = false;
        let restored = 0;
        const controller = (async () => {
          while (!stop) {
            const list = await output("kubectl", [
              "--kubeconfig",
              kubeconfig,
              "get",
              CRD_NAME,
              "-A",
              "-o",
              "json",
            ]);
            const items = list.code === 0 ? JSON.parse(list.stdout).items : [];
            for (const pa of items) {
              if (!pa.metadata.deletionTimestamp) continue;
              if (!(pa.metadata.finalizers ?? []).includes(RESTORE_FINALIZER)) continue;
              const cpu = pa.status.baseline.containers[0].cpuLimit;
              await resize(pa.metadata.name, cpu);
              restored++;
              await kubectl([
                "patch",
                CRD_NAME,
                pa.metadata.name,
                "-n",
                pa.metadata.namespace,
                "--type",
                "merge",
                "-p",
                '{"metadata":{"finalizers":null}}',
              ]);
            }
            await new Promise((r) => setTimeout(r, 200));
          }
        })();
        try {
          const result = await undeploy(["--kubeconfig", kubeconfig, "--timeout", "30"]);
          assert.equal(result.code, 0, result.stdout + result.stderr);
          assertInOrder(result.stdout, [
            /^deploy: deleting every PodAllocation/,
            /^deploy: waiting up to 30 s for the controller to restore and release them$/,
            /^deploy: shop\/web: restored by the controller$/,
            /^deploy: deleting the CRD last/,
            /^deploy: restored the declared CPU limits of 1 pod: 1 by the controller, 0 by undeploy; 0 could not be restored$/,
          ]);
          assert.doesNotMatch(result.stdout, /restoring |released /);
        } finally {
          stop = true;
          await controller;
        }
        assert.equal(restored, 1);
        assert.equal(await specCpu("web"), "500m");
        await assertCrdGone();
      });
    } finally {
      await simulator.stop();
      await testbed.stop();
    }
  },
);
