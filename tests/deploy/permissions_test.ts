/**
 * One place for the binaries' permissions: the `permissions` sets of deno.json.
 * These tests check that the compile tasks, the run tasks, the Containerfiles
 * and the components' configuration agree on them, and then run both entry
 * points with exactly the in-cluster sets (`-P=controller`, `-P=agent`, as
 * `deno compile` bakes them in) inside a simulated pod: a private mount
 * namespace with a service-account directory at the kubelet's path, an
 * /etc/hosts that resolves `kubernetes.default.svc` to the test bed, and the
 * node's cgroup tree at /host/cgroup. The agent publishes an allocation and
 * the controller applies it, so every read, connection and listen they need
 * is inside the sets.
 */
import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { AGENT_OPTIONS } from "../../src/agent/config.ts";
import { CONTROLLER_OPTIONS } from "../../src/controller/config.ts";
import { IN_CLUSTER_HOST, SERVICE_ACCOUNT_DIR } from "../../src/k8s/mod.ts";
import { burstablePod, eventually } from "../k8s/_helpers.ts";
import { millicores, NodeLab, NS } from "../agent/_node_lab.ts";
import { requireOrSkip, testbedMissing } from "../_support/requirements.ts";
import { taskParts } from "../../src/config/mod.ts";
import { denoConfig, type PermissionSet } from "../_support/task_flags.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const COMPONENTS = {
  controller: { options: CONTROLLER_OPTIONS, entry: "src/controller/main.ts" },
  agent: { options: AGENT_OPTIONS, entry: "src/agent/main.ts" },
} as const;
type Component = keyof typeof COMPONENTS;
const SA_DIRS = [SERVICE_ACCOUNT_DIR, SERVICE_ACCOUNT_DIR.replace(/^\/var\/run\//, "/run/")];

function flagValue(flags: string[], name: string): string | undefined {
  const i = flags.findIndex((f) => f === name || f.startsWith(`${name}=`));
  if (i < 0) return undefined;
  return flags[i].includes("=") ? flags[i].slice(name.length + 1) : flags[i + 1];
}

function metricsPort(component: Component): string {
  return COMPONENTS[component].options["metrics-port"].default;
}

for (const component of Object.keys(COMPONENTS) as Component[]) {
  Deno.test(`permissions (${component}): compile task, run task and entry point agree`, () => {
    const run = taskParts(component);
    const compile = taskParts(`compile:${component}`);
    assert.equal(run.verb, "run");
    assert.equal(compile.verb, "compile");
    assert.equal(compile.entry, COMPONENTS[component].entry);
    assert.equal(run.entry, COMPONENTS[component].entry);
    assert.equal(flagValue(compile.flags, "-P"), component, "compiled with the in-cluster set");
    assert.equal(flagValue(run.flags, "-P"), `${component}-local`, "run with the local set");
    assert.equal(flagValue(compile.flags, "--v8-flags"), flagValue(run.flags, "--v8-flags"));
    assert.equal(flagValue(compile.flags, "--output"), `dist/mbcas-${component}`);
    for (const [flags, task] of [[run.flags, component], [compile.flags, `compile:${component}`]]) {
      const raw = (flags as string[]).filter((f) => /^--(allow|deny)-|^-A$|^--allow-all$/.test(f));
      assert.deepEqual(raw, [], `task ${task} takes its permissions from the set only`);
    }
  });

  Deno.test(`permissions (${component}): the in-cluster set is the least the pod needs`, () => {
    const sets = denoConfig().permissions;
    const set: PermissionSet = sets[component];
    // The agent writes elastic pods' CPU weights (--elastic-yield) under the cgroup root, nothing else.
    assert.deepEqual(
      Object.keys(set).sort(),
      component === "agent"
        ? ["env", "net", "read", "sys", "write"]
        : ["env", "net", "read", "sys"],
      "no run/ffi; write only for the agent",
    );
    const expectedRead = component === "agent"
      ? [AGENT_OPTIONS["cgroup-root"].default, ...SA_DIRS]
      : SA_DIRS;
    assert.deepEqual(set.read, expectedRead);
    if (component === "agent") assert.deepEqual(set.write, [AGENT_OPTIONS["cgroup-root"].default]);
    // Every address (dual stack), and IPv4's where the kernel has no IPv6.
    assert.equal(
      (component === "agent" ? AGENT_OPTIONS : CONTROLLER_OPTIONS)["bind-address"].default,
      "::",
    );
    assert.deepEqual(set.net, [
      IN_CLUSTER_HOST,
      `[::]:${metricsPort(component)}`,
      `0.0.0.0:${metricsPort(component)}`,
    ]);
    assert.deepEqual(set.sys, ["hostname"]);
    // The environment: the options' variables (MBCAS_* by prefix), the
    // in-cluster service address, and HOME for a kubeconfig's default path.
    // Nothing else: neither binary loads client-node, whose `debug`
    // dependency read the whole environment.
    const optionEnv = Object.values(COMPONENTS[component].options).map((o) => o.env);
    assert.deepEqual(
      [...set.env as string[]].sort(),
      [
        "MBCAS_*",
        ...optionEnv.filter((name) => !name.startsWith("MBCAS_")),
        "KUBERNETES_SERVICE_HOST",
        "KUBERNETES_SERVICE_PORT",
        "HOME",
      ].sort(),
    );
    const local: PermissionSet = sets[`${component}-local`];
    for (const kind of ["write", "run", "ffi", "import"] as const) {
      // Run locally, the agent's cgroup root is wherever --cgroup-root says: it may write there.
      if (component === "agent" && kind === "write") assert.equal(local.write, true);
      else assert.equal(local[kind], undefined, `${component}-local grants no ${kind}`);
    }
  });

  Deno.test(`permissions (${component}): the Containerfile compiles with the same task`, () => {
    const file = Deno.readTextFileSync(join(ROOT, `Containerfile.${component}`));
    const denoVersion = /DENO_VERSION=(\S+)/.exec(Deno.readTextFileSync(join(ROOT, "scripts/deno")))
      ?.[1];
    assert.ok(denoVersion);
    assert.match(file, new RegExp(`DENO_IMAGE=docker\\.io/denoland/deno:${denoVersion}\\n`));
    assert.match(
      file,
      /RUNTIME_IMAGE=gcr\.io\/distroless\/cc-debian12:nonroot@sha256:[0-9a-f]{64}\n/,
    );
    assert.match(file, new RegExp(`^RUN deno task compile:${component}$`, "m"));
    assert.match(
      file,
      new RegExp(`^COPY --from=build /src/dist/mbcas-${component} /mbcas-${component}$`, "m"),
    );
    assert.match(file, new RegExp(`^ENTRYPOINT \\["/mbcas-${component}"\\]$`, "m"));
    assert.match(file, /^USER 65532:65532$/m);
    assert.match(file, new RegExp(`^EXPOSE ${metricsPort(component)}$`, "m"));
    // Everything the build stage copies is in the build context.
    const context = Deno.readTextFileSync(join(ROOT, ".dockerignore"));
    for (const [, path] of file.matchAll(/^COPY (?!--from)(\S+)/gm)) {
      assert.match(context, new RegExp(`^!${path.replace(".", "\\.")}/?$`, "m"), path);
    }
  });
}

Deno.test("compile: a failed runtime download is explained, other failures are not", async () => {
  const { explainCompileFailure } = await import("../../scripts/compile.ts");
  const dns =
    "error sending request for url (https://dl.deno.land/release/v2.9.6/denort-x86_64-unknown-linux-gnu.zip): dns error";
  assert.match(explainCompileFailure(dns)!, /downloads its runtime \(denort\)/);
  assert.equal(explainCompileFailure("error: Module not found"), null);
});

function podSandboxMissing(): string | null {
  if (Deno.build.os !== "linux") return "not Linux";
  if (Deno.uid() !== 0) return "not running as root (a private mount namespace is needed)";
  try {
    Deno.statSync("/usr/bin/unshare");
  } catch {
    return "unshare (util-linux) not installed";
  }
  return null;
}

/**
 * Directories created on the host as mount points (removed afterwards);
 * existing ones are left as they are.
 */
function makeMountPoints(paths: string[]): string[] {
  const created: string[] = [];
  for (const path of paths) {
    const missing: string[] = [];
    for (let p = path; p !== "/"; p = dirname(p)) {
      try {
        Deno.statSync(p);
        break;
      } catch {
        missing.unshift(p);
      }
    }
    Deno.mkdirSync(path, { recursive: true });
    created.push(...missing.reverse());
  }
  return created;
}

/** Starts `component` with exactly its in-cluster permission set, in a simulated pod. */
function spawnInPod(
  component: Component,
  mounts: [source: string, target: string][],
  env: Record<string, string>,
): Deno.ChildProcess {
  const { flags, entry } = taskParts(`compile:${component}`);
  const runFlags = flags.filter((f, i) =>
    !["--output", "--no-check"].includes(f) && flags[i - 1] !== "--output"
  );
  const script = mounts.map(([s, t]) => `mount --bind '${s}' '${t}'`).join(" && ") +
    ' && exec "$@"';
  return new Deno.Command("unshare", {
    args: [
      "--mount",
      "--propagation",
      "private",
      "--",
      "sh",
      "-c",
      script,
      "sh",
      Deno.execPath(),
      "run",
      ...runFlags,
      join(ROOT, entry),
    ],
    cwd: ROOT,
    clearEnv: true,
    env: {
      PATH: "/usr/bin:/bin",
      DENO_DIR: Deno.env.get("DENO_DIR") ?? `${Deno.env.get("HOME")}/.cache/deno`,
      NO_COLOR: "1",
      ...env,
    },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

async function collect(stream: ReadableStream<Uint8Array>, into: string[]): Promise<void> {
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) into.push(chunk);
}

requireOrSkip(
  "permissions: controller and agent run in a simulated pod with exactly their in-cluster sets",
  testbedMissing() ?? podSandboxMissing(),
  async () => {
    for (const port of [metricsPort("controller"), metricsPort("agent")]) {
      try {
        Deno.listen({ hostname: "0.0.0.0", port: Number(port) }).close();
      } catch {
        throw new Error(`port ${port} is busy; the in-cluster sets allow only that port`);
      }
    }
    const lab = await NodeLab.start(2000);
    const work = await Deno.makeTempDir({ prefix: "mbcas-pod-" });
    const created = makeMountPoints([SERVICE_ACCOUNT_DIR, AGENT_OPTIONS["cgroup-root"].default]);
    const processes: [Component, Deno.ChildProcess, string[]][] = [];
    try {
      const { testbed } = lab;
      const hosts = join(work, "hosts");
      await Deno.writeTextFile(hosts, `127.0.0.1 localhost\n127.0.0.1 ${IN_CLUSTER_HOST}\n`);
      const saDir = (component: Component) => {
        const dir = join(work, component);
        Deno.mkdirSync(dir);
        Deno.writeTextFileSync(join(dir, "token"), testbed.identities[component].token!);
        Deno.copyFileSync(testbed.caFile, join(dir, "ca.crt"));
        Deno.writeTextFileSync(join(dir, "namespace"), "mbcas-system");
        return dir;
      };
      const env = {
        KUBERNETES_SERVICE_HOST: "10.96.0.1", // the cluster IP a pod sees; not used
        KUBERNETES_SERVICE_PORT: new URL(testbed.url).port,
      };
      const start = (component: Component, mounts: [string, string][], extra: object) => {
        const logs: string[] = [];
        const child = spawnInPod(component, [
          [hosts, "/etc/hosts"],
          [saDir(component), SERVICE_ACCOUNT_DIR],
          ...mounts,
        ], { ...env, ...extra });
        collect(child.stderr, logs).catch(() => {});
        collect(child.stdout, logs).catch(() => {});
        processes.push([component, child, logs]);
      };
      start("agent", [[lab.fixture.root, AGENT_OPTIONS["cgroup-root"].default]], {
        NODE_NAME: "node-a",
        MBCAS_MARKET_INTERVAL_MS: "1000",
      });
      start("controller", [], {
        POD_NAME: "mbcas-controller-0",
        POD_NAMESPACE: "mbcas-system",
      });

      const [id] = await lab.runPod(
        burstablePod(NS, "web", "node-a", [{ name: "app", cpuRequest: "200m", cpuLimit: "300m" }]),
      );
      lab.load.set(id, { usage: 300, throttled: 600 });
      // The agent read the cgroup tree and published; the controller, leader
      // through the Lease, resized the pod to the allocation.
      const logsOf = () => processes.map(([c, , l]) => `--- ${c}:\n${l.join("")}`).join("\n");
      const pod = await eventually("web resized to its allocation", async () => {
        const pa = await lab.pa("web");
        const allocated = pa?.spec?.containers?.[0]?.cpuLimit;
        if (allocated === undefined || millicores(allocated) <= 300) return undefined;
        const p = await lab.core.readNamespacedPod({ name: "web", namespace: NS });
        const limit = p.spec?.containers[0].resources?.limits?.cpu;
        return limit !== undefined && millicores(limit) === millicores(allocated) ? p : undefined;
      }, 30_000).catch((error) => {
        throw new Error(`${error.message}\n${logsOf()}`);
      });
      assert.ok(millicores(pod.spec!.containers[0].resources!.limits!.cpu!) > 300);
      for (const [component, port] of [["controller", 8080], ["agent", 8081]] as const) {
        const ready = await fetch(`http://127.0.0.1:${port}/readyz`);
        assert.equal(ready.status, 200, `${component} ready`);
        await ready.body?.cancel();
      }
      for (const [component, , logs] of processes) {
        const text = logs.join("");
        assert.doesNotMatch(text, /NotCapable|Requires \w+ access/, `${component}: ${text}`);
      }
    } finally {
      for (const [, child] of processes) {
        try {
          child.kill("SIGTERM");
        } catch {
          // already gone
        }
        await child.status;
      }
      await lab.stop();
      for (const dir of created) await Deno.remove(dir).catch(() => {});
      await Deno.remove(work, { recursive: true });
    }
  },
);
