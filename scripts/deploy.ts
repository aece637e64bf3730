/**
 * `deno task deploy` / `deno task undeploy`: deploys MBCAS to a cluster with
 * kubectl (version check, images, CRD, overlay, rollout, optional demo), or
 * removes it again: the agent first, then the PodAllocations once every pod
 * MBCAS changed has its declared CPU limits back (by the controller, or by
 * undeploy itself through `pods/resize`), the demo, the overlay, and the CRD
 * last. Both are idempotent. The decisions live in `scripts/_deploy.ts`; this
 * file runs the commands.
 *
 * Exit status: 0 done, 1 a step failed (kubectl's error is printed) or a
 * pod's CPU limits could not be restored (named, after everything else is
 * removed), 2 bad options.
 *
 * @module
 */
import { isAbsolute, join, relative, resolve } from "node:path";
import {
  admissionPolicyVerdict,
  type AllocationRecord,
  checkServerVersion,
  controllerReady,
  countDeleted,
  CRD_NAME,
  type DeployOptions,
  describeChanges,
  dropAdmissionPolicies,
  dropCustomResourceDefinitions,
  isMinikubeContext,
  oneLine,
  parseAllocations,
  parseDeployArgs,
  parsePods,
  parseServerVersion,
  podKey,
  type PodRecord,
  releasePatch,
  resizePatch,
  RESTORE_FINALIZER,
  restoreFailure,
  restoreNeed,
  type RestoreReport,
  restoreSummary,
  SYSTEM_NAMESPACE,
  USAGE,
  UsageError,
  watchHints,
  WORKLOADS,
} from "./_deploy.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const CRD_DIR = join(ROOT, "deploy/crd");
const DEMO_DIR = join(ROOT, "deploy/demo");
const IMAGES_SCRIPT = join(ROOT, "scripts/images.sh");

/** A step that failed: its name and what to tell the user. */
class StepFailed extends Error {
  constructor(readonly step: string, readonly detail: string) {
    super(`${step}: ${detail}`);
  }
}

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

