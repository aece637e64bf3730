// deno-lint-ignore-file no-explicit-any -- status objects are read as loose JSON
/** The controller against the real API server with the kubelet simulator, running as its own ServiceAccount. */
import assert from "node:assert/strict";
import { API_VERSION, GROUP, KIND, PLURAL, VERSION } from "../../src/api/mod.ts";
import { DEFAULT_POLICY, MANAGED_LABEL, ResizeController } from "../../src/controller/mod.ts";
import { MERGE_PATCH } from "../../src/k8s/mod.ts";
import { leanConfigFromKubeConfig } from "../../src/k8s/lean/mod.ts";
import { Registry } from "../../src/metrics/mod.ts";
import { startCluster } from "../_support/cluster.ts";
import { requireOrSkip, testbedMissing } from "../_support/requirements.ts";
import { burstablePod, eventually, guaranteedPod, kubeConfig } from "../k8s/_helpers.ts";

function allocation(namespace: string, name: string, uid: string, cpuLimit: string) {
  return {
    apiVersion: API_VERSION,
    kind: KIND,
    metadata: { name, namespace },
    spec: {
      podName: name,
      podUID: uid,
      nodeName: "node-a",
      containers: [{ name: "app", cpuLimit }],
      market: {
        price: 0.5,
        capacityMillicores: 4000,
        contended: true,
        computedAt: new Date().toISOString(),
      },
    },
  };
}

/** The first backoff after Infeasible in this test: short, so that "never retried" can outlast it. */
const INFEASIBLE_BACKOFF_MS = 1000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

