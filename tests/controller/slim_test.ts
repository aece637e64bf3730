/**
 * The controller caches pods, nodes and namespaces reduced to the fields it
 * reads (`slimPod`, `slimNode`, `slimNamespace`). Property: for any pod,
 * namespace and node, the controller sees the same thing in the reduced
 * objects as in the full ones (its policy's view, the status it writes),
 * the reduction is idempotent, and the bulky fields are gone.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import type * as k8s from "@kubernetes/client-node";
import {
  podState,
  resizePendingReason,
  slimNamespace,
  slimNode,
  slimPod,
  statusFor,
} from "../../src/controller/mod.ts";
import { withoutManagedFields } from "../../src/k8s/mod.ts";

const cpu = fc.constantFrom("100m", "250m", "1", "1500m", "2");
const memory = fc.constantFrom("64Mi", "128Mi", "1Gi", "1024Mi");
const resources = fc.record({
  requests: fc.option(
    fc.record({ cpu, memory, "nvidia.com/gpu": fc.constant("1") }, { requiredKeys: [] }),
    { nil: undefined },
  ),
  limits: fc.option(fc.record({ cpu, memory }, { requiredKeys: [] }), { nil: undefined }),
}, { requiredKeys: [] });
const keys = fc.constantFrom(
  "mbcas.io/managed",
  "mbcas.io/tier",
  "mbcas.io/min-cpu-limit",
  "mbcas.io/allow-restart",
  "kubernetes.io/config.mirror",
  "app.kubernetes.io/name",
  "kubectl.kubernetes.io/last-applied-configuration",
);
const values = fc.constantFrom("true", "false", "elastic", "protected", "declared", "0.5", "x");
const annotations = fc.option(fc.dictionary(keys, values), { nil: undefined });
const name = fc.constantFrom("app", "web", "sidecar");
const pod: fc.Arbitrary<k8s.V1Pod> = fc.record({
  metadata: fc.record({
    name: fc.constant("p"),
    namespace: fc.constant("ns"),
    uid: fc.uuid(),
    resourceVersion: fc.nat().map(String),
    generation: fc.option(fc.integer({ min: 1, max: 9 }), { nil: undefined }),
    deletionTimestamp: fc.option(fc.constant("2026-12-02T00:00:00Z"), { nil: undefined }),
    annotations,
    labels: annotations,
    managedFields: fc.constant([{ manager: "kubectl", fieldsV1: { "f:spec": {} } }]),
  }, { requiredKeys: ["name", "namespace", "uid", "resourceVersion", "managedFields"] }),
  spec: fc.record({
    nodeName: fc.option(fc.constantFrom("node-a", "node-b"), { nil: undefined }),
    containers: fc.uniqueArray(
      fc.record({
        name,
        image: fc.constant("registry/app:1"),
        env: fc.constant([{ name: "A", value: "b".repeat(100) }]),
        resources: fc.option(resources, { nil: undefined }),
        resizePolicy: fc.option(
          fc.array(fc.record({
            resourceName: fc.constantFrom("cpu", "memory"),
            restartPolicy: fc.constantFrom("NotRequired", "RestartContainer"),
          })),
          { nil: undefined },
        ),
      }, { requiredKeys: ["name", "image", "env"] }),
      { selector: (c) => c.name, minLength: 1, maxLength: 3 },
    ),
    volumes: fc.constant([{ name: "data", emptyDir: {} }]),
  }, { requiredKeys: ["containers", "volumes"] }),
  status: fc.record({
    phase: fc.constantFrom("Pending", "Running", "Succeeded"),
    qosClass: fc.constantFrom("Guaranteed", "Burstable", "BestEffort"),
    conditions: fc.array(fc.record({
      type: fc.constantFrom("Ready", "PodResizePending", "PodResizeInProgress"),
      status: fc.constantFrom("True", "False"),
      reason: fc.constantFrom("Deferred", "Infeasible", "Error", ""),
      message: fc.constant("m"),
      observedGeneration: fc.option(fc.integer({ min: 1, max: 9 }), { nil: undefined }),
    }, { requiredKeys: ["type", "status"] })),
    containerStatuses: fc.array(fc.record({
      name,
      image: fc.constant("registry/app:1"),
      ready: fc.boolean(),
      restartCount: fc.nat(),
      resources: fc.option(resources, { nil: undefined }),
    }, { requiredKeys: ["name", "image", "ready", "restartCount"] })),
  }, { requiredKeys: [] }),
}) as fc.Arbitrary<k8s.V1Pod>;
const namespace: fc.Arbitrary<k8s.V1Namespace> = fc.record({
  metadata: fc.record({
    name: fc.constant("ns"),
    resourceVersion: fc.constant("1"),
    labels: annotations,
    annotations,
  }, { requiredKeys: ["name", "resourceVersion"] }),
});
const node: fc.Arbitrary<k8s.V1Node> = fc.record({
  metadata: fc.record({ name: fc.constant("node-a"), resourceVersion: fc.constant("1") }),
  status: fc.record({
    allocatable: fc.record({ cpu: fc.constantFrom("2", "3500m"), memory: fc.constant("8Gi") }),
    nodeInfo: fc.record({
      kubeletVersion: fc.constantFrom("v1.32.1", "v1.35.4"),
      osImage: fc.constant("Debian"),
    }) as fc.Arbitrary<k8s.V1NodeSystemInfo>,
    images: fc.constant([{ names: ["registry/app:1"], sizeBytes: 123 }]),
  }, { requiredKeys: ["allocatable", "nodeInfo", "images"] }),
});

/** JSON as the cache holds it (undefined properties dropped). */
const json = <T>(value: T): T => JSON.parse(JSON.stringify(value));

