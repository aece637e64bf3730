/**
 * The deployment manifests under deploy/: the kustomize base, the minikube
 * overlay, the demo and the servicemonitor component render with kubectl's
 * kustomize; they agree with the agent's and controller's options (ports,
 * cgroup mount, environment variables, probes, service accounts); and a real
 * kube-apiserver v1.35 accepts every object (server-side dry-run) and holds
 * the pods to the Pod Security Standards we claim: the controller and the demo
 * pass `restricted`, the agent passes it but for its hostPath volume.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import * as k8s from "@kubernetes/client-node";
import { parseMillicores } from "../../src/api/mod.ts";
import { AGENT_OPTIONS, parseAgentConfig } from "../../src/agent/config.ts";
import { MAX_CPU_ANNOTATION, PRIORITY_ANNOTATION } from "../../src/agent/bids.ts";
import { CONTROLLER_OPTIONS, parseControllerConfig } from "../../src/controller/config.ts";
import { ALLOW_RESTART_ANNOTATION, MANAGED_LABEL } from "../../src/controller/observe.ts";
import { startTestbed } from "../../src/testbed/mod.ts";
import { withBaseAndComponent } from "../_support/kustomize.ts";
import { kubectlMissing, requireOrSkip, testbedMissing } from "../_support/requirements.ts";

const DEPLOY = new URL("../../deploy/", import.meta.url).pathname;
const SYSTEM = "mbcas-system";
const CRD = "podallocations.allocation.mbcas.io";
const COMPONENT = { app: "app.kubernetes.io/name", role: "app.kubernetes.io/component" };
const PSA = "pod-security.kubernetes.io";

/** A rendered object. */
type Obj = k8s.KubernetesObject & { metadata: k8s.V1ObjectMeta; [field: string]: unknown };

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs kubectl with `stdin` as its standard input. */
async function kubectl(args: string[], stdin?: string): Promise<Run> {
  const child = new Deno.Command("kubectl", {
    args,
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(stdin));
    await writer.close();
  }
  const out = await child.output();
  const text = new TextDecoder();
  return { code: out.code, stdout: text.decode(out.stdout), stderr: text.decode(out.stderr) };
}

/** Runs kubectl and fails with its stderr unless it exits 0. */
async function kubectlOk(args: string[], stdin?: string): Promise<Run> {
  const run = await kubectl(args, stdin);
  if (run.code !== 0) {
    throw new Error(`kubectl ${args.join(" ")} exited ${run.code}:\n${run.stderr}`);
  }
  return run;
}

/** Why kubectl cannot run here, or null. */
/** A kustomization's output: the YAML kubectl printed, and its objects as they are (unconverted). */
interface Rendered {
  yaml: string;
  objects: Obj[];
}

const rendered = new Map<string, Promise<Rendered>>();

/**
 * `kubectl kustomize <dir>` (once per directory). The YAML becomes JSON through
 * `kubectl label --local -o jsonpath` removing a label nobody sets: offline, and
 * exact (client-node's loadAllYaml would convert the objects to its models,
 * renaming fields such as x-kubernetes-list-type and dropping unknown ones).
 */
function render(dir: string): Promise<Rendered> {
  let result = rendered.get(dir);
  if (result === undefined) {
    result = (async () => {
      const { stdout: yaml } = await kubectlOk(["kustomize", dir]);
      const { stdout: lines } = await kubectlOk([
        "label",
        "--local",
        "--kubeconfig=/dev/null",
        "-f",
        "-",
        "-o",
        'jsonpath={@}{"\\n"}',
        "mbcas.io/manifests-test-unused-",
      ], yaml);
      const objects = lines.split("\n").filter((l) => l.trim() !== "").map((l) => JSON.parse(l));
      assert.equal(objects.length, yaml.split(/^---$/m).length, `${dir}: every document converted`);
      return { yaml, objects };
    })();
    rendered.set(dir, result);
  }
  return result;
}

/** The base with the servicemonitor component, through a throw-away kustomization. */
function renderWithServiceMonitor(): Promise<Rendered> {
  return withBaseAndComponent("components/servicemonitor", render);
}

function find<T = Obj>(objects: Obj[], kind: string, name: string): T {
  const found = objects.filter((o) => o.kind === kind && o.metadata.name === name);
  assert.equal(found.length, 1, `exactly one ${kind} ${name}`);
  return found[0] as T;
}

function only<T>(items: T[] | undefined, what: string): T {
  assert.equal(items?.length, 1, `exactly one ${what}`);
  return items![0];
}

/** Whether every label of `selector` is among `labels`. */
function selects(selector: Record<string, string> | undefined, labels?: Record<string, string>) {
  const entries = Object.entries(selector ?? {});
  return entries.length > 0 && entries.every(([k, v]) => labels?.[k] === v);
}

