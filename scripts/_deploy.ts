/**
 * The decisions of `deno task deploy` / `deno task undeploy`, as pure
 * functions: option parsing and validation, the server-version verdict,
 * recognising a minikube context, dropping the CRD from a rendered
 * kustomization, and undeploy's restore of the pods' declared CPU limits
 * (which pods need it, the patch bodies, the summary). `scripts/deploy.ts`
 * runs kubectl around them.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { parseMillicores } from "../src/api/quantity.ts";

/** The PodAllocation CRD's name. */
export const CRD_NAME = "podallocations.allocation.mbcas.io";

/** The namespace MBCAS runs in. */
export const SYSTEM_NAMESPACE = "mbcas-system";

/** The controller Deployment and the agent DaemonSet, as `kubectl rollout status` names them. */
export const WORKLOADS: readonly string[] = [
  "deployment/mbcas-controller",
  "daemonset/mbcas-agent",
];

/** The default overlay, relative to the repository root. */
export const DEFAULT_OVERLAY = "deploy/overlays/minikube";

/** The default rollout timeout, seconds. */
export const DEFAULT_TIMEOUT_SECONDS = 180;

/** The first Kubernetes minor (of 1.x) with in-place resize on by default and the pods/resize subresource. */
export const RESIZE_GA_MINOR = 33;

/** The first Kubernetes minor (of 1.x) with the InPlacePodVerticalScaling feature gate at all. */
export const RESIZE_ALPHA_MINOR = 27;

/** Usage text of the deploy script. */
export const USAGE = `usage: deno task deploy [-- OPTIONS]    (deno task undeploy [-- OPTIONS])

Deploys MBCAS (CRD, RBAC, controller Deployment, agent DaemonSet) with kubectl.

  --context NAME      kube context (default: the current context)
  --kubeconfig FILE   kubeconfig file (default: kubectl's: $KUBECONFIG or ~/.kube/config)
  --overlay DIR       kustomize overlay to apply (default: ${DEFAULT_OVERLAY})
  --skip-images       do not build and load the images (scripts/images.sh)
  --demo              also apply deploy/demo (namespace mbcas-demo and workloads)
  --no-wait           do not wait for the controller and agent rollouts
  --timeout SECONDS   rollout and deletion timeout (default: ${DEFAULT_TIMEOUT_SECONDS})
  --force             deploy to a Kubernetes 1.27-1.32 server anyway (it will not resize)
  --undeploy          remove everything instead: the agent, then every PodAllocation once its
                      pod's declared CPU limits are restored, the demo, the overlay, the CRD last
  -h, --help          this text`;

/** Parsed and validated options of the deploy script. */
export interface DeployOptions {
  /** `--context`, or undefined for the current context. */
  context?: string;
  /** `--kubeconfig`, or undefined for kubectl's default. */
  kubeconfig?: string;
  /** The overlay directory (as given, or {@link DEFAULT_OVERLAY}). */
  overlay: string;
  /** `--skip-images`. */
  skipImages: boolean;
  /** `--demo`. */
  demo: boolean;
  /** False with `--no-wait`. */
  wait: boolean;
  /** `--timeout`, seconds. */
  timeoutSeconds: number;
  /** `--force`. */
  force: boolean;
  /** `--undeploy`. */
  undeploy: boolean;
  /** `--help`. */
  help: boolean;
}

