// deno-lint-ignore-file no-explicit-any -- status objects are read as loose JSON
/**
 * Controller rules that need time or the API server's cooperation: cooldown
 * steps, Deferred then accepted, BestEffort and RestartContainer, the rate
 * limit under a flood, an API server restart, and a malformed PodAllocation.
 */
import assert from "node:assert/strict";
import * as k8s from "@kubernetes/client-node";
import { API_VERSION, GROUP, KIND, PLURAL, VERSION } from "../../src/api/mod.ts";
import {
  ALLOW_RESTART_ANNOTATION,
  DEFAULT_POLICY,
  MANAGED_LABEL,
  ResizeController,
} from "../../src/controller/mod.ts";
import { EventRecorder } from "../../src/controller/events.ts";
import { LeanClient, leanConfigFromKubeConfig } from "../../src/k8s/lean/mod.ts";
import { startCluster } from "../_support/cluster.ts";
import { requireOrSkip, testbedMissing } from "../_support/requirements.ts";
import { burstablePod, eventually, kubeConfig } from "../k8s/_helpers.ts";

const NS = "apps";

function allocation(name: string, uid: string, cpuLimit: string, container = "app") {
  return {
    apiVersion: API_VERSION,
    kind: KIND,
    metadata: { name, namespace: NS },
    spec: {
      podName: name,
      podUID: uid,
      nodeName: "node-a",
      containers: [{ name: container, cpuLimit }],
      market: {
        price: 0.5,
        capacityMillicores: 4000,
        contended: true,
        computedAt: new Date().toISOString(),
        // No agent vouches for it here: a long market interval keeps it from going stale.
        intervalSeconds: 3600,
      },
    },
  };
}

