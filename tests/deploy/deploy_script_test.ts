/**
 * `deno task deploy` / `deno task undeploy` (scripts/deploy.ts with the pure
 * decisions of scripts/_deploy.ts) and `deno task images` (scripts/images.sh):
 * option validation, the server-version verdict, dropping the CRD from a
 * rendered overlay, the images script without a container engine, and the
 * whole deploy / redeploy / undeploy cycle against the test bed.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  ADMISSION_POLICY_KINDS,
  admissionPolicyVerdict,
  checkServerVersion,
  countDeleted,
  CRD_NAME,
  DEFAULT_OVERLAY,
  DEFAULT_TIMEOUT_SECONDS,
  dropAdmissionPolicies,
  dropCustomResourceDefinitions,
  isMinikubeContext,
  parseDeployArgs,
  parseServerVersion,
  type ServerVersion,
  splitRendered,
  UsageError,
  watchHints,
} from "../../scripts/_deploy.ts";
import { freePort, startTestbed } from "../../src/testbed/mod.ts";
import { kubectlMissing, requireOrSkip, testbedMissing } from "../_support/requirements.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const DEPLOY_FLAGS = [
  "run",
  "--no-prompt",
  "--allow-run",
  "--allow-read",
  "--allow-env",
  "--allow-write",
  "scripts/deploy.ts",
];

interface Output {
  code: number;
  stdout: string;
  stderr: string;
}

async function output(command: string, args: string[], options: {
  env?: Record<string, string>;
  clearEnv?: boolean;
  cwd?: string;
  stdin?: string;
} = {}): Promise<Output> {
  const child = new Deno.Command(command, {
    args,
    cwd: options.cwd ?? ROOT,
    env: options.env,
    clearEnv: options.clearEnv,
    stdin: options.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (options.stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(options.stdin));
    await writer.close();
  }
  const result = await child.output();
  const decode = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: result.code, stdout: decode(result.stdout), stderr: decode(result.stderr) };
}

/** Runs scripts/deploy.ts as `deno task deploy` does, with extra arguments. */
function deployScript(args: string[], env: Record<string, string> = {}): Promise<Output> {
  return output(Deno.execPath(), [...DEPLOY_FLAGS, ...args], { env: { NO_COLOR: "1", ...env } });
}

function which(name: string): string | null {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    try {
      if (Deno.statSync(join(dir, name)).isFile) return join(dir, name);
    } catch {
      // next
    }
  }
  return null;
}

// ---------------------------------------------------------------------------
// Options

const NO_PATHS = { isDirectory: () => false, isFile: () => false };

Deno.test("deploy options: defaults", () => {
  const o = parseDeployArgs([]);
  assert.deepEqual(o, {
    context: undefined,
    kubeconfig: undefined,
    overlay: DEFAULT_OVERLAY,
    skipImages: false,
    demo: false,
    wait: true,
    timeoutSeconds: DEFAULT_TIMEOUT_SECONDS,
    force: false,
    undeploy: false,
    help: false,
  });
  assert.equal(DEFAULT_OVERLAY, "deploy/overlays/minikube");
  assert.equal(DEFAULT_TIMEOUT_SECONDS, 180);
});

Deno.test("deploy options: every option, and the `--` deno task passes on", () => {
  const o = parseDeployArgs([
    "--",
    "--context",
    "kind-mbcas",
    "--kubeconfig=/tmp/k",
    "--overlay",
    "deploy/base",
    "--skip-images",
    "--demo",
    "--no-wait",
    "--timeout",
    "30",
    "--force",
    "--undeploy",
  ]);
  assert.deepEqual(o, {
    context: "kind-mbcas",
    kubeconfig: "/tmp/k",
    overlay: "deploy/base",
    skipImages: true,
    demo: true,
    wait: false,
    timeoutSeconds: 30,
    force: true,
    undeploy: true,
    help: false,
  });
  assert.equal(parseDeployArgs(["-h"]).help, true);
});

Deno.test("deploy options: a bad option or value is one UsageError naming it", () => {
  const cases: [string[], RegExp][] = [
    [["--timeout", "abc"], /--timeout .*"abc"/],
    [["--timeout", "0"], /--timeout .*"0"/],
    [["--timeout", "1.5"], /--timeout .*"1\.5"/],
    [["--timeout", "99999999"], /--timeout .*"99999999"/],
    [["--timeout=-3"], /--timeout .*"-3"/],
    [["--timeout"], /--timeout/],
    [["--timeout", "--demo"], /--timeout/],
    [["--bogus"], /--bogus/],
    [["--demo=yes"], /--demo/],
    [["stray"], /stray/],
    [["--context", ""], /--context .*""/],
    [["--overlay", " "], /--overlay .*" "/],
    [["--kubeconfig="], /--kubeconfig .*""/],
  ];
  for (const [args, message] of cases) {
    assert.throws(() => parseDeployArgs(args), (error: unknown) => {
      assert.ok(error instanceof UsageError, `${args.join(" ")}: ${error}`);
      assert.match(error.message, message, args.join(" "));
      assert.ok(!error.message.includes("\n"), `one line: ${error.message}`);
      return true;
    });
  }
});