/** A bad command line; the message names the option and the value. Exit status 2. */
export class UsageError extends Error {
  /** Creates the error with the complete message. */
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** File-system questions {@link parseDeployArgs} asks to validate paths (injected so it stays pure). */
export interface PathChecks {
  /** True when `path` is an existing directory. */
  isDirectory(path: string): boolean;
  /** True when `path` is an existing regular file. */
  isFile(path: string): boolean;
}

const KUSTOMIZATION_FILES = ["kustomization.yaml", "kustomization.yml", "Kustomization"];

/**
 * Parses the deploy script's arguments. A leading `--` (as `deno task deploy
 * -- ...` passes it) is ignored. Throws {@link UsageError} naming the option
 * and value for unknown options, missing or bad values, and paths that do not
 * exist (when `paths` is given).
 */
export function parseDeployArgs(args: string[], paths?: PathChecks): DeployOptions {
  const argv = args[0] === "--" ? args.slice(1) : args;
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        context: { type: "string" },
        kubeconfig: { type: "string" },
        overlay: { type: "string" },
        "skip-images": { type: "boolean" },
        demo: { type: "boolean" },
        "no-wait": { type: "boolean" },
        timeout: { type: "string" },
        force: { type: "boolean" },
        undeploy: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (error) {
    const first = (error instanceof Error ? error.message : String(error)).split("\n")[0];
    throw new UsageError(`bad option: ${first} (see --help)`);
  }

  const nonEmpty = (option: string, value: string | undefined): string | undefined => {
    if (value === undefined) return undefined;
    if (value.trim() === "") throw new UsageError(`--${option} must not be empty, got "${value}"`);
    return value;
  };
  const context = nonEmpty("context", values.context);
  const kubeconfig = nonEmpty("kubeconfig", values.kubeconfig);
  const overlay = nonEmpty("overlay", values.overlay) ?? DEFAULT_OVERLAY;
  const timeoutSeconds = values.timeout === undefined
    ? DEFAULT_TIMEOUT_SECONDS
    : parseTimeout(values.timeout);

  if (paths !== undefined) {
    if (kubeconfig !== undefined && !paths.isFile(kubeconfig)) {
      throw new UsageError(`--kubeconfig "${kubeconfig}": no such file`);
    }
    if (values.overlay !== undefined) {
      if (!paths.isDirectory(overlay)) {
        throw new UsageError(`--overlay "${overlay}": no such directory`);
      }
      if (!KUSTOMIZATION_FILES.some((f) => paths.isFile(`${overlay}/${f}`))) {
        throw new UsageError(
          `--overlay "${overlay}": not a kustomization (no kustomization.yaml in it)`,
        );
      }
    }
  }

  return {
    context,
    kubeconfig,
    overlay,
    skipImages: values["skip-images"] ?? false,
    demo: values.demo ?? false,
    wait: !(values["no-wait"] ?? false),
    timeoutSeconds,
    force: values.force ?? false,
    undeploy: values.undeploy ?? false,
    help: values.help ?? false,
  };
}

function parseTimeout(value: string): number {
  const seconds = /^\d+$/.test(value.trim()) ? Number(value.trim()) : NaN;
  if (!Number.isSafeInteger(seconds) || seconds < 1 || seconds > 86_400) {
    throw new UsageError(
      `--timeout must be a whole number of seconds from 1 to 86400, got "${value}"`,
    );
  }
  return seconds;
}

/** The API server's version, from `kubectl version -o json`. */
export interface ServerVersion {
  /** Major version (1). */
  major: number;
  /** Minor version (e.g. 35). */
  minor: number;
  /** Patch version, when the git version has one. */
  patch?: number;
  /** The version as the server reports it, e.g. `v1.33.1-gke.100`. */
  gitVersion: string;
}

/**
 * Reads `serverVersion` from the output of `kubectl version -o json`.
 * Accepts vendor forms (`v1.33.1-gke.100`, `v1.34.0+k3s1`, `v1.30.2-eks-1552ad0`)
 * and falls back to the `major`/`minor` fields (`"33+"`) when `gitVersion` is
 * odd. Returns null when there is no server version (the server was not
 * reached) or it cannot be read.
 */
export function parseServerVersion(kubectlVersionJson: string): ServerVersion | null {
  let parsed: unknown;
  try {
    parsed = JSON.parse(kubectlVersionJson);
  } catch {
    return null;
  }
  if (typeof parsed !== "object" || parsed === null) return null;
  const server = (parsed as Record<string, unknown>).serverVersion;
  if (typeof server !== "object" || server === null) return null;
  const fields = server as Record<string, unknown>;
  const gitVersion = typeof fields.gitVersion === "string" ? fields.gitVersion : "";

  const git = /^v?(\d+)\.(\d+)(?:\.(\d+))?/.exec(gitVersion.trim());
  if (git !== null) {
    return {
      major: Number(git[1]),
      minor: Number(git[2]),
      ...(git[3] !== undefined ? { patch: Number(git[3]) } : {}),
      gitVersion,
    };
  }
  const number = (value: unknown): number | null => {
    const m = typeof value === "string" ? /^(\d+)\+?$/.exec(value.trim()) : null;
    return m === null ? null : Number(m[1]);
  };
  const major = number(fields.major);
  const minor = number(fields.minor);
  if (major === null || minor === null) return null;
  return { major, minor, gitVersion: gitVersion || `v${major}.${minor}` };
}

/** What to do about a server version. */
export interface VersionVerdict {
  /**
   * `ok`: go on; `forced`: too old for resizing but `--force` was given, go on
   * with a warning; `stop`: too old for resizing, stop unless `--force`;
   * `refuse`: too old for anything, stop even with `--force`.
   */
  verdict: "ok" | "forced" | "stop" | "refuse";
  /** Lines to print (without the `deploy:` prefix). */
  lines: string[];
}

/**
 * Decides whether MBCAS can work on a server of this version. From 1.33
 * in-place resize is on by default and done through the `pods/resize`
 * subresource, which is the only way MBCAS resizes. 1.27-1.32 had the
 * feature only behind the alpha `InPlacePodVerticalScaling` gate and resized
 * by patching the pod spec: MBCAS cannot work there (stop, or warn with
 * `force`). Before 1.27 there was no in-place resize at all (refuse).
 */
export function checkServerVersion(version: ServerVersion, force: boolean): VersionVerdict {
  const v = version.gitVersion;
  if (version.major > 1 || (version.major === 1 && version.minor >= RESIZE_GA_MINOR)) {
    return {
      verdict: "ok",
      lines: [`server ${v}: in-place pod resize is on by default (pods/resize subresource)`],
    };
  }
  if (version.major === 1 && version.minor >= RESIZE_ALPHA_MINOR) {
    const explanation = [
      `server ${v} is older than 1.${RESIZE_GA_MINOR}: MBCAS will not resize pods there.`,
      `  On 1.${RESIZE_ALPHA_MINOR}-1.32 in-place pod resize is alpha: the InPlacePodVerticalScaling`,
      "  feature gate must be enabled on the kube-apiserver and on every kubelet, and even then",
      `  there is no pods/resize subresource before 1.${RESIZE_GA_MINOR}: resizes were patches to the`,
      "  pod spec, which MBCAS does not do (its controller may only patch pods/resize).",
      `  Upgrade the cluster to Kubernetes 1.${RESIZE_GA_MINOR} or later (e.g. minikube start`,
      "  --kubernetes-version=stable).",
    ];
    return force
      ? {
        verdict: "forced",
        lines: [
          ...explanation,
          "  --force given: deploying anyway; the controller's resizes will fail.",
        ],
      }
      : {
        verdict: "stop",
        lines: [...explanation, "  Stopping (pass --force to deploy anyway)."],
      };
  }
  return {
    verdict: "refuse",
    lines: [
      `server ${v} is too old: in-place pod resize does not exist before Kubernetes 1.${RESIZE_ALPHA_MINOR}`,
      `  and MBCAS needs the pods/resize subresource of 1.${RESIZE_GA_MINOR} or later.`,
      `  Upgrade the cluster to Kubernetes 1.${RESIZE_GA_MINOR} or later. (--force does not apply.)`,
    ],
  };
}

/**
 * True when the kube context is a minikube cluster: named `minikube`, or
 * carrying minikube's `context_info` extension (provider
 * `minikube.sigs.k8s.io`) in `kubectl config view --minify -o json`.
 */
export function isMinikubeContext(name: string, minifiedConfigJson?: string): boolean {
  if (name === "minikube") return true;
  if (minifiedConfigJson === undefined) return false;
  try {
    const config = JSON.parse(minifiedConfigJson);
    for (const entry of config?.contexts ?? []) {
      if (entry?.name !== name) continue;
      for (const ext of entry?.context?.extensions ?? []) {
        if (ext?.extension?.provider === "minikube.sigs.k8s.io") return true;
      }
    }
  } catch {
    // not JSON: not minikube
  }
  return false;
}

/** An object of a rendered kustomization: its YAML document, kind and name. */
export interface RenderedObject {
  /** `kind`. */
  kind: string;
  /** `metadata.name` (empty when not found). */
  name: string;
  /** The YAML document, without the `---` separator. */
  yaml: string;
}

/**
 * Splits `kubectl kustomize` output into its objects. It relies on the
 * output's shape: documents separated by `---` lines, `kind:` and
 * `metadata:` at column 0, `name:` indented by two spaces under `metadata:`.
 */
export function splitRendered(rendered: string): RenderedObject[] {
  const objects: RenderedObject[] = [];
  for (const doc of rendered.split(/^---[ \t]*$/m)) {
    if (doc.split("\n").every((l) => /^\s*(#.*)?$/.test(l))) continue;
    const kind = /^kind:[ \t]*["']?([^"'\s#]+)/m.exec(doc)?.[1] ?? "";
    let name = "";
    const lines = doc.split("\n");
    const meta = lines.findIndex((l) => /^metadata:\s*$/.test(l));
    if (meta >= 0) {
      for (const line of lines.slice(meta + 1)) {
        if (/^\S/.test(line)) break;
        const m = /^ {2}name:[ \t]*["']?([^"'\s#]+)/.exec(line);
        if (m !== null) {
          name = m[1];
          break;
        }
      }
    }
    objects.push({ kind, name, yaml: doc.replace(/^\n+/, "").replace(/\s+$/, "") + "\n" });
  }
  return objects;
}

/**
 * Removes the CustomResourceDefinitions from a rendered kustomization. Returns
 * the other objects in reverse order (namespaced objects before their
 * Namespace, as kustomize puts Namespaces first), as one YAML stream for
 * `kubectl delete -f -` (empty when nothing is left), and the CRDs' names.
 */
export function dropCustomResourceDefinitions(
  rendered: string,
): { yaml: string; kept: RenderedObject[]; crds: string[] } {
  const objects = splitRendered(rendered);
  const crds = objects.filter((o) => o.kind === "CustomResourceDefinition").map((o) => o.name);
  const kept = objects.filter((o) => o.kind !== "CustomResourceDefinition").reverse();
  return { yaml: kept.map((o) => o.yaml).join("---\n"), kept, crds };
}

/** Kinds of MBCAS's admission policies (deploy/policy). */
export const ADMISSION_POLICY_KINDS: readonly string[] = [
  "ValidatingAdmissionPolicy",
  "ValidatingAdmissionPolicyBinding",
];

/**
 * What deploy does about MBCAS's admission policies, from the resource names
 * `kubectl api-resources --api-group=admissionregistration.k8s.io -o name`
 * printed: apply them (the cluster serves ValidatingAdmissionPolicy), stop
 * (it does not), or, with --force, go on without them. `lines` say why.
 */
export function admissionPolicyVerdict(
  apiResources: string,
  force: boolean,
): { verdict: "apply" | "stop" | "skip"; lines: string[] } {
  const served = apiResources.split("\n").map((l) => l.trim()).some((l) =>
    l === "validatingadmissionpolicies.admissionregistration.k8s.io"
  );
  if (served) return { verdict: "apply", lines: [] };
  const why = "the cluster does not serve admissionregistration.k8s.io ValidatingAdmissionPolicy " +
    "(GA since Kubernetes 1.30; off where --runtime-config disables it), so MBCAS's guardrails " +
    "in deploy/policy (an agent writes only its own node's PodAllocations; the controller " +
    "resizes only CPU limits of opted-in pods) cannot be installed";
  return force
    ? {
      verdict: "skip",
      lines: [
        `${why}.`,
        "--force: deploying without them; RBAC and the controller's own checks remain",
      ],
    }
    : {
      verdict: "stop",
      lines: [
        `${why}.`,
        "Upgrade the cluster or enable the API, or pass --force to deploy without these guardrails.",
      ],
    };
}

/** The rendered objects without MBCAS's admission policies, as one YAML stream. */
export function dropAdmissionPolicies(rendered: string): string {
  return splitRendered(rendered).filter((o) => !ADMISSION_POLICY_KINDS.includes(o.kind)).map((o) =>
    o.yaml
  ).join("---\n");
}

/** The number of objects `kubectl delete` reports as deleted in its output. */
export function countDeleted(kubectlDeleteOutput: string): number {
  return kubectlDeleteOutput.split("\n").filter((l) => /"\S+" deleted\b/.test(l)).length;
}

/**
 * How to watch MBCAS work once deployed (lines without the `deploy:` prefix).
 * `kubectl` is the kubectl command line to show (with `--kubeconfig` and
 * `--context` when they matter); `kubeconfig` is passed on to `deno task explain`.
 */
export function watchHints(kubectl: string, kubeconfig?: string): string[] {
  const ns = SYSTEM_NAMESPACE;
  const explainConfig = kubeconfig === undefined ? "" : ` --kubeconfig ${kubeconfig}`;
  return [
    "deployed. To watch it work:",
    "  # the PodAllocations the agents write, as they change",
    `  ${kubectl} get pa -A -w`,
    "  # the agents' and the controller's logs",
    `  ${kubectl} -n ${ns} logs -l app.kubernetes.io/component=agent -f`,
    `  ${kubectl} -n ${ns} logs -l app.kubernetes.io/component=controller -f`,
    "  # the controller's metrics (the agent's: daemonset/mbcas-agent 8081:8081)",
    `  ${kubectl} -n ${ns} port-forward deployment/mbcas-controller 8080:8080 &`,
    "  curl -s localhost:8080/metrics",
    `  # a node's CPU market as a table (nodes: ${kubectl} get nodes)`,
    `  deno task explain -- --node <node>${explainConfig}`,
    "Remove it all with: deno task undeploy",
  ];
}

// ---------------------------------------------------------------------------
// Restoring the declared CPU limits on undeploy

/**
 * The finalizer the controller puts on a PodAllocation the first time it
 * changes the pod's CPU limits (recording them in `status.baseline`); it
 * restores the pod and removes the finalizer when the PodAllocation is deleted.
 */
export const RESTORE_FINALIZER = "allocation.mbcas.io/restore";

/** A container's CPU limit: a Kubernetes quantity, or null for none. */
export interface ContainerLimit {
  /** The container's name. */
  name: string;
  /** Its CPU limit, as written (`500m`, `0.5`), or null when it has none. */
  cpuLimit: string | null;
}

/** What undeploy needs of a PodAllocation. */
export interface AllocationRecord {
  /** Namespace (the pod's). */
  namespace: string;
  /** Name (the pod's). */
  name: string;
  /** `spec.podUID`: the pod this allocation was for (empty when missing). */
  podUID: string;
  /** `metadata.finalizers`. */
  finalizers: string[];
  /** `status.baseline.containers`: the declared CPU limits, or null when none were recorded. */
  baseline: ContainerLimit[] | null;
}

/** What undeploy needs of a pod. */
export interface PodRecord {
  /** Namespace. */
  namespace: string;
  /** Name. */
  name: string;
  /** `metadata.uid`. */
  uid: string;
  /** The CPU limit of each container in `spec.containers` (what a resize changes). */
  containers: ContainerLimit[];
}

/** `namespace/name`, how undeploy names pods and PodAllocations. */
export function podKey(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

type Loose = Record<string, unknown>;
const record = (value: unknown): Loose =>
  typeof value === "object" && value !== null && !Array.isArray(value) ? value as Loose : {};
const items = (list: unknown): Loose[] => {
  const all = record(list).items;
  return Array.isArray(all) ? all.map(record) : [];
};
const text = (value: unknown): string => typeof value === "string" ? value : "";
const limit = (value: unknown): string | null =>
  typeof value === "string" && value.trim() !== "" ? value.trim() : null;

/**
 * Reads the PodAllocations of `kubectl get podallocations -A -o json` (a
 * parsed List). Items without a name or namespace are skipped; a
 * `status.baseline` without a containers array counts as no baseline.
 */
export function parseAllocations(list: unknown): AllocationRecord[] {
  const out: AllocationRecord[] = [];
  for (const item of items(list)) {
    const metadata = record(item.metadata);
    const namespace = text(metadata.namespace);
    const name = text(metadata.name);
    if (namespace === "" || name === "") continue;
    const finalizers = Array.isArray(metadata.finalizers)
      ? metadata.finalizers.filter((f): f is string => typeof f === "string")
      : [];
    const containers = record(record(record(item.status).baseline)).containers;
    const baseline = Array.isArray(containers)
      ? containers.map(record).filter((c) => text(c.name) !== "").map((c) => ({
        name: text(c.name),
        cpuLimit: limit(c.cpuLimit),
      }))
      : null;
    out.push({
      namespace,
      name,
      podUID: text(record(item.spec).podUID),
      finalizers,
      baseline,
    });
  }
  return out;
}

/** Reads the pods of `kubectl get pods -o json` (a parsed List): their UIDs and spec CPU limits. */
export function parsePods(list: unknown): PodRecord[] {
  const out: PodRecord[] = [];
  for (const item of items(list)) {
    const metadata = record(item.metadata);
    const containers = record(item.spec).containers;
    out.push({
      namespace: text(metadata.namespace),
      name: text(metadata.name),
      uid: text(metadata.uid),
      containers: (Array.isArray(containers) ? containers.map(record) : []).map((c) => ({
        name: text(c.name),
        cpuLimit: limit(record(record(c.resources).limits).cpu),
      })),
    });
  }
  return out;
}

/**
 * True when two CPU limits are the same: both none, or the same amount
 * (`500m` = `0.5`, compared in millicores as the API server rounds them;
 * as text when either is not a quantity).
 */
export function sameCpuLimit(a: string | null, b: string | null): boolean {
  if (a === null || b === null) return a === b;
  const ma = parseMillicores(a);
  const mb = parseMillicores(b);
  return ma === null || mb === null ? a === b : ma === mb;
}

/** A container whose CPU limit is not its baseline. */
export interface LimitChange {
  /** The container. */
  name: string;
  /** Its CPU limit now. */
  current: string | null;
  /** Its declared CPU limit, to restore. */
  baseline: string | null;
}

/**
 * Whether a PodAllocation's pod needs its declared CPU limits back:
 * `no-baseline` (nothing was recorded: MBCAS never changed it), `pod-gone`
 * (no such pod, or a pod of that name with another UID), `at-baseline`, or
 * `differs` with the containers to change. Baseline containers the pod does
 * not have are ignored.
 */
export type RestoreNeed =
  | { state: "no-baseline" }
  | { state: "pod-gone" }
  | { state: "at-baseline" }
  | { state: "differs"; changes: LimitChange[] };

/** Decides {@link RestoreNeed} for a PodAllocation and its pod as read now (undefined: no such pod). */
export function restoreNeed(
  allocation: AllocationRecord,
  pod: PodRecord | undefined,
): RestoreNeed {
  if (allocation.baseline === null) return { state: "no-baseline" };
  if (pod === undefined || allocation.podUID === "" || pod.uid !== allocation.podUID) {
    return { state: "pod-gone" };
  }
  const changes: LimitChange[] = [];
  for (const declared of allocation.baseline) {
    const container = pod.containers.find((c) => c.name === declared.name);
    if (container === undefined) continue;
    if (!sameCpuLimit(container.cpuLimit, declared.cpuLimit)) {
      changes.push({
        name: declared.name,
        current: container.cpuLimit,
        baseline: declared.cpuLimit,
      });
    }
  }
  return changes.length === 0 ? { state: "at-baseline" } : { state: "differs", changes };
}

/**
 * The strategic merge patch for `kubectl patch pod --subresource resize` that
 * sets the changed containers' CPU limits back (a null baseline removes the
 * limit). It carries the pod's UID, which the API server checks: a pod
 * recreated under the same name is not touched.
 */
export function resizePatch(podUID: string, changes: LimitChange[]): string {
  return JSON.stringify({
    metadata: { uid: podUID },
    spec: {
      containers: changes.map((c) => ({
        name: c.name,
        resources: { limits: { cpu: c.baseline } },
      })),
    },
  });
}

/**
 * The JSON patch removing {@link RESTORE_FINALIZER} from a PodAllocation (with
 * a test that it is still at that index, so a concurrent change fails instead
 * of removing another finalizer), or null when it does not carry it.
 */
export function releasePatch(finalizers: string[]): string | null {
  const index = finalizers.indexOf(RESTORE_FINALIZER);
  if (index < 0) return null;
  const path = `/metadata/finalizers/${index}`;
  return JSON.stringify([
    { op: "test", path, value: RESTORE_FINALIZER },
    { op: "remove", path },
  ]);
}

/** `app 800m -> 500m, sidecar none -> 100m`: the changes a restore makes. */
export function describeChanges(changes: LimitChange[]): string {
  return changes.map((c) => `${c.name} ${c.current ?? "none"} -> ${c.baseline ?? "none"}`)
    .join(", ");
}

/**
 * True when `kubectl get -o json` of the controller Deployment(s) (one object
 * or a List) shows a ready replica: then undeploy waits for the controller to
 * restore the pods and release their PodAllocations.
 */
export function controllerReady(deployments: unknown): boolean {
  const top = record(deployments);
  const all = Array.isArray(top.items) ? items(top) : [top];
  return all.some((d) => {
    const ready = record(d.status).readyReplicas;
    return typeof ready === "number" && ready > 0;
  });
}

/** Who restored which pods' declared CPU limits on undeploy, and which could not be restored. */
export interface RestoreReport {
  /** Pods (`namespace/name`) the controller restored once their PodAllocation was deleted. */
  byController: string[];
  /** Pods undeploy restored itself through `pods/resize`. */
  byUndeploy: string[];
  /** Pods whose restore failed, with the error (one line). */
  failed: { pod: string; error: string }[];
}

const pods = (n: number) => `${n} ${n === 1 ? "pod" : "pods"}`;

/**
 * The restore summary (lines without the `deploy:` prefix), e.g.
 * `restored the declared CPU limits of 1 pod: 0 by the controller, 1 by
 * undeploy; 0 could not be restored`, then one `  could not restore NS/NAME:
 * ERROR` line per failure.
 */
export function restoreSummary(report: RestoreReport): string[] {
  const restored = report.byController.length + report.byUndeploy.length;
  return [
    `restored the declared CPU limits of ${pods(restored)}: ` +
    `${report.byController.length} by the controller, ${report.byUndeploy.length} by undeploy; ` +
    `${report.failed.length} could not be restored`,
    ...report.failed.map((f) => `  could not restore ${f.pod}: ${f.error}`),
  ];
}

/**
 * Why undeploy exits 1 after removing everything (lines without the
 * `deploy:` prefix), or an empty list when every restore succeeded.
 */
export function restoreFailure(report: RestoreReport): string[] {
  const n = report.failed.length;
  if (n === 0) return [];
  return [
    `${pods(n)} could not be restored to ${n === 1 ? "its" : "their"} declared CPU limits ` +
    "(everything else was removed); set them by hand or recreate the pods:",
    ...report.failed.map((f) => `  ${f.pod}: ${f.error}`),
  ];
}

/** An error message on one line (kubectl's stderr can span several). */
export function oneLine(message: string): string {
  return message.trim().split("\n").map((l) => l.trim()).filter((l) => l !== "").join(" ");
}
