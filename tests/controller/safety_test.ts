// deno-lint-ignore-file no-explicit-any -- status objects are read as loose JSON
/**
 * The controller's safety rules against the test bed (a real API server and
 * the kubelet simulator): a pod is not cut when first seen; the declared
 * limits are recorded before the first resize and come back on opt-out,
 * deletion of the PodAllocation and staleness; mirror pods, terminating pods
 * and pods of old kubelets are never resized; the QoS guard compares memory
 * quantities by value; a replica that may not write writes nothing.
 */
import assert from "node:assert/strict";
import * as k8s from "@kubernetes/client-node";
import { API_VERSION, GROUP, KIND, PLURAL, RESTORE_FINALIZER, VERSION } from "../../src/api/mod.ts";
import {
  DEFAULT_POLICY,
  MANAGED_ANNOTATION,
  MANAGED_LABEL,
  ResizeController,
} from "../../src/controller/mod.ts";
import { EventRecorder } from "../../src/controller/events.ts";
import { LeanClient, leanConfigFromKubeConfig } from "../../src/k8s/lean/mod.ts";
import {
  HEARTBEAT_LABELS,
  heartbeatLeaseName,
  MIRROR_POD_ANNOTATION,
} from "../../src/managed/mod.ts";
import { Registry } from "../../src/metrics/mod.ts";
import { microTime } from "../../src/k8s/mod.ts";
import { startCluster } from "../_support/cluster.ts";
import { requireOrSkip, testbedMissing } from "../_support/requirements.ts";
import { burstablePod, eventually, kubeConfig } from "../k8s/_helpers.ts";

const NS = "safe";
const COOLDOWN_MS = 3000;

function allocation(
  name: string,
  uid: string,
  cpuLimit: string,
  market: { computedAt?: string; intervalSeconds?: number } = {},
) {
  return {
    apiVersion: API_VERSION,
    kind: KIND,
    metadata: { name, namespace: NS },
    spec: {
      podName: name,
      podUID: uid,
      nodeName: "node-a",
      containers: [{ name: "app", cpuLimit }],
      market: {
        price: 0,
        capacityMillicores: 4000,
        contended: false,
        computedAt: market.computedAt ?? new Date().toISOString(),
        // A long interval: these allocations never go stale during the test (unless told).
        intervalSeconds: market.intervalSeconds ?? 3600,
      },
    },
  };
}