/** `1 pod`, `2 pods`. */
function plural(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? "" : "s"}`;
}

function log(line: string): void {
  console.log(`deploy: ${line}`);
}

/** A path for messages: relative to the repository when inside it. */
function shown(path: string): string {
  const rel = relative(ROOT, path);
  return rel.startsWith("..") || isAbsolute(rel) ? path : rel;
}

/** Reads a stream to its end, calling `onLine` for each complete line. */
async function collect(
  stream: ReadableStream<Uint8Array>,
  onLine: (line: string) => void,
): Promise<string> {
  let text = "";
  let pending = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    text += chunk;
    pending += chunk;
    const lines = pending.split("\n");
    pending = lines.pop()!;
    for (const line of lines) onLine(line);
  }
  if (pending !== "") onLine(pending);
  return text;
}

/**
 * Runs a command from the repository root. `echo` prints its stdout lines as
 * they come, indented under the progress lines; `inherit` lets it write to the
 * terminal directly.
 */
async function run(
  command: string,
  args: string[],
  options: { stdin?: string; echo?: boolean; inherit?: boolean; env?: Record<string, string> } = {},
): Promise<Result> {
  const child = new Deno.Command(command, {
    args,
    cwd: ROOT,
    env: options.env,
    stdin: options.stdin === undefined ? "null" : "piped",
    stdout: options.inherit ? "inherit" : "piped",
    stderr: options.inherit ? "inherit" : "piped",
  }).spawn();
  if (options.stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(options.stdin));
    await writer.close();
  }
  if (options.inherit) return { code: (await child.status).code, stdout: "", stderr: "" };
  const echo = options.echo ? (line: string) => log(`  ${line}`) : () => {};
  const [status, stdout, stderr] = await Promise.all([
    child.status,
    collect(child.stdout, echo),
    collect(child.stderr, () => {}),
  ]);
  return { code: status.code, stdout, stderr };
}

/** kubectl with the chosen kubeconfig and context. */
class Kubectl {
  constructor(readonly global: string[]) {}

  /** The command line to show users (hints). */
  display(): string {
    return ["kubectl", ...this.global].join(" ");
  }

  /** Runs kubectl; a non-zero exit throws {@link StepFailed} for `step` with kubectl's stderr. */
  async step(
    step: string,
    args: string[],
    options: { stdin?: string; echo?: boolean } = {},
  ): Promise<Result> {
    const result = await this.raw(step, args, options);
    if (result.code !== 0) {
      throw new StepFailed(
        step,
        `kubectl ${args.join(" ")} exited ${result.code}:\n${
          result.stderr.trim() || result.stdout.trim()
        }`,
      );
    }
    if (options.echo) {
      for (const line of result.stderr.split("\n")) if (line.trim()) log(`  ${line}`);
    }
    return result;
  }

  /** Runs kubectl and returns its result whatever the exit status. */
  async raw(
    step: string,
    args: string[],
    options: { stdin?: string; echo?: boolean } = {},
  ): Promise<Result> {
    try {
      return await run("kubectl", [...this.global, ...args], options);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) {
        throw new StepFailed(
          step,
          "kubectl not found on PATH: install kubectl 1.33 or later " +
            "(https://kubernetes.io/docs/tasks/tools/) and try again",
        );
      }
      throw error;
    }
  }
}

function exists(path: string, what: "file" | "directory"): boolean {
  try {
    const info = Deno.statSync(path);
    return what === "file" ? info.isFile : info.isDirectory;
  } catch {
    return false;
  }
}

/** Checks kubectl, resolves the context and reaches the API server; returns the server's version JSON. */
async function connect(
  options: DeployOptions,
): Promise<{ kubectl: Kubectl; context: string; minikube: boolean; versionJson: string }> {
  log("checking kubectl");
  const base = options.kubeconfig === undefined
    ? []
    : ["--kubeconfig", resolve(Deno.cwd(), options.kubeconfig)];
  const client = await new Kubectl(base).step("check kubectl", [
    "version",
    "--client",
    "-o",
    "json",
  ]);
  let clientVersion = "";
  try {
    clientVersion = JSON.parse(client.stdout)?.clientVersion?.gitVersion ?? "";
  } catch {
    // old kubectl without -o json: the version does not matter much
  }
  log(`kubectl ${clientVersion || "(version unknown)"}`);

  let context = options.context;
  if (context === undefined) {
    const current = await new Kubectl(base).raw("context", ["config", "current-context"]);
    context = current.stdout.trim();
    if (current.code !== 0 || context === "") {
      throw new StepFailed(
        "context",
        `no current kube context (${
          current.stderr.trim() || "empty"
        }): pass --context NAME (kubectl config get-contexts lists them) or --kubeconfig FILE`,
      );
    }
  }
  const kubectl = new Kubectl([...base, "--context", context]);
  const view = await kubectl.raw("context", ["config", "view", "--minify", "-o", "json"]);
  if (view.code !== 0) {
    if (options.context !== undefined) {
      throw new UsageError(
        `--context "${context}": no such context in the kubeconfig (${view.stderr.trim()})`,
      );
    }
    throw new StepFailed("context", `kubectl config view failed:\n${view.stderr.trim()}`);
  }
  const minikube = isMinikubeContext(context, view.stdout);
  let server = "";
  try {
    server = JSON.parse(view.stdout)?.clusters?.[0]?.cluster?.server ?? "";
  } catch {
    // only for the message
  }
  log(`target context: ${context}${minikube ? " (minikube)" : ""}${server ? ` at ${server}` : ""}`);
  if (options.context === undefined && !minikube) {
    log(
      `note: the current context "${context}" is not minikube; using it anyway ` +
        "(pass --context NAME to choose another)",
    );
  }

  log("checking the server version");
  const version = await kubectl.raw("server version", [
    "version",
    "-o",
    "json",
    "--request-timeout=15s",
  ]);
  if (parseServerVersion(version.stdout) === null) {
    throw new StepFailed(
      "server version",
      `cannot reach the API server of context "${context}"${server ? ` (${server})` : ""}:\n${
        version.stderr.trim() || version.stdout.trim()
      }\nIs the cluster running (minikube status / minikube start)?`,
    );
  }
  return { kubectl, context, minikube, versionJson: version.stdout };
}

async function deploy(options: DeployOptions): Promise<number> {
  const { kubectl, context, minikube, versionJson } = await connect(options);
  const timeout = `--timeout=${options.timeoutSeconds}s`;

  const verdict = checkServerVersion(parseServerVersion(versionJson)!, options.force);
  if (verdict.verdict === "stop" || verdict.verdict === "refuse") {
    for (const line of verdict.lines) console.error(`deploy: ${line}`);
    return 1;
  }
  for (const line of verdict.lines) log(line);

  if (options.skipImages) {
    log("images: skipped (--skip-images)");
  } else {
    const args = [IMAGES_SCRIPT];
    const env: Record<string, string> = {};
    if (minikube) {
      env.MBCAS_MINIKUBE_PROFILE = context;
      log(
        `building the images and loading them into minikube profile "${context}" (scripts/images.sh)`,
      );
    } else {
      args.push("--no-load");
      log(
        `building the images only (scripts/images.sh --no-load): "${context}" is not minikube, ` +
          "so its nodes cannot see them until you push them to a registry and set the " +
          "overlay's images (kustomize edit set image mbcas-controller:dev=REGISTRY/...)",
      );
    }
    let status: Result;
    try {
      status = await run("bash", args, { inherit: true, env });
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) {
        throw new StepFailed("images", "bash not found on PATH (pass --skip-images to skip)");
      }
      throw error;
    }
    if (status.code !== 0) {
      throw new StepFailed(
        "images",
        `scripts/images.sh exited ${status.code} (see its output above); ` +
          "fix it, or pass --skip-images if the images are already there",
      );
    }
  }

  const apply = ["apply", "--server-side", "--force-conflicts", "--field-manager=mbcas-deploy"];
  log(`applying the CRD (${shown(CRD_DIR)})`);
  await kubectl.step("apply the CRD", [...apply, "-k", CRD_DIR], { echo: true });
  log(`waiting for crd/${CRD_NAME} to be Established`);
  // A CRD created a moment ago may have no status yet, and `kubectl wait`
  // then fails at once ("accessor error: <nil>") instead of waiting: retry that.
  for (let attempt = 1;; attempt++) {
    const wait = ["wait", "--for=condition=Established", `crd/${CRD_NAME}`, timeout];
    const result = await kubectl.raw("wait for the CRD", wait, { echo: true });
    if (result.code === 0) break;
    if (attempt >= 10 || !/accessor error/.test(result.stderr)) {
      await kubectl.step("wait for the CRD", wait, { echo: true });
      break;
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
  }

  log("checking that the cluster serves ValidatingAdmissionPolicy (MBCAS's guardrails)");
  const admission = await kubectl.step("list the admission APIs", [
    "api-resources",
    "--api-group=admissionregistration.k8s.io",
    "-o",
    "name",
  ]);
  const policies = admissionPolicyVerdict(admission.stdout, options.force);
  if (policies.verdict === "stop") {
    for (const line of policies.lines) console.error(`deploy: ${line}`);
    return 1;
  }
  for (const line of policies.lines) log(line);

  const overlay = resolve(Deno.cwd(), options.overlay);
  log(`applying the overlay ${shown(overlay)}`);
  if (policies.verdict === "apply") {
    await kubectl.step("apply the overlay", [...apply, "-k", overlay], { echo: true });
  } else {
    const rendered = await kubectl.step("render the overlay", ["kustomize", overlay]);
    await kubectl.step("apply the overlay", [...apply, "-f", "-"], {
      stdin: dropAdmissionPolicies(rendered.stdout),
      echo: true,
    });
  }

  if (!options.wait) {
    log("not waiting for the rollouts (--no-wait)");
  } else {
    for (const workload of WORKLOADS) {
      log(`waiting for ${workload} to roll out (up to ${options.timeoutSeconds} s)`);
      const step = `rollout of ${workload}`;
      const result = await kubectl.raw(
        step,
        ["-n", SYSTEM_NAMESPACE, "rollout", "status", workload, timeout],
        { echo: true },
      );
      if (result.code !== 0) {
        const timedOut = /timed out|deadline/i.test(result.stderr);
        const component = workload.startsWith("deployment/") ? "controller" : "agent";
        throw new StepFailed(
          step,
          (timedOut
            ? `${workload} was not ready within ${options.timeoutSeconds} s (--timeout).`
            : `kubectl rollout status exited ${result.code}.`) +
            `\n${result.stderr.trim()}\nLook at its pods: ${kubectl.display()} -n ${SYSTEM_NAMESPACE} ` +
            `get pods -l app.kubernetes.io/component=${component} -o wide; then describe them. ` +
            "ErrImageNeverPull: the images are not on the node (deno task images); " +
            "Pending: no node fits, or the cluster has no scheduler.",
        );
      }
    }
  }

  if (options.demo) {
    if (!exists(DEMO_DIR, "directory")) {
      throw new StepFailed("apply the demo", `${shown(DEMO_DIR)} does not exist`);
    }
    log(`applying the demo (${shown(DEMO_DIR)})`);
    await kubectl.step("apply the demo", [...apply, "-k", DEMO_DIR], { echo: true });
  }

  const kubeconfig = options.kubeconfig === undefined
    ? undefined
    : resolve(Deno.cwd(), options.kubeconfig);
  for (const line of watchHints(kubectl.display(), kubeconfig)) log(line);
  return 0;
}

/** Parses kubectl's `-o json` output; anything else fails `step`. */
function parseJson(step: string, stdout: string): unknown {
  try {
    return JSON.parse(stdout);
  } catch {
    throw new StepFailed(
      step,
      `kubectl printed something other than JSON:\n${stdout.slice(0, 500)}`,
    );
  }
}

/** Every PodAllocation, all namespaces. */
async function listAllocations(kubectl: Kubectl): Promise<AllocationRecord[]> {
  const step = "list the PodAllocations";
  const result = await kubectl.step(step, ["get", CRD_NAME, "--all-namespaces", "-o", "json"]);
  return parseAllocations(parseJson(step, result.stdout));
}

/** The pods of these namespaces, by `namespace/name`. */
async function readPods(
  kubectl: Kubectl,
  namespaces: Iterable<string>,
): Promise<Map<string, PodRecord>> {
  const found = new Map<string, PodRecord>();
  for (const namespace of [...new Set(namespaces)].sort()) {
    const step = `read the pods of namespace ${namespace}`;
    const result = await kubectl.step(step, ["get", "pods", "-n", namespace, "-o", "json"]);
    for (const pod of parsePods(parseJson(step, result.stdout))) {
      found.set(podKey(pod.namespace || namespace, pod.name), pod);
    }
  }
  return found;
}

/** True when a controller Deployment of the overlay has a ready replica. */
async function controllerRunning(kubectl: Kubectl, deployments: string): Promise<boolean> {
  if (deployments === "") return false;
  const result = await kubectl.raw("look for the controller", [
    "get",
    "--ignore-not-found",
    "-o",
    "json",
    "-f",
    "-",
  ], { stdin: deployments });
  if (result.code !== 0 || result.stdout.trim() === "") return false;
  try {
    return controllerReady(JSON.parse(result.stdout));
  } catch {
    return false;
  }
}

/**
 * Removes {@link RESTORE_FINALIZER} from a PodAllocation left after the
 * wait, so that deleting the CRD cannot hang on it. Retries once with the
 * finalizers read again when the object changed in between.
 */
async function release(kubectl: Kubectl, allocation: AllocationRecord): Promise<boolean> {
  const step = `release podallocation ${podKey(allocation.namespace, allocation.name)}`;
  const patch = (body: string) =>
    kubectl.raw(step, [
      "patch",
      CRD_NAME,
      allocation.name,
      "-n",
      allocation.namespace,
      "--type",
      "json",
      "-p",
      body,
    ]);
  const first = releasePatch(allocation.finalizers);
  if (first === null) return false;
  const result = await patch(first);
  if (result.code === 0) return true;
  if (/\(NotFound\)/.test(result.stderr)) return false;
  const again = await kubectl.step(step, [
    "get",
    CRD_NAME,
    allocation.name,
    "-n",
    allocation.namespace,
    "--ignore-not-found",
    "-o",
    "json",
  ]);
  if (again.stdout.trim() === "") return false;
  const [fresh] = parseAllocations({ items: [parseJson(step, again.stdout)] });
  const second = fresh === undefined ? null : releasePatch(fresh.finalizers);
  if (second === null) return false;
  const retried = await patch(second);
  if (retried.code !== 0 && !/\(NotFound\)/.test(retried.stderr)) {
    throw new StepFailed(
      step,
      `kubectl patch exited ${retried.code}:\n${retried.stderr.trim()}`,
    );
  }
  return retried.code === 0;
}

/**
 * Steps 2-4 of undeploy (the agent is gone): notes which pods MBCAS changed
 * (their PodAllocation has a `status.baseline` and the pod, same UID, other
 * CPU limits), deletes every PodAllocation, waits for a running controller to
 * restore the pods and release them, then restores what is still changed
 * itself through `pods/resize` and removes the finalizers left. Returns null
 * when there is no PodAllocation CRD.
 */
async function restorePods(
  kubectl: Kubectl,
  timeoutSeconds: number,
  controllerDeployments: string,
): Promise<RestoreReport | null> {
  const crd = await kubectl.step("look for the CRD", [
    "get",
    "crd",
    CRD_NAME,
    "--ignore-not-found",
    "-o",
    "name",
  ]);
  if (crd.stdout.trim() === "") {
    log(`no crd/${CRD_NAME}: no PodAllocations, no CPU limits to restore`);
    return null;
  }
  const report: RestoreReport = { byController: [], byUndeploy: [], failed: [] };
  const allocations = await listAllocations(kubectl);
  if (allocations.length === 0) {
    log("no PodAllocations: no CPU limits to restore");
    return report;
  }
  const recorded = allocations.filter((a) => a.baseline !== null);
  const before = await readPods(kubectl, recorded.map((a) => a.namespace));
  const changed = new Set(
    recorded.map((a) => podKey(a.namespace, a.name)).filter((key, i) =>
      restoreNeed(recorded[i], before.get(key)).state === "differs"
    ),
  );
  log(
    `${plural(allocations.length, "PodAllocation")}, ${recorded.length} with their pod's ` +
      `declared CPU limits recorded (status.baseline); ${plural(changed.size, "pod")} of ` +
      "those with other CPU limits now",
  );

  log(
    "deleting every PodAllocation (the controller restores the pods it changed, " +
      "then releases their PodAllocations)",
  );
  await kubectl.step(
    "delete the PodAllocations",
    ["delete", CRD_NAME, "--all", "--all-namespaces", "--wait=false"],
    { echo: true },
  );
  if (await controllerRunning(kubectl, controllerDeployments)) {
    log(`waiting up to ${timeoutSeconds} s for the controller to restore and release them`);
    const waited = await kubectl.raw("wait for the PodAllocations", [
      "wait",
      "--for=delete",
      CRD_NAME,
      "--all",
      "--all-namespaces",
      `--timeout=${timeoutSeconds}s`,
    ]);
    if (waited.code !== 0) {
      log(`some are still there after ${timeoutSeconds} s: undeploy restores those pods itself`);
    }
  } else if (recorded.length > 0) {
    log("the controller is not running: undeploy restores the pods itself");
  }

  const left = await listAllocations(kubectl);
  const after = await readPods(kubectl, recorded.map((a) => a.namespace));
  for (const allocation of recorded) {
    const key = podKey(allocation.namespace, allocation.name);
    const need = restoreNeed(allocation, after.get(key));
    if (need.state === "at-baseline" && changed.has(key)) {
      log(`${key}: restored by the controller`);
      report.byController.push(key);
    }
    if (need.state !== "differs") continue;
    log(`restoring ${key}: ${describeChanges(need.changes)}`);
    const result = await kubectl.raw(`restore pod ${key}`, [
      "patch",
      "pod",
      allocation.name,
      "-n",
      allocation.namespace,
      "--subresource",
      "resize",
      "--type",
      "strategic",
      "-p",
      resizePatch(allocation.podUID, need.changes),
    ]);
    if (result.code === 0) {
      report.byUndeploy.push(key);
      continue;
    }
    const now = await readPods(kubectl, [allocation.namespace]);
    if (restoreNeed(allocation, now.get(key)).state === "pod-gone") {
      log(`${key}: the pod is gone (or was recreated): nothing to restore`);
      continue;
    }
    const error = oneLine(result.stderr || result.stdout || `kubectl exited ${result.code}`);
    log(`could not restore ${key}: ${error}`);
    report.failed.push({ pod: key, error });
  }

  let released = 0;
  for (const allocation of left) if (await release(kubectl, allocation)) released++;
  if (released > 0) {
    log(
      `released ${plural(released, "PodAllocation")} (removed the ${RESTORE_FINALIZER} finalizer)`,
    );
  }
  return report;
}