requireOrSkip(
  "controller behaviour: cooldown steps, Deferred, skips, rate limit, API restart, malformed input",
  testbedMissing(),
  async (t) => {
    const cluster = await startCluster({
      nodeCpu: 64_000,
      namespaces: { [NS]: { [MANAGED_LABEL]: "true" } },
    });
    const { testbed, admin, core, custom, simulator } = cluster;
    let controller: ResizeController | undefined;
    let eventClient: LeanClient | undefined;
    const paStatus = async (name: string) =>
      (await custom.getNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace: NS,
        plural: PLURAL,
        name,
      }) as { status?: Record<string, any> }).status;
    const podLimit = async (name: string) =>
      (await core.readNamespacedPod({ name, namespace: NS })).spec?.containers[0].resources?.limits
        ?.cpu;
    const createPod = async (body: k8s.V1Pod) => {
      const pod = await core.createNamespacedPod({ namespace: NS, body });
      await eventually(
        `${body.metadata!.name} running`,
        async () =>
          (await core.readNamespacedPod({ name: body.metadata!.name!, namespace: NS })).status
            ?.phase === "Running",
      );
      return pod.metadata!.uid!;
    };
    const createPa = (body: Record<string, unknown>) =>
      custom.createNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace: NS,
        plural: PLURAL,
        body,
      });
    try {
      const controllerKc = kubeConfig(testbed.identities.controller.kubeconfig);
      const connection = leanConfigFromKubeConfig(controllerKc);
      eventClient = new LeanClient(connection);
      controller = new ResizeController(connection, {
        // Steps 2 s apart: more than the default resize budget of a minute allows.
        policy: {
          ...DEFAULT_POLICY,
          cooldownMs: 2000,
          protectedMinDecreaseFraction: 0, // the steps down are this test's subject
          confirmTimeoutMs: 3000,
          maxResizesPerPodPerMinute: 16,
        },
        dryRun: false,
        rateLimit: { global: { perSecond: 10, burst: 5 }, perNode: { perSecond: 100, burst: 100 } },
        events: new EventRecorder(eventClient, "mbcas-controller", "test"),
        resyncMs: 1000,
      });
      await controller.start();
      controller.resyncAll();

      await t.step(
        "a decrease is applied in steps of at most half, each after the cooldown",
        async () => {
          const uid = await createPod(
            burstablePod(NS, "shrink", "node-a", [{
              name: "app",
              cpuRequest: "100m",
              cpuLimit: "2",
              memory: "64Mi",
            }]),
          );
          const seen: { limit: string; at: number }[] = [];
          const start = performance.now();
          await createPa(allocation("shrink", uid, "400m"));
          await eventually("reaches 400m", async () => {
            const limit = await podLimit("shrink");
            if (limit !== undefined && seen.at(-1)?.limit !== limit) {
              seen.push({ limit, at: performance.now() - start });
            }
            return limit === "400m";
          }, 30_000);
          const limits = seen.map((s) => s.limit);
          assert.deepEqual(
            limits.filter((l) => l !== "2"),
            ["1", "500m", "400m"],
            `steps: ${JSON.stringify(seen)}`,
          );
          // The cooldown on the controller's own clock: the resize times it recorded in the
          // PodAllocation's status (when this test's polls saw each step depends on the load).
          const resizedAt = await eventually("the three resizes in status", async () => {
            const times = ((await paStatus("shrink"))?.recentResizeTimes ?? []) as string[];
            return times.length >= 3
              ? times.map((t) => Date.parse(t)).sort((a, b) => a - b)
              : undefined;
          });
          assert.equal(resizedAt.length, 3, `one resize per step: ${JSON.stringify(resizedAt)}`);
          for (let i = 1; i < resizedAt.length; i++) {
            assert.ok(
              resizedAt[i] - resizedAt[i - 1] >= 2000,
              `cooldown between steps: ${JSON.stringify(resizedAt)} (seen: ${
                JSON.stringify(seen)
              })`,
            );
          }
          // Events on the pod for each resize.
          const events = await core.listNamespacedEvent({
            namespace: NS,
            fieldSelector: "involvedObject.name=shrink",
          });
          assert.ok(
            events.items.some((e) =>
              e.reason === "MBCASResized" && e.involvedObject.kind === "Pod"
            ),
            "resize events on the pod",
          );
          assert.ok(
            events.items.some((e) => e.reason === "Resized" && e.involvedObject.kind === KIND),
            "resize events on the PodAllocation",
          );
        },
      );

      await t.step(
        "Deferred: waits without re-patching, applied once the kubelet accepts",
        async () => {
          const uid = await createPod(
            burstablePod(NS, "deferred", "node-a", [{
              name: "app",
              cpuRequest: "100m",
              cpuLimit: "200m",
            }]),
          );
          simulator.setResizeResponse(NS, "deferred", "deferred");
          await createPa(allocation("deferred", uid, "800m"));
          const pending = await eventually("Deferred reported", async () => {
            const s = await paStatus("deferred");
            return s?.conditions?.find((c: any) => c.type === "ResizePending")?.reason ===
                "Deferred"
              ? s
              : undefined;
          });
          assert.equal(pending.state, "Pending");
          await new Promise((r) => setTimeout(r, 2500)); // resyncs happen meanwhile
          assert.equal(
            (await core.readNamespacedPod({ name: "deferred", namespace: NS })).metadata
              ?.generation,
            2,
            "patched once",
          );
          simulator.setResizeResponse(NS, "deferred", "accept");
          await eventually(
            "Applied after acceptance",
            async () => (await paStatus("deferred"))?.state === "Applied",
          );
        },
      );

      await t.step(
        "BestEffort pods and RestartContainer containers are skipped; the annotation allows restarts",
        async () => {
          const beUid = await createPod({
            metadata: { name: "besteffort", namespace: NS },
            spec: { nodeName: "node-a", containers: [{ name: "app", image: "pause" }] },
          });
          await createPa(allocation("besteffort", beUid, "500m"));
          await eventually(
            "BestEffort skipped",
            async () =>
              (await paStatus("besteffort"))?.conditions?.find((c: any) => c.type === "Skipped")
                ?.reason === "BestEffortQoS",
          );
          const rUid = await createPod(
            burstablePod(NS, "restarty", "node-a", [{
              name: "app",
              cpuRequest: "100m",
              cpuLimit: "200m",
              restart: true,
            }]),
          );
          await createPa(allocation("restarty", rUid, "800m"));
          await eventually(
            "RestartContainer skipped",
            async () =>
              (await paStatus("restarty"))?.conditions?.find((c: any) => c.type === "Skipped")
                ?.reason === "RestartRequired",
          );
          assert.equal(await podLimit("restarty"), "200m");
          await core.patchNamespacedPod(
            {
              name: "restarty",
              namespace: NS,
              body: { metadata: { annotations: { [ALLOW_RESTART_ANNOTATION]: "true" } } },
            },
            k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch),
          );
          await eventually(
            "resized once restarts are allowed",
            async () => (await podLimit("restarty")) === "800m",
          );
        },
      );

      await t.step(
        "50 PodAllocations at once respect the rate limit (10/s, burst 5) and all get applied",
        async () => {
          const uids: string[] = [];
          await Promise.all(Array.from({ length: 50 }, async (_, i) => {
            const pod = await core.createNamespacedPod({
              namespace: NS,
              body: burstablePod(NS, `flood-${i}`, "node-a", [{
                name: "app",
                cpuRequest: "100m",
                cpuLimit: "200m",
              }]),
            });
            uids[i] = pod.metadata!.uid!;
          }));
          await eventually("flood pods running", async () => {
            const pods = await core.listNamespacedPod({ namespace: NS });
            return pods.items.filter((p) =>
              p.metadata?.name?.startsWith("flood-") && p.status?.phase === "Running"
            ).length === 50;
          }, 60_000);
          const before = controller!.stats.resizes.accepted;
          const start = performance.now();
          await Promise.all(uids.map((uid, i) => createPa(allocation(`flood-${i}`, uid, "600m"))));
          await eventually(
            "all 50 resized",
            () => controller!.stats.resizes.accepted - before >= 50,
            60_000,
          );
          const elapsed = performance.now() - start;
          // 5 at once, then 10 per second: the last of 50 cannot go before 4.5 s.
          assert.ok(elapsed >= 4000, `50 resizes took only ${Math.round(elapsed)} ms`);
          assert.ok(controller!.stats.resizes.rateLimited > 0);
        },
      );

      await t.step(
        "an API server restart mid-run: the controller catches up afterwards",
        async () => {
          const uid = await createPod(
            burstablePod(NS, "restart", "node-a", [{
              name: "app",
              cpuRequest: "100m",
              cpuLimit: "200m",
            }]),
          );
          await testbed.stopApiserver();
          await new Promise((r) => setTimeout(r, 1500));
          await testbed.startApiserver();
          await createPa(allocation("restart", uid, "700m"));
          await eventually(
            "resized after the restart",
            async () => (await podLimit("restart")) === "700m",
            30_000,
          );
        },
      );

      await t.step(
        "a malformed PodAllocation (admitted by a looser schema) is refused with a condition, never a crash",
        async () => {
          // An older, looser schema: replace the CRD's spec validation with preserve-unknown-fields.
          const ext = admin.makeApiClient(k8s.ApiextensionsV1Api);
          const crd = await ext.readCustomResourceDefinition({ name: `${PLURAL}.${GROUP}` });
          const props = crd.spec.versions[0].schema!.openAPIV3Schema!;
          props.x_kubernetes_validations = undefined;
          crd.spec.versions[0].selectableFields = undefined; // it names spec.nodeName, which a free-form spec lacks
          props.properties!.spec = { type: "object", x_kubernetes_preserve_unknown_fields: true };
          await ext.replaceCustomResourceDefinition({ name: crd.metadata!.name!, body: crd });
          const uid = await createPod(
            burstablePod(NS, "garbage", "node-a", [{
              name: "app",
              cpuRequest: "100m",
              cpuLimit: "200m",
            }]),
          );
          await eventually("garbage accepted by the loose schema", async () => {
            await createPa({
              ...allocation("garbage", uid, "lots"),
              spec: {
                podName: "garbage",
                podUID: uid,
                containers: [{ name: "app", cpuLimit: "lots" }],
              },
            });
            return true;
          });
          const status = await eventually("refused", async () => {
            const s = await paStatus("garbage");
            return s?.state === "Skipped" ? s : undefined;
          });
          const skipped = status.conditions.find((c: any) => c.type === "Skipped");
          assert.equal(skipped.reason, "InvalidSpec");
          assert.match(skipped.message, /spec/);
          assert.equal(await podLimit("garbage"), "200m");
          // And the controller still works for everyone else.
          const uid2 = await createPod(
            burstablePod(NS, "after-garbage", "node-a", [{
              name: "app",
              cpuRequest: "100m",
              cpuLimit: "200m",
            }]),
          );
          await createPa(allocation("after-garbage", uid2, "900m"));
          await eventually(
            "still resizing",
            async () => (await podLimit("after-garbage")) === "900m",
          );
        },
      );
    } finally {
      await controller?.stop();
      eventClient?.close();
      await cluster.stop();
    }
  },
);