/** The container port a probe's or Service's (named or numbered) port refers to. */
function containerPort(container: k8s.V1Container, port: number | string | undefined): number {
  const match = container.ports?.find((p) =>
    typeof port === "string" ? p.name === port : p.containerPort === port
  );
  assert.ok(match, `container ${container.name} has port ${port}`);
  return match.containerPort;
}

/**
 * The environment a container sees, the downward API resolved as the kubelet
 * would for a pod `podName` in `namespace` on `nodeName`.
 */
function environment(
  container: k8s.V1Container,
  pod: { podName: string; namespace: string; nodeName: string },
): Map<string, string> {
  const env = new Map<string, string>();
  for (const e of container.env ?? []) {
    if (e.value !== undefined) env.set(e.name, e.value);
    else {
      const field = e.valueFrom?.fieldRef?.fieldPath;
      const value = field === "metadata.name"
        ? pod.podName
        : field === "metadata.namespace"
        ? pod.namespace
        : field === "spec.nodeName"
        ? pod.nodeName
        : undefined;
      assert.ok(value !== undefined, `env ${e.name}: unexpected source ${JSON.stringify(e)}`);
      env.set(e.name, value);
    }
  }
  return env;
}

/** A memory quantity in MB (Mi, Gi or M); NaN for anything else. */
function parseMemoryMb(quantity: string | undefined): number {
  const match = /^(\d+)(Mi|Gi|M)$/.exec(quantity ?? "");
  if (match === null) return NaN;
  const n = Number(match[1]);
  return match[2] === "Gi" ? n * 1024 : match[2] === "Mi" ? n : (n * 1e6) / 2 ** 20;
}

/** Checks what both of our containers share: ports, probes, no command, the `restricted` basics. */
function checkContainer(
  container: k8s.V1Container,
  spec: k8s.V1PodSpec,
  options: Record<string, { env: string; default: string }>,
  fieldRefs: Record<string, string>,
): void {
  assert.equal(container.command, undefined, "the image's entrypoint runs the binary");
  const known = new Set(Object.values(options).map((o) => o.env));
  for (const e of container.env ?? []) {
    if (e.name === "DENO_V8_FLAGS") continue; // the runtime's, checked below
    assert.ok(known.has(e.name), `env ${e.name} is an option's variable`);
    assert.notEqual(e.name, "KUBECONFIG", "in-cluster credentials, not a kubeconfig");
  }
  // The heap is sized at deploy time, within the container's memory limit.
  const v8 = container.env?.find((e) => e.name === "DENO_V8_FLAGS")?.value ?? "";
  const heapMb = Number(/--max-old-space-size=(\d+)/.exec(v8)?.[1]);
  assert.ok(heapMb > 0, `DENO_V8_FLAGS sets --max-old-space-size: ${JSON.stringify(v8)}`);
  const limitMb = parseMemoryMb(container.resources?.limits?.memory);
  assert.ok(heapMb < limitMb, `a heap of ${heapMb} MB fits the memory limit of ${limitMb} MB`);
  for (const [name, fieldPath] of Object.entries(fieldRefs)) {
    const e = container.env?.find((x) => x.name === name);
    assert.equal(e?.valueFrom?.fieldRef?.fieldPath, fieldPath, `${name} from ${fieldPath}`);
  }
  const metrics = only(container.ports, "container port");
  assert.equal(metrics.name, "metrics");
  assert.equal(metrics.containerPort, Number(options["metrics-port"].default));
  assert.equal(
    containerPort(container, container.livenessProbe?.httpGet?.port),
    metrics.containerPort,
  );
  assert.equal(container.livenessProbe?.httpGet?.path, "/healthz");
  assert.equal(
    containerPort(container, container.readinessProbe?.httpGet?.port),
    metrics.containerPort,
  );
  assert.equal(container.readinessProbe?.httpGet?.path, "/readyz");
  assert.ok(container.resources?.requests?.cpu && container.resources.requests.memory);
  assert.ok(container.resources?.limits?.memory, "a memory limit");
  assert.deepEqual(spec.securityContext, {
    runAsNonRoot: true,
    runAsUser: 65532,
    runAsGroup: 65532,
    seccompProfile: { type: "RuntimeDefault" },
  });
  assert.deepEqual(container.securityContext, {
    allowPrivilegeEscalation: false,
    readOnlyRootFilesystem: true,
    capabilities: { drop: ["ALL"] },
  });
}

/** Checks a metrics Service against the workload it fronts. */
function checkService(service: k8s.V1Service, template: k8s.V1PodTemplateSpec): void {
  const container = template.spec!.containers[0];
  assert.ok(selects(service.spec?.selector, template.metadata?.labels), "selects the pods");
  assert.deepEqual(service.metadata?.labels, service.spec?.selector, "labelled like its pods");
  const port = only(service.spec?.ports, "Service port");
  assert.equal(port.name, "metrics");
  assert.equal(port.port, containerPort(container, port.targetPort));
}