Deno.test("deploy options: paths that do not exist are named with the option", () => {
  assert.throws(
    () => parseDeployArgs(["--kubeconfig", "/nope/config"], NO_PATHS),
    /--kubeconfig "\/nope\/config": no such file/,
  );
  assert.throws(
    () => parseDeployArgs(["--overlay", "deploy/overlays/kind"], NO_PATHS),
    /--overlay "deploy\/overlays\/kind": no such directory/,
  );
  assert.throws(
    () =>
      parseDeployArgs(["--overlay", "deploy"], {
        isDirectory: () => true,
        isFile: () => false,
      }),
    /--overlay "deploy": not a kustomization/,
  );
  // The default overlay is not checked here (undeploy renders it and reports kubectl's error).
  assert.equal(parseDeployArgs([], NO_PATHS).overlay, DEFAULT_OVERLAY);
  const ok = parseDeployArgs(["--overlay", "o"], {
    isDirectory: (p) => p === "o",
    isFile: (p) => p === "o/kustomization.yaml",
  });
  assert.equal(ok.overlay, "o");
});

Deno.test("deploy script: a bad --timeout exits 2 naming the option and value", async () => {
  const result = await deployScript(["--timeout", "abc"]);
  assert.equal(result.code, 2, result.stderr);
  assert.match(result.stderr, /^deploy: --timeout must be .*, got "abc"\n$/);
  assert.equal(result.stdout, "");
  const unknown = await deployScript(["--colour"]);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /deploy: bad option: Unknown option '--colour'/);
  const overlay = await deployScript(["--overlay", "deploy/overlays/nowhere"]);
  assert.equal(overlay.code, 2);
  assert.match(overlay.stderr, /--overlay "deploy\/overlays\/nowhere": no such directory/);
});

Deno.test("deploy script: --help prints the usage and exits 0", async () => {
  const result = await deployScript(["--help"]);
  assert.equal(result.code, 0);
  for (const option of ["--context", "--kubeconfig", "--overlay", "--skip-images", "--demo"]) {
    assert.ok(result.stdout.includes(option), option);
  }
});

Deno.test("deploy script: no kubectl on PATH is a clear error, exit 1", async () => {
  const empty = await Deno.makeTempDir();
  try {
    for (const args of [["--skip-images"], ["--undeploy"]]) {
      const result = await deployScript(args, { PATH: empty });
      assert.equal(result.code, 1, result.stderr);
      assert.match(result.stdout, /^deploy: checking kubectl\n/);
      assert.match(result.stderr, /deploy: step "check kubectl" failed:/);
      assert.match(result.stderr, /kubectl not found on PATH: install kubectl/);
    }
  } finally {
    await Deno.remove(empty);
  }
});

