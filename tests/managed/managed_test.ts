import assert from "node:assert/strict";
import type * as k8s from "@kubernetes/client-node";
import {
  ALLOW_RESTART_ANNOTATION,
  containerIneligibility,
  kubeletSupportsResize,
  MANAGED_ANNOTATION,
  MANAGED_LABEL,
  MIN_CPU_LIMIT_ANNOTATION,
  minLimitRule,
  MIRROR_POD_ANNOTATION,
  otherCpuUsers,
  parseMinLimit,
  podIneligibility,
} from "../../src/managed/mod.ts";

const ns = (labels: Record<string, string> = {}, annotations: Record<string, string> = {}) =>
  ({ metadata: { name: "shop", labels, annotations } }) as k8s.V1Namespace;
const optedNs = ns({ [MANAGED_LABEL]: "true" });

function pod(over: {
  annotations?: Record<string, string>;
  qos?: string;
  phase?: string;
  deleting?: boolean;
  spec?: Partial<k8s.V1PodSpec>;
} = {}): k8s.V1Pod {
  return {
    metadata: {
      name: "web",
      namespace: "shop",
      annotations: over.annotations ?? {},
      ...(over.deleting ? { deletionTimestamp: new Date() } : {}),
    },
    spec: { containers: [{ name: "app" }], ...over.spec },
    status: { qosClass: over.qos ?? "Burstable", phase: over.phase ?? "Running" },
  } as k8s.V1Pod;
}

Deno.test("managed: opted in by namespace label or pod annotation; mirror, terminating, Guaranteed and BestEffort pods are not managed", () => {
  assert.equal(podIneligibility(pod(), optedNs), null);
  assert.equal(podIneligibility(pod(), ns())?.reason, "NotOptedIn");
  assert.equal(
    podIneligibility(pod({ annotations: { [MANAGED_ANNOTATION]: "true" } }), ns()),
    null,
  );
  assert.equal(
    podIneligibility(pod({ annotations: { [MANAGED_ANNOTATION]: "false" } }), optedNs)?.reason,
    "NotOptedIn",
  );
  assert.equal(
    podIneligibility(pod({ annotations: { [MIRROR_POD_ANNOTATION]: "abc" } }), optedNs)?.reason,
    "MirrorPod",
  );
  assert.equal(podIneligibility(pod({ deleting: true }), optedNs)?.reason, "Terminating");
  assert.equal(podIneligibility(pod({ qos: "Guaranteed" }), optedNs)?.reason, "GuaranteedQoS");
  assert.equal(podIneligibility(pod({ qos: "BestEffort" }), optedNs)?.reason, "BestEffortQoS");
});

Deno.test("managed: a container needs a CPU limit, and a restarting CPU resizePolicy needs the pod's permission", () => {
  const limited: k8s.V1Container = { name: "app", resources: { limits: { cpu: "500m" } } };
  assert.equal(containerIneligibility(limited, pod()), null);
  assert.equal(containerIneligibility({ name: "app" }, pod())?.reason, "NoCPULimit");
  const restarting: k8s.V1Container = {
    ...limited,
    resizePolicy: [{ resourceName: "cpu", restartPolicy: "RestartContainer" }],
  };
  assert.equal(containerIneligibility(restarting, pod())?.reason, "RestartRequired");
  assert.equal(
    containerIneligibility(
      restarting,
      pod({ annotations: { [ALLOW_RESTART_ANNOTATION]: "true" } }),
    ),
    null,
  );
});

Deno.test("managed: min-cpu-limit parses request, declared and percentages; the pod wins; a bad value means raise only, with a warning", () => {
  assert.deepEqual(parseMinLimit("request"), { kind: "request" });
  assert.deepEqual(parseMinLimit("declared"), { kind: "declared" });
  assert.deepEqual(parseMinLimit("50%"), { kind: "fraction", fraction: 0.5 });
  for (const bad of ["150%", "half", "", "0.5"]) {
    const parsed = parseMinLimit(bad);
    assert.ok("error" in parsed, bad);
    assert.match(
      parsed.error,
      new RegExp(`mbcas\\.io/min-cpu-limit=${JSON.stringify(JSON.stringify(bad)).slice(1, -1)}`),
    );
  }
  assert.deepEqual(minLimitRule(pod(), ns()), { rule: { kind: "request" }, warning: null });
  const nsDeclared = ns({}, { [MIN_CPU_LIMIT_ANNOTATION]: "declared" });
  assert.deepEqual(minLimitRule(pod(), nsDeclared).rule, { kind: "declared" });
  assert.deepEqual(
    minLimitRule(pod({ annotations: { [MIN_CPU_LIMIT_ANNOTATION]: "25%" } }), nsDeclared).rule,
    { kind: "fraction", fraction: 0.25 },
  );
  const typo = minLimitRule(pod({ annotations: { [MIN_CPU_LIMIT_ANNOTATION]: "declard" } }), ns());
  assert.deepEqual(typo.rule, { kind: "declared" });
  assert.match(typo.warning ?? "", /"declard".*using "declared"/);
});

Deno.test("managed: sidecars always, init containers while starting, and pod overhead are CPU users", () => {
  const spec: Partial<k8s.V1PodSpec> = {
    initContainers: [
      { name: "mesh", restartPolicy: "Always", resources: { requests: { cpu: "100m" } } },
      { name: "migrate", resources: { requests: { cpu: "300m" } } },
    ],
    overhead: { cpu: "250m" },
  };
  assert.deepEqual(otherCpuUsers(pod({ spec })), [
    { name: "mesh", kind: "sidecar", requestMillicores: 100 },
    { name: "overhead", kind: "overhead", requestMillicores: 250 },
  ]);
  assert.deepEqual(otherCpuUsers(pod({ spec, phase: "Pending" })).map((u) => u.name), [
    "mesh",
    "migrate",
    "overhead",
  ]);
});

Deno.test("managed: kubelets from 1.33 apply in-place resizes", () => {
  assert.equal(kubeletSupportsResize("v1.35.4"), true);
  assert.equal(kubeletSupportsResize("v1.33.0-eks-123"), true);
  assert.equal(kubeletSupportsResize("v1.32.9"), false);
  assert.equal(kubeletSupportsResize("v1.27.0"), false);
  assert.equal(kubeletSupportsResize("v2.0.0"), true);
  assert.equal(kubeletSupportsResize(undefined), null);
  assert.equal(kubeletSupportsResize("garbage"), null);
});