/** A Pod with a workload's pod template. */
function podFrom(template: k8s.V1PodTemplateSpec, name: string, namespace: string): k8s.V1Pod {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      name,
      namespace,
      labels: template.metadata?.labels,
      annotations: template.metadata?.annotations,
    },
    spec: structuredClone(template.spec!),
  };
}

/**
 * The violations in a Pod Security rejection or warning. kube-apiserver v1.35 says
 * `pods "x" is forbidden: violates PodSecurity "restricted:latest": A (details), B (details)`
 * when it refuses a pod, and `would violate PodSecurity "restricted:latest": A (details), ...`
 * when it warns about a workload's pod template: the checks that fail, joined by ", " (the
 * details of one may hold ", " themselves, inside its parentheses).
 */
function violations(message: string): { level: string; checks: string[] } {
  const m = /(?:violates|would violate) PodSecurity "([^"]+)": (.*)$/s.exec(message.trim());
  assert.ok(m, `a Pod Security rejection: ${message}`);
  const checks: string[] = [];
  let depth = 0;
  let start = 0;
  const text = m[2];
  for (let i = 0; i < text.length; i++) {
    if (text[i] === "(") depth++;
    else if (text[i] === ")") depth--;
    else if (depth === 0 && text.startsWith(", ", i)) {
      checks.push(text.slice(start, i));
      start = i + 2;
    }
  }
  checks.push(text.slice(start));
  return { level: m[1], checks };
}

/** The agent pod's one violation of `restricted`, as v1.35 words it. */
const RESTRICTED_HOSTPATH_ONLY = {
  level: "restricted:latest",
  checks: ['restricted volume types (volume "cgroup" uses restricted volume type "hostPath")'],
};

/** The agent pod's one violation of `baseline`, as v1.35 words it. */
const BASELINE_HOSTPATH_ONLY = {
  level: "baseline:latest",
  checks: ['hostPath volumes (volume "cgroup")'],
};

/** The warnings kubectl printed (`Warning: ...` lines). */
function warnings(stderr: string): string[] {
  return stderr.split("\n").filter((l) => l.startsWith("Warning: ")).map((l) => l.slice(9));
}

interface Mbcas {
  controller: k8s.V1Deployment;
  agent: k8s.V1DaemonSet;
}

function mbcas(objects: Obj[]): Mbcas {
  return {
    controller: find<k8s.V1Deployment>(objects, "Deployment", "mbcas-controller"),
    agent: find<k8s.V1DaemonSet>(objects, "DaemonSet", "mbcas-agent"),
  };
}