requireOrSkip(
  "controller: resizes opted-in Burstable pods through pods/resize and reports why it holds back",
  testbedMissing(),
  async (t) => {
    const cluster = await startCluster({
      nodeCpu: 4000,
      namespaces: { shop: { [MANAGED_LABEL]: "true" }, other: {} },
    });
    const { testbed, core, custom, simulator } = cluster;
    let controller: ResizeController | undefined;
    const paStatus = async (ns: string, name: string) =>
      (await custom.getNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace: ns,
        plural: PLURAL,
        name,
      }) as { status?: Record<string, any> }).status;
    const createPod = async (
      ns: string,
      name: string,
      request: string,
      limit: string,
      extra: Partial<{ memoryLimit: string }> = {},
    ) => {
      const body = burstablePod(ns, name, "node-a", [{
        name: "app",
        cpuRequest: request,
        cpuLimit: limit,
      }]);
      if (extra.memoryLimit) body.spec!.containers[0].resources!.limits!.memory = extra.memoryLimit;
      const pod = await core.createNamespacedPod({ namespace: ns, body });
      await eventually(
        `${name} running`,
        async () =>
          (await core.readNamespacedPod({ name, namespace: ns })).status?.phase === "Running",
      );
      return pod.metadata!.uid!;
    };
    const createPa = (ns: string, name: string, uid: string, limit: string) =>
      custom.createNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace: ns,
        plural: PLURAL,
        body: allocation(ns, name, uid, limit),
      });
    const setPaLimit = (ns: string, name: string, limit: string) =>
      custom.patchNamespacedCustomObject(
        {
          group: GROUP,
          version: VERSION,
          namespace: ns,
          plural: PLURAL,
          name,
          body: { spec: { containers: [{ name: "app", cpuLimit: limit }] } },
        },
        MERGE_PATCH,
      );
    const registry = new Registry();
    try {
      // The controller runs with its own least-privilege identity.
      controller = new ResizeController(
        leanConfigFromKubeConfig(kubeConfig(testbed.identities.controller.kubeconfig)),
        {
          policy: {
            ...DEFAULT_POLICY,
            protectedMinDecreaseFraction: 0, // small decreases too: clamps and guards are the subject
            // A decrease (the clamped limit below) may wait a cooldown after the pod is first seen.
            cooldownMs: 2000,
            infeasibleBackoffMs: { initial: INFEASIBLE_BACKOFF_MS, max: 8 * INFEASIBLE_BACKOFF_MS },
          },
          dryRun: false,
          rateLimit: {
            global: { perSecond: 50, burst: 50 },
            perNode: { perSecond: 20, burst: 20 },
          },
          metrics: registry,
        },
      );
      await controller.start();

      await t.step(
        "an increase is applied through pods/resize and confirmed from the kubelet's status",
        async () => {
          const uid = await createPod("shop", "web", "250m", "500m", { memoryLimit: "128Mi" });
          await createPa("shop", "web", uid, "900m");
          const status = await eventually("Applied", async () => {
            const s = await paStatus("shop", "web");
            return s?.state === "Applied" && s.containers?.[0]?.cpuLimit === "900m" ? s : undefined;
          });
          const pod = await core.readNamespacedPod({ name: "web", namespace: "shop" });
          assert.equal(pod.spec?.containers[0].resources?.limits?.cpu, "900m");
          assert.equal(
            pod.spec?.containers[0].resources?.requests?.cpu,
            "250m",
            "requests never change",
          );
          assert.equal(
            status.conditions.find((c: { type: string }) => c.type === "Applied").status,
            "True",
          );
          assert.ok(status.lastResizeTime);
          assert.equal(controller!.stats.resizes.accepted, 1);
        },
      );

      await t.step(
        "Guaranteed pods, pods not opted in and stale allocations (UID mismatch) are skipped with a reason",
        async () => {
          const gUid = (await core.createNamespacedPod({
            namespace: "shop",
            body: guaranteedPod("shop", "guaranteed", "node-a", "500m"),
          })).metadata!.uid!;
          await createPa("shop", "guaranteed", gUid, "900m");
          const otherUid = await createPod("other", "web", "250m", "500m");
          await createPa("other", "web", otherUid, "900m");
          const staleUid = await createPod("shop", "recreated", "250m", "500m");
          await createPa("shop", "recreated", "11111111-2222-4333-8444-555555555555", "900m");
          for (
            const [ns, name, reason] of [["shop", "guaranteed", "GuaranteedQoS"], [
              "other",
              "web",
              "NotOptedIn",
            ], ["shop", "recreated", "PodUIDMismatch"]]
          ) {
            const s = await eventually(`${ns}/${name} skipped`, async () => {
              const st = await paStatus(ns, name);
              return st?.state === "Skipped" ? st : undefined;
            });
            assert.equal(
              s.conditions.find((c: { type: string }) => c.type === "Skipped").reason,
              reason,
            );
            const pod = await core.readNamespacedPod({ name, namespace: ns });
            assert.equal(pod.metadata?.generation, 1, `${ns}/${name} never patched`);
          }
          assert.ok(staleUid);
        },
      );

      await t.step(
        "a desired limit below the request is clamped to it (and kept off Guaranteed) and reported",
        async () => {
          const rejectedBefore = controller!.stats.resizes.rejected;
          const uid = await createPod("shop", "tight", "250m", "300m");
          await createPa("shop", "tight", uid, "100m");
          await eventually(
            "clamped",
            async () =>
              (await core.readNamespacedPod({ name: "tight", namespace: "shop" })).spec
                ?.containers[0]
                .resources?.limits?.cpu === "251m",
          );
          assert.ok(controller!.stats.reasons.ClampedToRequest >= 1);
          assert.ok(controller!.stats.reasons.QoSGuard >= 1);
          // Reported: the allocation shows the limit the kubelet applied.
          await eventually("applied limit reported", async () => {
            const s = await paStatus("shop", "tight");
            return s?.state === "Applied" && s.containers?.[0]?.cpuLimit === "251m";
          });
          // Kept off Guaranteed by the controller itself: one patch, to request + 1m, and
          // never a Guaranteed-shaped one (requests equal to limits for every resource),
          // which the API server would refuse with 422. (qosClass is immutable: it
          // cannot tell.)
          await sleep(1000);
          const pod = await core.readNamespacedPod({ name: "tight", namespace: "shop" });
          assert.equal(pod.metadata?.generation, 2, "one patch");
          const resources = pod.spec!.containers[0].resources!;
          assert.deepEqual(resources.requests, { cpu: "250m", memory: "64Mi" });
          assert.deepEqual(resources.limits, { cpu: "251m", memory: "64Mi" });
          assert.equal(controller!.stats.resizes.rejected, rejectedBefore, "no patch refused");
        },
      );

      await t.step(
        "Infeasible: the same value is never retried, a different one only after the backoff",
        async () => {
          const read = () => core.readNamespacedPod({ name: "big", namespace: "shop" });
          const uid = await createPod("shop", "big", "250m", "500m");
          simulator.setResizeResponse("shop", "big", "infeasible");
          await createPa("shop", "big", uid, "3");
          const s = await eventually("Infeasible recorded", async () => {
            const st = await paStatus("shop", "big");
            return st?.state === "Failed" ? st : undefined;
          });
          assert.equal(
            s.conditions.find((c: { type: string }) => c.type === "ResizePending").reason,
            "Infeasible",
          );
          // The same value, wanted all along, is not patched again for four first backoffs
          // (and past the second one, twice as long).
          const until = Date.now() + 4 * INFEASIBLE_BACKOFF_MS;
          while (Date.now() < until) {
            const pod = await read();
            assert.equal(pod.metadata?.generation, 2, "one patch, no retry of the same value");
            assert.equal(pod.spec?.containers[0].resources?.limits?.cpu, "3");
            await sleep(200);
          }
          assert.deepEqual(simulator.answered.get("shop/big"), ["infeasible"]);
          assert.ok(controller!.stats.reasons.KnownInfeasible >= 1, "held as known infeasible");
          assert.match(
            registry.render(),
            /^mbcas_controller_resize_pending_pods\{reason="Infeasible"\} [1-9]/m,
            "the pending Infeasible resize is counted",
          );

          // A different value is tried once the backoff is over (long since, here)…
          await setPaLimit("shop", "big", "2");
          await eventually("the different value patched", async () => {
            const pod = await read();
            return pod.metadata?.generation === 3 &&
              pod.spec?.containers[0].resources?.limits?.cpu === "2";
          });
          const second = await eventually(
            "second Infeasible",
            () => simulator.history.get("shop/big")?.[1],
          );
          assert.equal(second.generation, 3);
          // …but never before the backoff after an Infeasible has run out: the second
          // Infeasible backs off twice as long, counted from when the controller saw it,
          // which is after the simulated kubelet wrote it.
          await setPaLimit("shop", "big", "1500m");
          const earliest = second.atMs + 2 * INFEASIBLE_BACKOFF_MS;
          while (Date.now() < earliest - 100) {
            const pod = await read();
            if (Date.now() < earliest) {
              assert.equal(pod.metadata?.generation, 3, "patched during the backoff");
            }
            await sleep(100);
          }
          await eventually("a third value after the backoff", async () => {
            const pod = await read();
            return pod.metadata?.generation === 4 &&
              pod.spec?.containers[0].resources?.limits?.cpu === "1500m";
          });
          await eventually(
            "third Infeasible",
            () => simulator.history.get("shop/big")?.length === 3,
          );
          assert.deepEqual(
            simulator.history.get("shop/big")!.map((a) => [a.generation, a.response]),
            [[2, "infeasible"], [3, "infeasible"], [4, "infeasible"]],
            "each value tried once",
          );
        },
      );
    } finally {
      await controller?.stop();
      await cluster.stop();
    }
  },
);