requireOrSkip(
  "controller safety: first sight, baseline, restores, corner cases, fencing (test bed)",
  testbedMissing(),
  async (t) => {
    const cluster = await startCluster({
      nodeCpu: 8000,
      namespaces: { [NS]: { [MANAGED_LABEL]: "true" } },
    });
    const { testbed, core, custom } = cluster;
    let writable = true;
    let controller: ResizeController | undefined;
    let eventClient: LeanClient | undefined;
    const pa = async (name: string) =>
      await custom.getNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace: NS,
        plural: PLURAL,
        name,
      }) as { metadata: k8s.V1ObjectMeta; status?: Record<string, any> };
    const paGone = async (name: string) => {
      try {
        await pa(name);
        return false;
      } catch (error) {
        return (error as { code?: number }).code === 404;
      }
    };
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
    const patchPaSpec = (name: string, spec: Record<string, unknown>) =>
      custom.patchNamespacedCustomObject(
        { group: GROUP, version: VERSION, namespace: NS, plural: PLURAL, name, body: { spec } },
        k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch),
      );
    const events = async (name: string) =>
      (await core.listNamespacedEvent({
        namespace: NS,
        fieldSelector: `involvedObject.name=${name}`,
      })).items;
    /** The pod's limit stays at `limit` for `ms` (it is never patched meanwhile). */
    const stays = async (name: string, limit: string, ms: number) => {
      const generation = (await core.readNamespacedPod({ name, namespace: NS })).metadata
        ?.generation;
      const end = performance.now() + ms;
      while (performance.now() < end) {
        const pod = await core.readNamespacedPod({ name, namespace: NS });
        assert.equal(pod.spec?.containers[0].resources?.limits?.cpu, limit, `${name} untouched`);
        assert.equal(pod.metadata?.generation, generation, `${name} never patched`);
        await new Promise((r) => setTimeout(r, 200));
      }
    };
    const registry = new Registry();
    /** The value of one series of the controller's metrics, or undefined. */
    const metric = (series: string) => {
      const line = registry.render().split("\n").find((l) => l.startsWith(`${series} `));
      return line === undefined ? undefined : Number(line.slice(series.length + 1));
    };
    try {
      const controllerKc = kubeConfig(testbed.identities.controller.kubeconfig);
      const connection = leanConfigFromKubeConfig(controllerKc);
      eventClient = new LeanClient(connection);
      controller = new ResizeController(connection, {
        // Small decreases too: clamps and guards are the subject.
        policy: {
          ...DEFAULT_POLICY,
          cooldownMs: COOLDOWN_MS,
          confirmTimeoutMs: 5000,
          protectedMinDecreaseFraction: 0,
        },
        dryRun: false,
        rateLimit: {
          global: { perSecond: 100, burst: 100 },
          perNode: { perSecond: 100, burst: 100 },
        },
        events: new EventRecorder(eventClient, "mbcas-controller", "test"),
        resyncMs: 1000,
        canWrite: () => writable,
        staleAfterIntervals: 12,
        metrics: registry,
      });
      await controller.start();
      controller.resyncAll();

      await t.step(
        "a newly seen pod is not cut at once; its declared limit and the finalizer are recorded before the first resize",
        async () => {
          const uid = await createPod(
            burstablePod(NS, "fresh", "node-a", [{
              name: "app",
              cpuRequest: "100m",
              cpuLimit: "2",
            }]),
          );
          const created = performance.now();
          await createPa(allocation("fresh", uid, "400m"));
          await eventually(
            "baseline recorded",
            async () => (await pa("fresh")).status?.baseline?.containers?.[0]?.cpuLimit === "2",
          );
          await stays("fresh", "2", COOLDOWN_MS - (performance.now() - created) - 800);
          await eventually(
            "first step after the cooldown",
            async () => (await podLimit("fresh")) === "1",
            15_000,
          );
          const object = await pa("fresh");
          assert.ok(object.metadata.finalizers?.includes(RESTORE_FINALIZER), "finalizer added");
          assert.equal(object.status?.baseline?.containers?.[0]?.cpuLimit, "2", "baseline kept");
        },
      );

      await t.step("opting out brings the declared limit back at once, with an Event", async () => {
        await core.patchNamespacedPod(
          {
            name: "fresh",
            namespace: NS,
            body: { metadata: { annotations: { [MANAGED_ANNOTATION]: "false" } } },
          },
          k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch),
        );
        await eventually("restored to 2", async () => (await podLimit("fresh")) === "2", 15_000);
        await eventually(
          "status Restored",
          async () => (await pa("fresh")).status?.state === "Restored",
        );
        assert.ok(
          (await events("fresh")).some((e) =>
            e.reason === "MBCASRestored" && e.involvedObject.kind === "Pod" &&
            /restored to the declared app=2 \(NotOptedIn\)/.test(e.message ?? "")
          ),
          "a Restored event on the pod",
        );
      });

      await t.step("deleting a PodAllocation restores the pod, then the object goes", async () => {
        const uid = await createPod(
          burstablePod(NS, "del", "node-a", [{ name: "app", cpuRequest: "100m", cpuLimit: "1" }]),
        );
        await createPa(allocation("del", uid, "2500m"));
        await eventually("raised at once", async () => (await podLimit("del")) === "2500m", 15_000);
        await custom.deleteNamespacedCustomObject({
          group: GROUP,
          version: VERSION,
          namespace: NS,
          plural: PLURAL,
          name: "del",
        });
        await eventually("restored to 1", async () => (await podLimit("del")) === "1", 15_000);
        await eventually("PodAllocation gone", () => paGone("del"), 15_000);
        // Created again within the minute (opted in again): the budget remembers the raise
        // and the restore of the earlier PodAllocation.
        const again = Date.now();
        await createPa(allocation("del", uid, "2500m"));
        const recent = await eventually("status of the new PodAllocation", async () => {
          const times = (await pa("del")).status?.recentResizeTimes as string[] | undefined;
          return times !== undefined && times.length > 0 ? times : undefined;
        });
        const before = recent.filter((t) => Date.parse(t) < again);
        assert.ok(before.length >= 2, `the earlier resizes carried over: ${recent.join(", ")}`);
      });

      await t.step("a PodAllocation its agent stopped refreshing restores the pod", async () => {
        const uid = await createPod(
          burstablePod(NS, "stale", "node-a", [{ name: "app", cpuRequest: "100m", cpuLimit: "1" }]),
        );
        await createPa(allocation("stale", uid, "1500m", { intervalSeconds: 1 }));
        await eventually("raised", async () => (await podLimit("stale")) === "1500m", 15_000);
        // No heartbeat Lease on this node, and the allocation was computed 10 minutes ago.
        await patchPaSpec("stale", {
          market: { computedAt: new Date(Date.now() - 600_000).toISOString() },
        });
        await eventually("restored to 1", async () => (await podLimit("stale")) === "1", 15_000);
        // Restored once the kubelet reports the declared limit in force (after its lag).
        const status = await eventually("status Restored", async () => {
          const s = (await pa("stale")).status;
          return s?.state === "Restored" ? s : undefined;
        });
        assert.match(
          status?.conditions?.find((c: any) => c.type === "Skipped")?.message ?? "",
          /was refreshed for \d+ s \(limit 30 s\)/,
        );
        assert.ok(
          (metric('mbcas_controller_allocations{state="stale"}') ?? 0) >= 1,
          "the stale allocation is counted",
        );
      });

      await t.step(
        "the age of each node's agent heartbeat is a gauge that grows until renewed",
        async () => {
          const coordination = cluster.admin.makeApiClient(k8s.CoordinationV1Api);
          // Namespace mbcas-system comes with the RBAC manifests. client-node would
          // write renewTime with 3 fractional digits, which a MicroTime refuses:
          // created without it, then renewed by a merge patch, as the agent does.
          const name = heartbeatLeaseName("node-h");
          await coordination.createNamespacedLease({
            namespace: "mbcas-system",
            body: {
              metadata: { name, labels: { ...HEARTBEAT_LABELS } },
              spec: { holderIdentity: "node-h" },
            },
          });
          const renew = () =>
            coordination.patchNamespacedLease(
              {
                name,
                namespace: "mbcas-system",
                body: { spec: { renewTime: microTime(new Date()) } },
              },
              k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch),
            );
          await renew();
          const series = 'mbcas_controller_agent_heartbeat_age_seconds{node="node-h"}';
          const first = await eventually("node-h's heartbeat seen", () => metric(series));
          assert.ok(first < 5, `just renewed: ${first} s`);
          await new Promise((r) => setTimeout(r, 2000));
          const later = metric(series)!;
          assert.ok(later >= first + 1.5, `not renewed for 2 s: ${first} s → ${later} s`);
          await renew();
          await eventually("renewed", () => {
            const age = metric(series);
            return age !== undefined && age < later - 1 ? true : undefined;
          });
        },
      );

      await t.step("terminating and mirror pods are never resized", async () => {
        const held = burstablePod(NS, "ending", "node-a", [{
          name: "app",
          cpuRequest: "100m",
          cpuLimit: "1",
        }]);
        held.metadata!.finalizers = ["test.mbcas.io/hold"];
        const endingUid = await createPod(held);
        await core.deleteNamespacedPod({ name: "ending", namespace: NS });
        await createPa(allocation("ending", endingUid, "2"));
        const mirror = burstablePod(NS, "static", "node-a", [{
          name: "app",
          cpuRequest: "100m",
          cpuLimit: "1",
        }]);
        mirror.metadata!.annotations = { [MIRROR_POD_ANNOTATION]: "checksum" };
        const mirrorUid = await createPod(mirror);
        await createPa(allocation("static", mirrorUid, "2"));
        await eventually(
          "both refused",
          async () =>
            (await pa("ending")).status?.conditions?.find((c: any) => c.type === "Skipped")
                ?.reason === "Terminating" &&
            (await pa("static")).status?.conditions?.find((c: any) => c.type === "Skipped")
                ?.reason === "MirrorPod",
        );
        await stays("ending", "1", 1500);
        await stays("static", "1", 500);
        await core.patchNamespacedPod(
          { name: "ending", namespace: NS, body: { metadata: { finalizers: null } } },
          k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch),
        );
      });

      await t.step(
        "memory 1Gi and 1024Mi are equal: the QoS guard keeps the pod Burstable and the API accepts",
        async () => {
          const body = burstablePod(NS, "mem", "node-a", [{
            name: "app",
            cpuRequest: "250m",
            cpuLimit: "500m",
          }]);
          body.spec!.containers[0].resources = {
            requests: { cpu: "250m", memory: "1Gi" },
            limits: { cpu: "500m", memory: "1024Mi" },
          };
          const uid = await createPod(body);
          await createPa(allocation("mem", uid, "250m"));
          await eventually(
            "stepped down to 251m",
            async () => (await podLimit("mem")) === "251m",
            20_000,
          );
          const pod = await core.readNamespacedPod({ name: "mem", namespace: NS });
          assert.equal(pod.status?.qosClass, "Burstable");
          assert.ok(
            !(await events("mem")).some((e) => e.reason === "MBCASResizeRejected"),
            "no refused resize",
          );
        },
      );

      await t.step("a replica that may not write (lost the Lease) writes nothing", async () => {
        const uid = await createPod(
          burstablePod(NS, "fenced", "node-a", [{
            name: "app",
            cpuRequest: "100m",
            cpuLimit: "1",
          }]),
        );
        writable = false;
        await createPa(allocation("fenced", uid, "2"));
        await stays("fenced", "1", 2000);
        const object = await pa("fenced");
        assert.equal(object.status, undefined, "no status write");
        assert.equal(object.metadata.finalizers, undefined, "no finalizer");
        writable = true;
        controller!.forgetMemory();
        controller!.resyncAll();
        await eventually(
          "applied once it may write",
          async () => (await podLimit("fenced")) === "2",
          15_000,
        );
      });

      await t.step(
        "an allocation computed on another node is refused (defence in depth)",
        async () => {
          const uid = await createPod(
            burstablePod(NS, "elsewhere", "node-a", [{
              name: "app",
              cpuRequest: "100m",
              cpuLimit: "1",
            }]),
          );
          const body = allocation("elsewhere", uid, "2");
          body.spec.nodeName = "node-b";
          await createPa(body);
          await eventually("refused", async () => {
            const skipped = (await pa("elsewhere")).status?.conditions?.find((c: any) =>
              c.type === "Skipped"
            );
            return skipped?.reason === "NodeMismatch" &&
              /computed on node node-b, the pod runs on node-a/.test(skipped.message);
          });
          await stays("elsewhere", "1", 1000);
        },
      );

      await t.step("a node whose kubelet is older than 1.33 is left alone", async () => {
        const uid = await createPod(
          burstablePod(NS, "old", "node-a", [{ name: "app", cpuRequest: "100m", cpuLimit: "1" }]),
        );
        const node = await core.readNode({ name: "node-a" });
        await core.patchNodeStatus(
          {
            name: "node-a",
            body: {
              status: { nodeInfo: { ...node.status!.nodeInfo!, kubeletVersion: "v1.32.4" } },
            },
          },
          k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch),
        );
        await createPa(allocation("old", uid, "2"));
        await eventually(
          "refused",
          async () =>
            (await pa("old")).status?.conditions?.find((c: any) => c.type === "Skipped")?.reason ===
              "KubeletTooOld",
        );
        await stays("old", "1", 1000);
      });
    } finally {
      await controller?.stop();
      eventClient?.close();
      await cluster.stop();
    }
  },
);