/**
 * Removes MBCAS: the agent first (it would write PodAllocations again), then
 * the PodAllocations once their pods have the declared CPU limits back (see
 * {@link restorePods}), the demo, the overlay and the CRD last. A pod whose
 * restore failed makes it return 1 once everything else is removed.
 */
async function undeploy(options: DeployOptions): Promise<number> {
  const { kubectl, context, versionJson } = await connect(options);
  log(`server ${parseServerVersion(versionJson)!.gitVersion}`);
  const remove = ["delete", "--ignore-not-found", "--wait", `--timeout=${options.timeoutSeconds}s`];
  let deleted = 0;

  const overlay = resolve(Deno.cwd(), options.overlay);
  log(`rendering the overlay ${shown(overlay)}`);
  const rendered = await kubectl.step("render the overlay", ["kustomize", overlay]);
  const { yaml, kept, crds } = dropCustomResourceDefinitions(rendered.stdout);
  const ofKind = (kind: string) =>
    kept.filter((o) => o.kind === kind).map((o) => o.yaml).join("---\n");

  const agents = kept.filter((o) => o.kind === "DaemonSet");
  if (agents.length === 0) {
    log("the overlay has no agent DaemonSet");
  } else {
    log(
      `deleting the agent first (${
        agents.map((o) => `daemonset/${o.name}`).join(", ")
      }), so that nothing writes PodAllocations any more`,
    );
    const result = await kubectl.step(
      "delete the agent",
      [...remove, "--cascade=foreground", "-f", "-"],
      { stdin: ofKind("DaemonSet"), echo: true },
    );
    deleted += countDeleted(result.stdout);
  }

  const report = await restorePods(kubectl, options.timeoutSeconds, ofKind("Deployment"));

  if (exists(DEMO_DIR, "directory")) {
    log(`deleting the demo (${shown(DEMO_DIR)})`);
    const result = await kubectl.step("delete the demo", [...remove, "-k", DEMO_DIR], {
      echo: true,
    });
    deleted += countDeleted(result.stdout);
  } else {
    log(`no ${shown(DEMO_DIR)}: no demo to delete`);
  }

  if (kept.length === 0) {
    log("the overlay has nothing besides the CRD");
  } else {
    log(`deleting the overlay's ${kept.length} objects except the CRD`);
    const result = await kubectl.step("delete the overlay", [...remove, "-f", "-"], {
      stdin: yaml,
      echo: true,
    });
    deleted += countDeleted(result.stdout);
  }

  const names = [...new Set([CRD_NAME, ...crds.filter((n) => n !== "")])];
  log(`deleting the CRD last (${names.join(", ")}; this removes any PodAllocations left)`);
  const result = await kubectl.step(
    "delete the CRD",
    [...remove, ...names.map((n) => `crd/${n}`)],
    { echo: true },
  );
  deleted += countDeleted(result.stdout);

  if (report !== null) { for (const line of restoreSummary(report)) log(line); }
  log(
    deleted === 0
      ? `nothing was left to remove in context "${context}": MBCAS is not deployed there`
      : `undeployed from context "${context}": ${deleted} objects deleted`,
  );
  const failure = report === null ? [] : restoreFailure(report);
  for (const line of failure) console.error(`deploy: ${line}`);
  return failure.length === 0 ? 0 : 1;
}

async function main(args: string[]): Promise<number> {
  let options: DeployOptions;
  try {
    options = parseDeployArgs(args, {
      isDirectory: (p) => exists(resolve(Deno.cwd(), p), "directory"),
      isFile: (p) => exists(resolve(Deno.cwd(), p), "file"),
    });
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    console.error(`deploy: ${error.message}`);
    return 2;
  }
  if (options.help) {
    console.log(USAGE);
    return 0;
  }
  try {
    return options.undeploy ? await undeploy(options) : await deploy(options);
  } catch (error) {
    if (error instanceof UsageError) {
      console.error(`deploy: ${error.message}`);
      return 2;
    }
    if (error instanceof StepFailed) {
      console.error(`deploy: step "${error.step}" failed:`);
      for (const line of error.detail.split("\n")) console.error(`deploy:   ${line}`);
      return 1;
    }
    throw error;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