requireOrSkip(
  "deploy: kustomizations render, and the manifests agree with the agent's and controller's options",
  kubectlMissing(),
  async (t) => {
    let base: Obj[] = [];
    let minikube: Obj[] = [];
    let demo: Obj[] = [];
    let rbac: Obj[] = [];
    let monitored: Obj[] = [];

    await t.step(
      "base, overlays/minikube, demo, rbac, crd and base + components/servicemonitor render",
      async () => {
        [base, minikube, demo, rbac, monitored] = (await Promise.all([
          render(join(DEPLOY, "base")),
          render(join(DEPLOY, "overlays/minikube")),
          render(join(DEPLOY, "demo")),
          render(join(DEPLOY, "rbac")),
          renderWithServiceMonitor(),
        ])).map((r) => r.objects);
        const crd = (await render(join(DEPLOY, "crd"))).objects;
        assert.deepEqual(crd.map((o) => `${o.kind}/${o.metadata.name}`), [
          `CustomResourceDefinition/${CRD}`,
        ]);
        // The base is ../crd and ../rbac unchanged (but for the namespace's Pod Security labels)...
        for (const o of [...crd, ...rbac]) {
          const same = find(base, o.kind!, o.metadata.name!);
          if (o.kind === "Namespace") {
            const { labels, ...rest } = same.metadata;
            assert.deepEqual({ ...same, metadata: rest }, {
              ...o,
              metadata: { name: o.metadata.name },
            });
            assert.ok(selects(o.metadata.labels, labels), "keeps the namespace's labels");
          } else assert.deepEqual(same, o);
        }
        // ...plus the workloads.
        assert.deepEqual(
          base.map((o) => `${o.kind}/${o.metadata.name}`).filter((k) =>
            !k.includes("Role") && !k.startsWith("ServiceAccount/")
          ).sort(),
          [
            `CustomResourceDefinition/${CRD}`,
            "DaemonSet/mbcas-agent",
            "Deployment/mbcas-controller",
            `Namespace/${SYSTEM}`,
            "PodDisruptionBudget/mbcas-controller",
            "Service/mbcas-agent-metrics",
            "Service/mbcas-controller-metrics",
            "ValidatingAdmissionPolicy/mbcas-agent-own-heartbeat",
            "ValidatingAdmissionPolicy/mbcas-agent-own-node",
            "ValidatingAdmissionPolicy/mbcas-controller-cpu-limits-only",
            "ValidatingAdmissionPolicyBinding/mbcas-agent-own-heartbeat",
            "ValidatingAdmissionPolicyBinding/mbcas-agent-own-node",
            "ValidatingAdmissionPolicyBinding/mbcas-controller-cpu-limits-only",
          ],
        );
        // Every policy is bound, and its binding denies (not just warns or audits).
        for (const policy of base.filter((o) => o.kind === "ValidatingAdmissionPolicy")) {
          const binding = find(base, "ValidatingAdmissionPolicyBinding", policy.metadata.name!);
          const spec = binding.spec as { policyName?: string; validationActions?: string[] };
          assert.equal(spec.policyName, policy.metadata.name);
          assert.deepEqual(spec.validationActions, ["Deny"]);
        }
      },
    );

    await t.step(
      "base: images, labels, replicas, anti-affinity, PDB, tolerations, namespace Pod Security labels",
      () => {
        const { controller, agent } = mbcas(base);
        assert.equal(
          only(controller.spec?.template.spec?.containers, "container").image,
          "mbcas-controller:0.1.0",
        );
        assert.equal(
          only(agent.spec?.template.spec?.containers, "container").image,
          "mbcas-agent:0.1.0",
        );
        for (const [w, role] of [[controller, "controller"], [agent, "agent"]] as const) {
          const labels = { [COMPONENT.app]: "mbcas", [COMPONENT.role]: role };
          assert.equal(w.metadata?.namespace, SYSTEM);
          assert.deepEqual(w.metadata?.labels, labels);
          assert.deepEqual(w.spec?.selector.matchLabels, labels);
          assert.deepEqual(w.spec?.template.metadata?.labels, labels);
        }
        for (const o of base.filter((o) => o.metadata.namespace !== undefined)) {
          assert.equal(o.metadata.namespace, SYSTEM, `${o.kind} ${o.metadata.name}`);
        }
        assert.equal(controller.spec?.replicas, 2);
        const anti = only(
          controller.spec?.template.spec?.affinity?.podAntiAffinity
            ?.preferredDuringSchedulingIgnoredDuringExecution,
          "anti-affinity term",
        );
        assert.equal(anti.podAffinityTerm.topologyKey, "kubernetes.io/hostname");
        assert.ok(
          selects(
            anti.podAffinityTerm.labelSelector?.matchLabels,
            controller.spec?.template.metadata?.labels,
          ),
        );
        const pdb = find<k8s.V1PodDisruptionBudget>(
          base,
          "PodDisruptionBudget",
          "mbcas-controller",
        );
        assert.equal(pdb.spec?.minAvailable, 1);
        assert.ok(
          selects(pdb.spec?.selector?.matchLabels, controller.spec?.template.metadata?.labels),
        );
        assert.equal(agent.spec?.updateStrategy?.rollingUpdate?.maxUnavailable, 1);
        assert.deepEqual(agent.spec?.template.spec?.tolerations, [{ operator: "Exists" }]);
        // Evicted last under node pressure: it is what takes CPU back from elastic pods then.
        assert.equal(agent.spec?.template.spec?.priorityClassName, "system-node-critical");
        // Linux nodes only: the agent reads cgroups, which Windows nodes do not have.
        assert.deepEqual(agent.spec?.template.spec?.nodeSelector, { "kubernetes.io/os": "linux" });
        // The heartbeat Lease lives in the agent's own namespace.
        assert.deepEqual(
          agent.spec?.template.spec?.containers[0].env?.find((e) => e.name === "POD_NAMESPACE")
            ?.valueFrom,
          { fieldRef: { fieldPath: "metadata.namespace" } },
        );
        const ns = find(base, "Namespace", SYSTEM);
        // hostPath keeps the agent out of baseline/restricted: enforce privileged, warn and audit the truth.
        assert.equal(ns.metadata.labels?.[`${PSA}/enforce`], "privileged");
        assert.equal(ns.metadata.labels?.[`${PSA}/enforce-version`], "latest");
        assert.equal(ns.metadata.labels?.[`${PSA}/warn`], "restricted");
        assert.equal(ns.metadata.labels?.[`${PSA}/audit`], "restricted");
      },
    );

    await t.step(
      "controller: env, args, port, probes and Service agree with CONTROLLER_OPTIONS",
      () => {
        const { controller } = mbcas(base);
        const spec = controller.spec!.template.spec!;
        const container = spec.containers[0];
        checkContainer(container, spec, CONTROLLER_OPTIONS, {
          [CONTROLLER_OPTIONS.identity.env]: "metadata.name",
          [CONTROLLER_OPTIONS.namespace.env]: "metadata.namespace",
        });
        const env = environment(container, {
          podName: "mbcas-controller-7d9c-x2x4p",
          namespace: controller.metadata!.namespace!,
          nodeName: "node-a",
        });
        const config = parseControllerConfig(container.args ?? [], (name) => env.get(name));
        assert.equal(config.identity, "mbcas-controller-7d9c-x2x4p");
        assert.equal(config.namespace, SYSTEM, "the Lease lives in mbcas-system");
        assert.equal(config.leaderElect, true);
        assert.equal(config.bindAddress, "::");
        assert.equal(config.metricsPort, container.ports![0].containerPort);
        assert.equal(config.kubeconfig, undefined);
        checkService(find(base, "Service", "mbcas-controller-metrics"), controller.spec!.template);
      },
    );

    await t.step(
      "agent: cgroup mount, env, args, port, probes and Service agree with AGENT_OPTIONS",
      () => {
        const { agent } = mbcas(base);
        const spec = agent.spec!.template.spec!;
        const container = spec.containers[0];
        checkContainer(container, spec, AGENT_OPTIONS, {
          [AGENT_OPTIONS["node-name"].env]: "spec.nodeName",
        });
        const env = environment(container, {
          podName: "mbcas-agent-q8x7z",
          namespace: agent.metadata!.namespace!,
          nodeName: "node-a",
        });
        const config = parseAgentConfig(container.args ?? [], (name) => env.get(name));
        assert.equal(config.agent.nodeName, "node-a");
        assert.equal(config.bindAddress, "::");
        assert.equal(config.metricsPort, container.ports![0].containerPort);
        assert.equal(config.kubeconfig, undefined);
        // The node's cgroup tree, read-only, where the agent reads by default.
        const hostPaths = spec.volumes!.filter((v) => v.hostPath !== undefined);
        const cgroup = only(hostPaths, "hostPath volume");
        assert.deepEqual(cgroup.hostPath, { path: "/sys/fs/cgroup", type: "Directory" });
        const mount = only(
          container.volumeMounts?.filter((m) => m.name === cgroup.name),
          "cgroup mount",
        );
        assert.equal(mount.readOnly, true);
        assert.equal(mount.mountPath, AGENT_OPTIONS["cgroup-root"].default);
        assert.equal(config.agent.cgroupRoot, mount.mountPath);
        assert.ok(
          !mount.mountPath.startsWith("/sys/"),
          "Deno reads under /sys only with --allow-all",
        );
        checkService(find(base, "Service", "mbcas-agent-metrics"), agent.spec!.template);
      },
    );

    await t.step("service accounts, their bindings and the Lease Role are in deploy/rbac", () => {
      const { controller, agent } = mbcas(base);
      for (const w of [controller, agent]) {
        const name = w.spec!.template.spec!.serviceAccountName!;
        const namespace = w.metadata!.namespace!;
        const sa = find(rbac, "ServiceAccount", name);
        assert.equal(sa.metadata.namespace, namespace);
        const binding = find<k8s.V1ClusterRoleBinding>(rbac, "ClusterRoleBinding", name);
        assert.deepEqual(binding.subjects, [{ kind: "ServiceAccount", name, namespace }]);
      }
      const role = find<k8s.V1Role>(rbac, "Role", "mbcas-controller-leader-election");
      assert.equal(role.metadata?.namespace, controller.metadata?.namespace);
      assert.ok(
        role.rules?.some((r) => r.resources?.includes("leases") && r.verbs.includes("update")),
      );
      const binding = find<k8s.V1RoleBinding>(
        rbac,
        "RoleBinding",
        "mbcas-controller-leader-election",
      );
      assert.deepEqual(binding.subjects, [{
        kind: "ServiceAccount",
        name: controller.spec!.template.spec!.serviceAccountName,
        namespace: SYSTEM,
      }]);
    });

    await t.step("overlays/minikube: the base with the :dev images, never pulled", () => {
      const dev = mbcas(minikube);
      const expected = structuredClone(base);
      const baseline = mbcas(expected);
      for (
        const [w, image] of [
          [baseline.controller, "mbcas-controller:dev"],
          [baseline.agent, "mbcas-agent:dev"],
        ] as const
      ) {
        w.spec!.template.spec!.containers[0].image = image;
        w.spec!.template.spec!.containers[0].imagePullPolicy = "Never";
      }
      assert.deepEqual(minikube, expected);
      assert.equal(dev.controller.spec?.replicas, 2);
    });

    await t.step(
      "components/elastic-yield: the agent as root, still without capabilities, with a writable cgroup mount, yielding on and protected limits open; the base has both off; overlays/lab is local + the component",
      async () => {
        const baseAgent = mbcas(base).agent.spec!.template.spec!;
        const env = (spec: k8s.V1PodSpec) =>
          environment(spec.containers[0], {
            podName: "mbcas-agent-q8x7z",
            namespace: SYSTEM,
            nodeName: "node-a",
          });
        const baseEnv = env(baseAgent);
        assert.equal(
          parseAgentConfig([], (name) => baseEnv.get(name)).agent.elasticYield,
          false,
          "the base agent, read-only, does not try to write weights",
        );
        assert.equal(
          parseAgentConfig([], (name) => baseEnv.get(name)).agent.protectedLimit,
          "target",
          "the base agent's protected limits follow their need",
        );
        const [yielding, lab, local] = await Promise.all([
          withBaseAndComponent("components/elastic-yield", render),
          render(join(DEPLOY, "overlays/lab")),
          render(join(DEPLOY, "overlays/local")),
        ]);
        const spec = mbcas(yielding.objects).agent.spec!.template.spec!;
        const yieldEnv = env(spec);
        const yieldConfig = parseAgentConfig([], (name) => yieldEnv.get(name)).agent;
        assert.equal(yieldConfig.elasticYield, true);
        assert.equal(yieldConfig.protectedLimit, "cap");
        for (const option of ["elastic-yield", "protected-limit"] as const) {
          assert.equal(
            spec.containers[0].env!.filter((e) => e.name === AGENT_OPTIONS[option].env).length,
            1,
            `one ${AGENT_OPTIONS[option].env}`,
          );
        }
        assert.deepEqual(spec.securityContext, {
          runAsNonRoot: false,
          runAsUser: 0,
          runAsGroup: 0,
          seccompProfile: { type: "RuntimeDefault" },
        });
        assert.deepEqual(
          spec.containers[0].securityContext,
          baseAgent.containers[0].securityContext,
        );
        assert.deepEqual(spec.containers[0].securityContext?.capabilities, { drop: ["ALL"] });
        const cgroup = spec.containers[0].volumeMounts!.find((m) => m.name === "cgroup")!;
        assert.equal(cgroup.readOnly, false);
        assert.equal(cgroup.mountPath, AGENT_OPTIONS["cgroup-root"].default);
        // Nothing else differs from the base.
        const rest = (objects: Obj[]) =>
          objects.filter((o) => !(o.kind === "DaemonSet" && o.metadata.name === "mbcas-agent"));
        assert.deepEqual(rest(yielding.objects), rest(base));
        // The lab: the local overlay's objects, with the component's agent.
        assert.deepEqual(rest(lab.objects), rest(local.objects));
        const labAgent = mbcas(lab.objects).agent.spec!.template.spec!;
        assert.deepEqual(labAgent.securityContext, spec.securityContext);
        assert.equal(labAgent.containers[0].image, "mbcas-agent:local");
      },
    );

    await t.step(
      "components/servicemonitor: ServiceMonitors select the metrics Services by labels and port name",
      () => {
        const monitors = monitored.filter((o) => o.kind === "ServiceMonitor");
        assert.deepEqual(monitors.map((m) => m.metadata.name).sort(), [
          "mbcas-agent",
          "mbcas-controller",
        ]);
        assert.deepEqual(monitored.filter((o) => o.kind !== "ServiceMonitor"), base);
        // deno-lint-ignore no-explicit-any -- monitoring.coreos.com/v1 has no types here
        for (const m of monitors as any[]) {
          assert.equal(m.apiVersion, "monitoring.coreos.com/v1");
          assert.equal(m.metadata.namespace, SYSTEM);
          const services = base.filter((o) =>
            o.kind === "Service" &&
            (m.spec.namespaceSelector?.matchNames ?? [m.metadata.namespace]).includes(
              o.metadata.namespace,
            ) && selects(m.spec.selector.matchLabels, o.metadata.labels)
          ) as k8s.V1Service[];
          const service = only(services, `Service selected by ServiceMonitor ${m.metadata.name}`);
          assert.equal(
            service.metadata?.labels?.[COMPONENT.role],
            m.metadata.name.replace("mbcas-", ""),
          );
          const endpoint = only(m.spec.endpoints as { port: string; path: string }[], "endpoint");
          assert.ok(
            service.spec?.ports?.some((p) => p.name === endpoint.port),
            `Service ${service.metadata?.name} has port ${endpoint.port}`,
          );
          assert.equal(endpoint.path, "/metrics");
        }
      },
    );

    await t.step(
      "demo: opted-in restricted namespace, Burstable pods resizable in place, valid annotations, one node",
      () => {
        const ns = find(demo, "Namespace", "mbcas-demo");
        assert.equal(ns.metadata.labels?.[MANAGED_LABEL], "true");
        assert.equal(ns.metadata.labels?.[`${PSA}/enforce`], "restricted");
        const bursty = find<k8s.V1Deployment>(demo, "Deployment", "bursty");
        const batch = find<k8s.V1Job>(demo, "Job", "batch");
        for (const w of [bursty, batch]) {
          assert.equal(w.metadata?.namespace, "mbcas-demo");
          const template = w.spec!.template;
          const annotations = template.metadata?.annotations ?? {};
          assert.equal(annotations[ALLOW_RESTART_ANNOTATION], undefined);
          if (annotations[PRIORITY_ANNOTATION] !== undefined) {
            const p = Number(annotations[PRIORITY_ANNOTATION]);
            assert.ok(p > 0 && p <= 1000, `${PRIORITY_ANNOTATION} in (0, 1000]`);
          }
          if (annotations[MAX_CPU_ANNOTATION] !== undefined) {
            assert.ok((parseMillicores(annotations[MAX_CPU_ANNOTATION]) ?? 0) > 0);
          }
          for (const c of template.spec!.containers) {
            assert.match(c.image!, /^busybox:\d+\.\d+\.\d+$/, "busybox pinned by version");
            const request = parseMillicores(String(c.resources?.requests?.cpu))!;
            const limit = parseMillicores(String(c.resources?.limits?.cpu))!;
            assert.ok(request > 0 && limit >= 2 * request, `${c.name}: request well below limit`);
            assert.deepEqual(c.resizePolicy, [{
              resourceName: "cpu",
              restartPolicy: "NotRequired",
            }]);
          }
        }
        const together = only(
          batch.spec!.template.spec?.affinity?.podAffinity
            ?.requiredDuringSchedulingIgnoredDuringExecution,
          "pod affinity term",
        );
        assert.equal(together.topologyKey, "kubernetes.io/hostname");
        assert.ok(
          selects(together.labelSelector?.matchLabels, bursty.spec!.template.metadata?.labels),
        );
      },
    );
  },
);