requireOrSkip(
  "deploy script: an unreachable API server is a clear error, exit 1",
  kubectlMissing(),
  async () => {
    const dir = await Deno.makeTempDir();
    try {
      const kubeconfig = join(dir, "config");
      await Deno.writeTextFile(
        kubeconfig,
        `apiVersion: v1
kind: Config
clusters: [{name: gone, cluster: {server: "https://127.0.0.1:${freePort()}", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: gone, context: {cluster: gone, user: u}}]
current-context: gone
`,
      );
      const result = await deployScript(["--kubeconfig", kubeconfig, "--skip-images"]);
      assert.equal(result.code, 1, result.stdout + result.stderr);
      assert.match(result.stdout, /deploy: target context: gone at https:\/\/127\.0\.0\.1:/);
      assert.match(result.stdout, /deploy: note: the current context "gone" is not minikube/);
      assert.match(result.stderr, /deploy: step "server version" failed:/);
      assert.match(result.stderr, /cannot reach the API server of context "gone"/);
      assert.match(result.stderr, /connection refused|refused/);
      // A context that is not in the kubeconfig is a bad option.
      const missing = await deployScript(["--kubeconfig", kubeconfig, "--context", "nope"]);
      assert.equal(missing.code, 2, missing.stderr);
      assert.match(missing.stderr, /--context "nope": no such context/);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

// ---------------------------------------------------------------------------
// Server version

function version(serverVersion: Record<string, string>): string {
  return JSON.stringify({
    clientVersion: { major: "1", minor: "32", gitVersion: "v1.32.4" },
    kustomizeVersion: "v5.5.0",
    serverVersion,
  });
}

Deno.test("server version: parses plain and vendor versions", () => {
  const cases: [Record<string, string>, ServerVersion][] = [
    [{ major: "1", minor: "35", gitVersion: "v1.35.4" }, {
      major: 1,
      minor: 35,
      patch: 4,
      gitVersion: "v1.35.4",
    }],
    [{ major: "1", minor: "33+", gitVersion: "v1.33.1-gke.100" }, {
      major: 1,
      minor: 33,
      patch: 1,
      gitVersion: "v1.33.1-gke.100",
    }],
    [{ major: "1", minor: "34", gitVersion: "v1.34.0+k3s1" }, {
      major: 1,
      minor: 34,
      patch: 0,
      gitVersion: "v1.34.0+k3s1",
    }],
    [{ major: "1", minor: "30+", gitVersion: "v1.30.2-eks-1552ad0" }, {
      major: 1,
      minor: 30,
      patch: 2,
      gitVersion: "v1.30.2-eks-1552ad0",
    }],
    [{ major: "1", minor: "33+", gitVersion: "" }, { major: 1, minor: 33, gitVersion: "v1.33" }],
    [{ major: "1", minor: "31", gitVersion: "weird-build" }, {
      major: 1,
      minor: 31,
      gitVersion: "weird-build",
    }],
  ];
  for (const [server, expected] of cases) {
    assert.deepEqual(parseServerVersion(version(server)), expected, JSON.stringify(server));
  }
});

Deno.test("server version: no server version (unreachable) or garbage gives null", () => {
  // What kubectl prints when it cannot reach the server: the client part only.
  assert.equal(
    parseServerVersion(JSON.stringify({ clientVersion: { gitVersion: "v1.32.4" } })),
    null,
  );
  assert.equal(parseServerVersion(""), null);
  assert.equal(parseServerVersion("Client Version: v1.32.4"), null);
  assert.equal(parseServerVersion(version({ major: "", minor: "", gitVersion: "" })), null);
});

const at = (minor: number, major = 1): ServerVersion => ({
  major,
  minor,
  gitVersion: `v${major}.${minor}.0`,
});

Deno.test("server version: 1.33 and later are fine", () => {
  for (const v of [at(33), at(35), at(40), at(0, 2)]) {
    const verdict = checkServerVersion(v, false);
    assert.equal(verdict.verdict, "ok", v.gitVersion);
    assert.match(verdict.lines.join("\n"), /pods\/resize/);
  }
});

Deno.test("server version: a 1.31 server is refused without --force, with the reason", () => {
  const verdict = checkServerVersion(at(31), false);
  assert.equal(verdict.verdict, "stop");
  const text = verdict.lines.join("\n");
  assert.match(text, /v1\.31\.0/);
  assert.match(text, /InPlacePodVerticalScaling/);
  assert.match(text, /feature gate/);
  assert.match(text, /kube-apiserver/);
  assert.match(text, /kubelet/);
  assert.match(text, /no pods\/resize subresource before 1\.33/);
  assert.match(text, /will not resize/);
  assert.match(text, /--force/);
  const forced = checkServerVersion(at(31), true);
  assert.equal(forced.verdict, "forced");
  assert.match(forced.lines.join("\n"), /deploying anyway/);
  for (const minor of [27, 32]) {
    assert.equal(checkServerVersion(at(minor), false).verdict, "stop", `1.${minor}`);
  }
});

Deno.test("server version: before 1.27 is refused even with --force", () => {
  for (const v of [at(26), at(20), at(9)]) {
    for (const force of [false, true]) {
      const verdict = checkServerVersion(v, force);
      assert.equal(verdict.verdict, "refuse", `${v.gitVersion} force=${force}`);
      assert.match(verdict.lines.join("\n"), /too old/);
    }
  }
});

// ---------------------------------------------------------------------------
// Context and rendering

Deno.test("minikube context: by name or by minikube's context extension", () => {
  assert.equal(isMinikubeContext("minikube"), true);
  assert.equal(isMinikubeContext("kind-kind"), false);
  const view = (provider: string) =>
    JSON.stringify({
      contexts: [{
        name: "dev",
        context: {
          cluster: "dev",
          extensions: [{ name: "context_info", extension: { provider, version: "v1.36.0" } }],
        },
      }],
    });
  assert.equal(isMinikubeContext("dev", view("minikube.sigs.k8s.io")), true);
  assert.equal(isMinikubeContext("dev", view("kind")), false);
  assert.equal(isMinikubeContext("other", view("minikube.sigs.k8s.io")), false);
  assert.equal(isMinikubeContext("dev", "not json"), false);
});

const RENDERED = `apiVersion: v1
kind: Namespace
metadata:
  labels:
    app.kubernetes.io/name: mbcas
  name: mbcas-system
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  annotations:
    note: "kind: Deployment"
  name: podallocations.allocation.mbcas.io
spec:
  names:
    kind: PodAllocation
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: mbcas-agent
  namespace: mbcas-system
---
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: mbcas-agent
  namespace: mbcas-system
spec:
  template:
    metadata:
      name: not-this-one
`;

Deno.test("undeploy: the CRD is dropped from the rendered overlay, the rest reversed", () => {
  assert.deepEqual(
    splitRendered(RENDERED).map((o) => `${o.kind}/${o.name}`),
    [
      "Namespace/mbcas-system",
      `CustomResourceDefinition/${CRD_NAME}`,
      "ServiceAccount/mbcas-agent",
      "DaemonSet/mbcas-agent",
    ],
  );
  const { yaml, kept, crds } = dropCustomResourceDefinitions(RENDERED);
  assert.deepEqual(crds, [CRD_NAME]);
  assert.deepEqual(kept.map((o) => `${o.kind}/${o.name}`), [
    "DaemonSet/mbcas-agent",
    "ServiceAccount/mbcas-agent",
    "Namespace/mbcas-system",
  ]);
  assert.ok(!yaml.includes("CustomResourceDefinition"));
  assert.ok(!yaml.includes("openAPIV3Schema"));
  // The stream splits back into the same objects.
  assert.deepEqual(splitRendered(yaml), kept);
  assert.match(yaml, /^apiVersion: apps\/v1\nkind: DaemonSet\n/);
  assert.deepEqual(dropCustomResourceDefinitions(""), { yaml: "", kept: [], crds: [] });
  const onlyCrd = dropCustomResourceDefinitions(RENDERED.split("---\n")[1]);
  assert.deepEqual([onlyCrd.yaml, onlyCrd.kept, onlyCrd.crds], ["", [], [CRD_NAME]]);
});

requireOrSkip(
  "undeploy: the real overlay renders to MBCAS's objects, the CRD dropped",
  kubectlMissing(),
  async () => {
    const rendered = await output("kubectl", ["kustomize", DEFAULT_OVERLAY]);
    assert.equal(rendered.code, 0, rendered.stderr);
    const all = splitRendered(rendered.stdout);
    assert.ok(all.every((o) => o.kind !== "" && o.name !== ""), "every object has kind and name");
    const { yaml, kept, crds } = dropCustomResourceDefinitions(rendered.stdout);
    assert.deepEqual(crds, [CRD_NAME]);
    assert.equal(kept.length, all.length - 1);
    const kinds = new Set(kept.map((o) => o.kind));
    for (
      const kind of [
        "Namespace",
        "Deployment",
        "DaemonSet",
        "Service",
        "PodDisruptionBudget",
        ...ADMISSION_POLICY_KINDS,
      ]
    ) {
      assert.ok(kinds.has(kind), kind);
    }
    assert.equal(kept.at(-1)?.kind, "Namespace", "the namespace is deleted after its contents");
    assert.deepEqual(splitRendered(yaml), kept, "the filtered stream splits back the same");
  },
);

Deno.test("admission policies: applied where the cluster serves them, else deploy stops or --force skips", () => {
  const served = "mutatingwebhookconfigurations.admissionregistration.k8s.io\n" +
    "validatingadmissionpolicies.admissionregistration.k8s.io\n" +
    "validatingadmissionpolicybindings.admissionregistration.k8s.io\n";
  for (const force of [false, true]) {
    assert.deepEqual(admissionPolicyVerdict(served, force), { verdict: "apply", lines: [] });
  }
  // A cluster of 1.29 without the API enabled lists the webhooks only.
  const old = "mutatingwebhookconfigurations.admissionregistration.k8s.io\n" +
    "validatingwebhookconfigurations.admissionregistration.k8s.io\n";
  const stop = admissionPolicyVerdict(old, false);
  assert.equal(stop.verdict, "stop");
  assert.match(
    stop.lines.join("\n"),
    /does not serve admissionregistration\.k8s\.io ValidatingAdmissionPolicy/,
  );
  assert.match(stop.lines.join("\n"), /pass --force to deploy without these guardrails/);
  const skip = admissionPolicyVerdict(old, true);
  assert.equal(skip.verdict, "skip");
  assert.match(skip.lines.join("\n"), /--force: deploying without them/);
  // Nothing listed (the API group is off entirely) is the same as not served.
  assert.equal(admissionPolicyVerdict("", false).verdict, "stop");
});

Deno.test("admission policies: dropped from a rendered stream, every other object kept in order", () => {
  const policy = `apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: mbcas-agent-own-node
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: mbcas-agent-own-node
`;
  const rendered = RENDERED + "---\n" + policy;
  const left = splitRendered(dropAdmissionPolicies(rendered));
  assert.deepEqual(left, splitRendered(RENDERED));
  assert.ok(left.every((o) => !ADMISSION_POLICY_KINDS.includes(o.kind)));
  assert.equal(dropAdmissionPolicies(policy), "");
});

Deno.test("undeploy: counts what kubectl delete reports as deleted", () => {
  assert.equal(countDeleted(""), 0);
  assert.equal(
    countDeleted(
      'deployment.apps "mbcas-controller" deleted\nnamespace "mbcas-system" deleted\n' +
        'service "x" deleted from mbcas-system namespace\nwarning: something\n',
    ),
    3,
  );
});

Deno.test("deploy: the closing hints show how to watch it work", () => {
  const hints = watchHints("kubectl --context kind-x", "/k/config").join("\n");
  assert.match(hints, /^ {2}kubectl --context kind-x get pa -A -w$/m);
  assert.match(
    hints,
    /^ {2}kubectl --context kind-x -n mbcas-system logs -l app.kubernetes.io\/component=agent -f$/m,
  );
  assert.match(hints, /port-forward deployment\/mbcas-controller 8080:8080/);
  assert.match(hints, /curl -s localhost:8080\/metrics/);
  assert.match(hints, /^ {2}deno task explain -- --node <node> --kubeconfig \/k\/config$/m);
  assert.match(watchHints("kubectl").join("\n"), /explain -- --node <node>$/m);
});

// ---------------------------------------------------------------------------
// scripts/images.sh

Deno.test("images.sh: bash -n accepts it", async () => {
  const result = await output("bash", ["-n", "scripts/images.sh"]);
  assert.equal(result.code, 0, result.stderr);
});

/**
 * A copy of scripts/images.sh in a temporary repository (with placeholder
 * Containerfiles) and a bin directory holding only bash and the basic tools
 * it uses, as symlinks; `fakes` adds executable scripts to bin. Runs the copy
 * with PATH set to bin only.
 */
async function imagesSandbox(
  fakes: Record<string, string>,
  fn: (
    run: (args?: string[], env?: Record<string, string>) => Promise<Output>,
    dir: string,
  ) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "mbcas-images-test-" });
  try {
    const repo = join(dir, "repo");
    const bin = join(dir, "bin");
    await Deno.mkdir(join(repo, "scripts"), { recursive: true });
    await Deno.mkdir(bin);
    await Deno.copyFile(join(ROOT, "scripts/images.sh"), join(repo, "scripts/images.sh"));
    for (const component of ["controller", "agent"]) {
      await Deno.writeTextFile(join(repo, `Containerfile.${component}`), "FROM scratch\n");
    }
    const tools = [
      "bash",
      "dirname",
      "basename",
      "mktemp",
      "rm",
      "grep",
      "tail",
      "tr",
      "sed",
      "cat",
    ];
    for (const tool of tools) {
      const path = which(tool);
      assert.ok(path !== null, `${tool} on PATH`);
      await Deno.symlink(path, join(bin, tool));
    }
    for (const [name, script] of Object.entries(fakes)) {
      await Deno.writeTextFile(join(bin, name), `#!${which("bash")}\n${script}\n`);
      await Deno.chmod(join(bin, name), 0o755);
    }
    await fn(
      (args = [], env = {}) =>
        output(join(bin, "bash"), [join(repo, "scripts/images.sh"), ...args], {
          clearEnv: true,
          env: { PATH: bin, HOME: dir, TMPDIR: dir, LOG: join(dir, "calls.log"), ...env },
          cwd: dir,
        }),
      dir,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** A fake engine that logs its calls (with its working directory) and succeeds. */
const WORKING_ENGINE = `echo "$(basename "$0") $* (in $PWD)" >> "$LOG"
if [[ "$1" == save ]]; then echo archive > "$3"; fi
exit 0`;
const NO_DAEMON_DOCKER = `if [[ "$1" == info ]]; then
  echo "Client:" ; echo " Version: 28.2.2"
  echo "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?" >&2
  exit 1
fi
exit 1`;
const MINIKUBE = `echo "minikube $*" >> "$LOG"; exit 0`;

Deno.test("images.sh: no engine on PATH exits 1 saying so", async () => {
  await imagesSandbox({}, async (run) => {
    const result = await run();
    assert.equal(result.code, 1, result.stdout + result.stderr);
    assert.match(
      result.stderr,
      /^images: error: no container engine found: neither podman nor docker is on PATH/m,
    );
    const named = await run([], { MBCAS_CONTAINER_ENGINE: "nerdctl" });
    assert.equal(named.code, 1);
    assert.match(named.stderr, /MBCAS_CONTAINER_ENGINE=nerdctl: no such command on PATH/);
  });
});

Deno.test("images.sh: a docker CLI without a daemon exits 1 explaining it", async () => {
  await imagesSandbox({ docker: NO_DAEMON_DOCKER, minikube: MINIKUBE }, async (run) => {
    const result = await run();
    assert.equal(result.code, 1, result.stdout + result.stderr);
    assert.match(result.stdout, /images: container engine: docker/);
    assert.match(result.stderr, /the docker CLI is installed but no Docker daemon answers/);
    assert.match(result.stderr, /Cannot connect to the Docker daemon/);
    assert.match(result.stderr, /minikube docker-env/);
    assert.doesNotMatch(result.stdout, /building/);
  });
});

Deno.test({
  name: "images.sh: the real docker CLI with no daemon here is explained the same way",
  ignore: which("docker") === null ||
    new Deno.Command("docker", { args: ["info"], stdout: "null", stderr: "null" }).outputSync()
      .success,
  fn: async () => {
    const result = await output("bash", ["scripts/images.sh"], {
      env: { MBCAS_CONTAINER_ENGINE: "docker" },
    });
    assert.equal(result.code, 1);
    assert.match(result.stderr, /the docker CLI is installed but no Docker daemon answers/);
  },
});

Deno.test("images.sh: builds both images with docker and loads them into minikube", async () => {
  await imagesSandbox({ docker: WORKING_ENGINE, minikube: MINIKUBE }, async (run, dir) => {
    const result = await run([], { MBCAS_MINIKUBE_PROFILE: "mbcas" });
    assert.equal(result.code, 0, result.stdout + result.stderr);
    const calls = (await Deno.readTextFile(join(dir, "calls.log"))).trim().split("\n");
    const repo = join(dir, "repo");
    assert.deepEqual(calls.filter((c) => c.startsWith("docker build")), [
      `docker build -f Containerfile.controller -t mbcas-controller:dev . (in ${repo})`,
      `docker build -f Containerfile.agent -t mbcas-agent:dev . (in ${repo})`,
    ]);
    assert.equal(calls.filter((c) => c.startsWith("docker save")).length, 2);
    const loads = calls.filter((c) => c.startsWith("minikube") && c.includes("image load"));
    assert.equal(loads.length, 2);
    for (const load of loads) assert.match(load, /^minikube -p mbcas image load \S+\.tar$/);
    for (const line of result.stdout.trim().split("\n")) assert.match(line, /^images: /);
    assert.match(result.stdout, /images: loading mbcas-agent:dev into minikube \(mbcas\)/);
  });
});

Deno.test("images.sh: prefers podman, with names that match the overlay in minikube", async () => {
  await imagesSandbox(
    { podman: WORKING_ENGINE, docker: NO_DAEMON_DOCKER, minikube: MINIKUBE },
    async (run, dir) => {
      const result = await run([], { MBCAS_IMAGE_TAG: "t1" });
      assert.equal(result.code, 0, result.stdout + result.stderr);
      const calls = await Deno.readTextFile(join(dir, "calls.log"));
      assert.match(
        calls,
        /podman build -f Containerfile.controller -t docker.io\/library\/mbcas-controller:t1 \./,
      );
      assert.match(calls, /podman save -o \S+ docker.io\/library\/mbcas-agent:t1/);
      assert.doesNotMatch(calls, /^docker/m);
      assert.match(result.stdout, /the minikube overlay runs the :dev images/);
    },
  );
});

Deno.test("images.sh: --no-load, no minikube, docker-env and a bad option", async () => {
  await imagesSandbox({ docker: WORKING_ENGINE }, async (run, dir) => {
    const noLoad = await run(["--no-load"]);
    assert.equal(noLoad.code, 0, noLoad.stderr);
    assert.match(noLoad.stdout, /not loading them anywhere \(--no-load\)/);
    const noMinikube = await run();
    assert.equal(noMinikube.code, 0, noMinikube.stderr);
    assert.match(noMinikube.stdout, /minikube not found: the images are built but not loaded/);
    assert.match(noMinikube.stdout, /push them to a registry/);
    assert.match(noMinikube.stdout, /kustomize edit set image/);
    const dockerEnv = await run([], { MINIKUBE_ACTIVE_DOCKERD: "minikube" });
    assert.equal(dockerEnv.code, 0, dockerEnv.stderr);
    assert.match(dockerEnv.stdout, /built inside minikube's Docker daemon/);
    const calls = await Deno.readTextFile(join(dir, "calls.log"));
    assert.doesNotMatch(calls, /save|minikube/);
    const bad = await run(["--load"]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /unknown option '--load'/);
  });
});

Deno.test("images.sh: a minikube that is not running is an error", async () => {
  await imagesSandbox(
    { docker: WORKING_ENGINE, minikube: `[[ "$1" == status ]] && exit 7; exit 0` },
    async (run) => {
      const result = await run();
      assert.equal(result.code, 1);
      assert.match(result.stderr, /minikube \(current profile\) is not running/);
    },
  );
});

// ---------------------------------------------------------------------------
// The whole cycle against the test bed

/** kubectl as the test bed's admin. */
function kubectlAs(kubeconfig: string) {
  return (args: string[], stdin?: string) =>
    output("kubectl", ["--kubeconfig", kubeconfig, ...args], { stdin });
}

async function eventuallyTrue(
  what: string,
  probe: () => Promise<boolean>,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await probe()) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`not within ${timeoutMs} ms: ${what}`);
}

requireOrSkip(
  "deploy script: deploy, redeploy, rollout timeout, undeploy twice against the test bed",
  testbedMissing(),
  async (t) => {
    const testbed = await startTestbed();
    try {
      const kubeconfig = testbed.identities.admin.kubeconfig;
      const kubectl = kubectlAs(kubeconfig);
      const base = ["--kubeconfig", kubeconfig, "--skip-images"];
      const rendered = await kubectl(["kustomize", DEFAULT_OVERLAY]);
      assert.equal(rendered.code, 0, rendered.stderr);
      const objects = splitRendered(rendered.stdout);

      await t.step("deploy --demo --no-wait creates everything", async () => {
        const result = await deployScript([...base, "--no-wait", "--demo"]);
        assert.equal(result.code, 0, result.stdout + result.stderr);
        for (const line of result.stdout.trim().split("\n")) assert.match(line, /^deploy: /);
        assert.match(result.stdout, /deploy: target context: admin at https:\/\/127\.0\.0\.1/);
        assert.match(result.stdout, /not minikube; using it anyway/);
        assert.match(result.stdout, /server v1\.35\.4: in-place pod resize is on by default/);
        assert.match(result.stdout, /images: skipped \(--skip-images\)/);
        assert.match(result.stdout, /not waiting for the rollouts \(--no-wait\)/);
        assert.match(
          result.stdout,
          /deploy: {3}kubectl --kubeconfig \S+ --context admin get pa -A -w\n/,
        );
        assert.match(
          result.stdout,
          /deno task explain -- --node <node> --kubeconfig \S+admin\.kubeconfig/,
        );

        const core = await kubectl([
          "get",
          `crd/${CRD_NAME}`,
          "namespace/mbcas-system",
          "namespace/mbcas-demo",
          "-o",
          "name",
        ]);
        assert.equal(core.code, 0, core.stderr);
        const established = await kubectl([
          "get",
          `crd/${CRD_NAME}`,
          "-o",
          "jsonpath={.status.conditions[?(@.type=='Established')].status}",
        ]);
        assert.equal(established.stdout, "True");
        const system = await kubectl([
          "-n",
          "mbcas-system",
          "get",
          "deployment/mbcas-controller",
          "daemonset/mbcas-agent",
          "-o",
          "name",
        ]);
        assert.equal(system.code, 0, system.stderr);
        // Every object of the overlay (Services and the PDB included) and of the demo exists.
        for (const dir of [DEFAULT_OVERLAY, "deploy/demo"]) {
          const all = await kubectl(["get", "-k", dir, "-o", "name"]);
          assert.equal(all.code, 0, `${dir}: ${all.stderr}`);
        }
        const kinds = new Set(objects.map((o) => o.kind));
        assert.ok(kinds.has("Service") && kinds.has("PodDisruptionBudget"));
        const listed = await kubectl(["-n", "mbcas-system", "get", "services,pdb", "-o", "name"]);
        for (
          const o of objects.filter((o) => ["Service", "PodDisruptionBudget"].includes(o.kind))
        ) {
          const prefix = o.kind === "Service" ? "service" : "poddisruptionbudget.policy";
          assert.ok(listed.stdout.includes(`${prefix}/${o.name}`), `${o.kind}/${o.name}`);
        }
        const label = await kubectl([
          "get",
          "namespace/mbcas-demo",
          "-o",
          "jsonpath={.metadata.labels.mbcas\\.io/managed}",
        ]);
        assert.equal(label.stdout, "true");
        const image = await kubectl([
          "-n",
          "mbcas-system",
          "get",
          "deployment/mbcas-controller",
          "-o",
          "jsonpath={.spec.template.spec.containers[0].image} {.spec.template.spec.containers[0].imagePullPolicy}",
        ]);
        assert.equal(image.stdout, "mbcas-controller:dev Never");
      });

      await t.step("a second deploy succeeds (server-side apply is idempotent)", async () => {
        const result = await deployScript([...base, "--no-wait", "--demo"]);
        assert.equal(result.code, 0, result.stdout + result.stderr);
      });

      await t.step("the rollout wait times out with a clear message (no scheduler)", async () => {
        const started = Date.now();
        const result = await deployScript([...base, "--timeout", "3"]);
        assert.equal(result.code, 1, result.stdout + result.stderr);
        assert.match(
          result.stdout,
          /deploy: waiting for deployment\/mbcas-controller to roll out \(up to 3 s\)/,
        );
        assert.match(
          result.stderr,
          /deploy: step "rollout of deployment\/mbcas-controller" failed:/,
        );
        assert.match(result.stderr, /deployment\/mbcas-controller was not ready within 3 s/);
        assert.match(result.stderr, /get pods -l app.kubernetes.io\/component=controller/);
        assert.ok(Date.now() - started < 60_000, "gave up in time");
      });

      await t.step("undeploy removes everything, the CRD last", async () => {
        const result = await deployScript(["--kubeconfig", kubeconfig, "--undeploy"]);
        assert.equal(result.code, 0, result.stdout + result.stderr);
        const lines = result.stdout.split("\n");
        const agent = lines.findIndex((l) =>
          l.startsWith("deploy: deleting the agent first (daemonset/mbcas-agent)")
        );
        const restore = lines.indexOf("deploy: no PodAllocations: no CPU limits to restore");
        const demo = lines.findIndex((l) => l.startsWith("deploy: deleting the demo"));
        const overlay = lines.findIndex((l) =>
          /^deploy: deleting the overlay's \d+ objects/.test(l)
        );
        const crd = lines.findIndex((l) => l.startsWith("deploy: deleting the CRD last"));
        assert.ok(agent >= 0 && agent < restore && restore < demo, result.stdout);
        assert.ok(demo >= 0 && demo < overlay && overlay < crd, result.stdout);
        assert.match(
          result.stdout,
          /^deploy: restored the declared CPU limits of 0 pods: 0 by the controller, 0 by undeploy; 0 could not be restored$/m,
        );
        const deletedLines = lines.filter((l) => /" deleted/.test(l));
        assert.ok(deletedLines.length >= objects.length, result.stdout);
        assert.match(
          deletedLines.at(-1)!,
          new RegExp(`"${CRD_NAME.replaceAll(".", "\\.")}" deleted`),
        );
        assert.equal(
          lines.slice(0, crd).filter((l) => l.includes(CRD_NAME) && l.includes("deleted")).length,
          0,
          "nothing deleted the CRD before its step",
        );
        assert.match(result.stdout, /undeployed from context "admin": \d+ objects deleted/);

        await eventuallyTrue("the namespaces are gone", async () => {
          const ns = await kubectl([
            "get",
            "namespace/mbcas-system",
            "namespace/mbcas-demo",
            "--ignore-not-found",
            "-o",
            "name",
          ]);
          return ns.code === 0 && ns.stdout.trim() === "";
        }, 30_000);
        for (const dir of [DEFAULT_OVERLAY, "deploy/demo"]) {
          const left = await kubectl(["get", "-k", dir, "--ignore-not-found", "-o", "name"]);
          assert.equal(left.code, 0, left.stderr);
          assert.equal(left.stdout.trim(), "", `${dir} left ${left.stdout}`);
        }
        const crdLeft = await kubectl(["get", "crd", "--ignore-not-found", "-o", "name"]);
        assert.doesNotMatch(crdLeft.stdout, /podallocations/);
      });

      await t.step("a second undeploy succeeds and says nothing was left", async () => {
        const result = await deployScript(["--kubeconfig", kubeconfig, "--undeploy"]);
        assert.equal(result.code, 0, result.stdout + result.stderr);
        assert.match(result.stdout, /deploy: nothing was left to remove in context "admin"/);
        assert.match(
          result.stdout,
          /^deploy: no crd\/podallocations\.allocation\.mbcas\.io: no PodAllocations, no CPU limits to restore$/m,
        );
        assert.doesNotMatch(result.stdout, /restored the declared CPU limits/);
      });
    } finally {
      await testbed.stop();
    }
  },
);