Deno.test("slim objects: the controller sees in them what it sees in the full objects", () => {
  fc.assert(
    fc.property(pod, namespace, node, (p, ns, n) => {
      const full = json(p);
      const slim = json(slimPod(full));
      const slimNs = json(slimNamespace(json(ns)));
      const slimN = json(slimNode(json(n)));
      assert.deepEqual(podState(slim, slimNs, slimN), podState(full, json(ns), json(n)));
      assert.equal(resizePendingReason(slim), resizePendingReason(full));
      const decision = { state: "Applied" as const, conditions: [] };
      const now = new Date("2026-12-02T00:00:00Z");
      assert.deepEqual(
        statusFor(decision, slim, 3, undefined, now, null),
        statusFor(decision, full, 3, undefined, now, null),
      );
      assert.equal(slim.metadata?.resourceVersion, full.metadata?.resourceVersion);
      assert.equal(slim.metadata?.uid, full.metadata?.uid);
    }),
    { numRuns: 300 },
  );
});

Deno.test("slim objects: idempotent, and the bulky fields are gone", () => {
  fc.assert(
    fc.property(pod, namespace, node, (p, ns, n) => {
      const once = json(slimPod(json(p)));
      assert.deepEqual(json(slimPod(once)), once);
      assert.deepEqual(json(slimNode(json(slimNode(json(n))))), json(slimNode(json(n))));
      assert.deepEqual(
        json(slimNamespace(json(slimNamespace(json(ns))))),
        json(slimNamespace(json(ns))),
      );
      const text = JSON.stringify([once, slimNode(json(n)), slimNamespace(json(ns))]);
      for (const bulky of ["managedFields", "env", "volumes", "image", "images", "osImage"]) {
        assert.ok(!text.includes(`"${bulky}"`), `${bulky} dropped`);
      }
      assert.ok(!text.includes("last-applied-configuration"), "foreign annotations dropped");
      assert.ok(!text.includes("nvidia.com/gpu"), "resources other than CPU and memory dropped");
    }),
    { numRuns: 200 },
  );
});

Deno.test("withoutManagedFields: drops only metadata.managedFields, idempotent", () => {
  const pa = {
    apiVersion: "allocation.mbcas.io/v1alpha1",
    metadata: { name: "p", resourceVersion: "3", managedFields: [{ manager: "agent" }] },
    spec: { nodeName: "n" },
    status: { state: "Applied" },
  };
  const once = withoutManagedFields<typeof pa>(pa);
  assert.deepEqual(once, { ...pa, metadata: { name: "p", resourceVersion: "3" } });
  assert.equal(withoutManagedFields(once), once, "nothing to drop: the same object");
  assert.equal(pa.metadata.managedFields.length, 1, "the input is not changed");
});