requireOrSkip(
  "deploy: kube-apiserver v1.35 accepts every rendered object; the pods meet the Pod Security claimed",
  testbedMissing() ?? kubectlMissing(),
  async (t) => {
    const [base, minikube, demo] = await Promise.all([
      render(join(DEPLOY, "base")),
      render(join(DEPLOY, "overlays/minikube")),
      render(join(DEPLOY, "demo")),
    ]);
    const testbed = await startTestbed();
    try {
      const admin = [`--kubeconfig=${testbed.identities.admin.kubeconfig}`];
      const list = (items: unknown[]) => JSON.stringify({ apiVersion: "v1", kind: "List", items });

      await t.step("the CRD, Established, then the namespaces, for real", async () => {
        // A real deploy needs the CRD served before the agent and controller start (they
        // watch PodAllocations) and each namespace before the objects in it. A dry-run creates
        // nothing, so a dry-run of a namespaced object in a namespace that does not exist is
        // refused (NotFound): these go in for real first, everything is then dry-run on top.
        const unique = new Map<string, Obj>();
        for (const o of [...base.objects, ...minikube.objects, ...demo.objects]) {
          unique.set(`${o.kind}/${o.metadata.name}`, o);
        }
        const all = [...unique.values()];
        const crds = all.filter((o) => o.kind === "CustomResourceDefinition");
        assert.equal(crds.length, 1);
        await kubectlOk([...admin, "apply", "--server-side", "-f", "-"], list(crds));
        await kubectlOk([
          ...admin,
          "wait",
          "--for=condition=Established",
          "--timeout=30s",
          `crd/${CRD}`,
        ]);
        const namespaces = all.filter((o) => o.kind === "Namespace");
        assert.deepEqual(namespaces.map((n) => n.metadata.name).sort(), ["mbcas-demo", SYSTEM]);
        await kubectlOk([...admin, "apply", "--server-side", "-f", "-"], list(namespaces));
      });

      await t.step(
        "every object of base, overlays/minikube and demo passes a server-side dry-run apply",
        async () => {
          for (
            const [name, { yaml, objects }, expectedWarnings] of [
              ["base", base, 1],
              ["overlays/minikube", minikube, 1],
              ["demo", demo, 0],
            ] as const
          ) {
            // kubectl's own output, as a user would apply it (strict field validation by the server).
            const run = await kubectl(
              [...admin, "apply", "--server-side", "--dry-run=server", "-f", "-"],
              yaml,
            );
            assert.equal(run.code, 0, `${name}: ${run.stderr}`);
            const lines = run.stdout.trim().split("\n");
            assert.equal(
              lines.length,
              objects.length,
              `${name}: one line per object:\n${run.stdout}`,
            );
            assert.ok(lines.every((l) => l.endsWith("(server dry run)")), run.stdout);
            // mbcas-system warns at `restricted`: the agent DaemonSet's hostPath is the one warning.
            const seen = warnings(run.stderr);
            console.log(
              `${name}: ${seen.length} warning(s)${seen.map((w) => `\n  ${w}`).join("")}`,
            );
            assert.equal(seen.length, expectedWarnings, `${name}: ${run.stderr}`);
            for (const w of seen) assert.deepEqual(violations(w), RESTRICTED_HOSTPATH_ONLY);
          }
        },
      );

      await t.step(
        "Pod Security: controller and demo pass restricted; the agent fails restricted and baseline on hostPath alone",
        async () => {
          const namespaces = ["restricted", "baseline"].map((level) => ({
            apiVersion: "v1",
            kind: "Namespace",
            metadata: {
              name: `psa-${level}`,
              labels: { [`${PSA}/enforce`]: level, [`${PSA}/enforce-version`]: "latest" },
            },
          }));
          await kubectlOk([...admin, "create", "-f", "-"], list(namespaces));
          const create = (pod: k8s.V1Pod) =>
            kubectl(
              [...admin, "create", "--dry-run=server", "-o", "name", "-f", "-"],
              JSON.stringify(pod),
            );
          const accepted = async (pod: k8s.V1Pod) => {
            const run = await create(pod);
            assert.equal(
              run.code,
              0,
              `${pod.metadata?.namespace}/${pod.metadata?.name}: ${run.stderr}`,
            );
            assert.equal(run.stdout.trim(), `pod/${pod.metadata?.name}`);
          };
          const refused = async (pod: k8s.V1Pod) => {
            const run = await create(pod);
            assert.notEqual(run.code, 0, `${pod.metadata?.name} should be refused`);
            assert.match(run.stderr, /^Error from server \(Forbidden\)/, run.stderr);
            console.log(`${pod.metadata?.namespace}/${pod.metadata?.name}: ${run.stderr.trim()}`);
            return violations(run.stderr.trim());
          };

          const { controller, agent } = mbcas(base.objects);
          await accepted(podFrom(controller.spec!.template, "controller", "psa-restricted"));
          assert.deepEqual(
            await refused(podFrom(agent.spec!.template, "agent", "psa-restricted")),
            RESTRICTED_HOSTPATH_ONLY,
          );
          assert.deepEqual(
            await refused(podFrom(agent.spec!.template, "agent", "psa-baseline")),
            BASELINE_HOSTPATH_ONLY,
          );
          const withoutHostPath = podFrom(
            agent.spec!.template,
            "agent-no-hostpath",
            "psa-restricted",
          );
          const podSpec = withoutHostPath.spec!;
          podSpec.volumes = podSpec.volumes!.filter((v) => v.hostPath === undefined);
          podSpec.containers[0].volumeMounts = podSpec.containers[0].volumeMounts!.filter((m) =>
            podSpec.volumes!.some((v) => v.name === m.name)
          );
          assert.equal(podSpec.volumes.length, agent.spec!.template.spec!.volumes!.length - 1);
          await accepted(withoutHostPath);

          const dev = mbcas(minikube.objects);
          await accepted(
            podFrom(dev.controller.spec!.template, "dev-controller", "psa-restricted"),
          );
          assert.deepEqual(
            await refused(podFrom(dev.agent.spec!.template, "dev-agent", "psa-restricted")),
            RESTRICTED_HOSTPATH_ONLY,
          );

          for (const o of demo.objects.filter((o) => o.kind === "Deployment" || o.kind === "Job")) {
            const template = (o as k8s.V1Deployment | k8s.V1Job).spec!.template;
            await accepted(podFrom(template, `demo-${o.metadata.name}`, "psa-restricted"));
          }

          // The parser sees every violation, not just the first: the agent as root, with a
          // capability, on the host's network fails on more counts than hostPath.
          const worse = podFrom(agent.spec!.template, "agent-worse", "psa-restricted");
          worse.spec!.hostNetwork = true;
          worse.spec!.securityContext = {
            ...worse.spec!.securityContext,
            runAsNonRoot: false,
            runAsUser: 0,
          };
          worse.spec!.containers[0].securityContext!.capabilities = {
            drop: ["ALL"],
            add: ["SYS_ADMIN"],
          };
          const worst = await refused(worse);
          assert.equal(worst.level, "restricted:latest");
          assert.ok(worst.checks.length >= 4, worst.checks.join(" | "));
          assert.ok(worst.checks.includes(RESTRICTED_HOSTPATH_ONLY.checks[0]));
        },
      );
    } finally {
      await testbed.stop();
    }
  },
);
