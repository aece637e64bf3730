/**
 * A real single-node Kubernetes cluster on this machine: the test bed's
 * control plane (etcd, kube-apiserver, kube-controller-manager) on the
 * node's bridge address, kube-scheduler, containerd 2.x with runc, the CNI
 * bridge plugin, the kubelet, kube-proxy and CoreDNS. Everything it writes
 * lives under one temporary directory; what the node's components change
 * outside it (cgroups in every hierarchy, mounts, network namespaces and
 * links, iptables, sysctls, a few well-known directories) is recorded before
 * the start and restored by {@link LocalCluster.stop}, on a failed start, and
 * by a reaper process when the process that started it dies.
 *
 * A lab and test component; never deployed.
 *
 * @module
 */
import { join } from "node:path";
import { runBuildScript, startTestbed, terminate, type Testbed, waitFor } from "../testbed/mod.ts";
import {
  type ClusterPlan,
  cniConfig,
  containerdConfig,
  corefile,
  defaultPlan,
  dnsObjects,
  guardRuleset,
  hostResolvConf,
  kubeletConfig,
  kubeProxyConfig,
  ownedByCluster,
  paths,
} from "./_plan.ts";
import { type HostSnapshot, restoreHost, snapshotHost, unmountBelow } from "./_host_state.ts";
import { killShims } from "./_shims.ts";
import { runCommand } from "./_command.ts";

const REAPER = new URL("./_reaper.ts", import.meta.url).pathname;

/** Options of {@link startLocalCluster}. */
export interface LocalClusterOptions {
  /** Progress lines; default: nothing. */
  log?: (line: string) => void;
  /** The kubelet enforces CPU limits with CFS quota (default true; false is "no limits"). */
  cpuCfsQuota?: boolean;
  /** OCI image archives to import into the node's containerd before the kubelet starts. */
  imageArchives?: string[];
  /** Where to make the cluster's directory (default: the system's temp directory). */
  parentDir?: string;
}

/** A running local cluster. */
export interface LocalCluster extends AsyncDisposable {
  /** Addresses, names and paths. */
  plan: ClusterPlan;
  /** The control plane (URL, CA, identities). */
  testbed: Testbed;
  /** The cluster admin's kubeconfig (a token of `system:masters`). */
  kubeconfig: string;
  /** Directory of the node's binaries (kubelet, containerd, ctr, kubectl, …). */
  bin: string;
  /** Time from the call until the node was Ready and cluster DNS answered, ms. */
  startupMs: number;
  /** Runs `ctr` against the node's containerd in the `k8s.io` namespace; resolves to stdout. */
  ctr(args: string[]): Promise<string>;
  /** Imports OCI image archives into the node's containerd. */
  importImages(archives: string[]): Promise<void>;
  /** Tears everything down and restores the machine. Idempotent. */
  stop(): Promise<void>;
}

/** Builds (once, cached) the node's binaries and returns their directory. */
export function ensureNodeBinaries(log: (line: string) => void = () => {}): Promise<string> {
  return runBuildScript("build_node", log);
}

/** What the local cluster needs from the machine and cannot build: why it cannot start here, or null. */
export function localClusterMissing(plan: ClusterPlan = defaultPlan("")): string | null {
  if (Deno.build.os !== "linux") return "the local cluster runs on Linux only";
  if (Deno.uid() !== 0) return "the local cluster needs root";
  const tools = [
    plan.runc,
    `${plan.cniBinDir}/bridge`,
    `${plan.cniBinDir}/host-local`,
    `${plan.cniBinDir}/loopback`,
  ];
  for (const tool of tools) {
    try {
      Deno.statSync(tool);
    } catch {
      return `${tool} is missing: install Debian's runc and containernetworking-plugins ` +
        "(scripts/install_node_packages.sh)";
    }
  }
  const commands = ["iptables", "iptables-save", "ip6tables-save", "nft", "ip", "mount", "setsid"];
  for (const command of commands) {
    if (which(command) === null) {
      return `${command} is missing: scripts/install_node_packages.sh installs it`;
    }
  }
  // kube-proxy's and the kubelet's rules must show in the nftables ruleset,
  // which is what the teardown restores.
  const version = new Deno.Command("iptables", { args: ["--version"], stdout: "piped" })
    .outputSync();
  if (!new TextDecoder().decode(version.stdout).includes("nf_tables")) {
    return "iptables is not the nf_tables variant (update-alternatives --set iptables " +
      "/usr/sbin/iptables-nft): the teardown could not see kube-proxy's rules";
  }
  return null;
}

/** Starts the local cluster; resolves when the node is Ready and cluster DNS answers. */
export async function startLocalCluster(options: LocalClusterOptions = {}): Promise<LocalCluster> {
  const log = options.log ?? (() => {});
  const started = performance.now();
  const missing = localClusterMissing();
  if (missing !== null) throw new Error(`cannot start the local cluster: ${missing}`);
  const bin = await ensureNodeBinaries(log);
  if (linkExists(defaultPlan("").bridge)) {
    throw new Error(
      `cannot start the local cluster: the bridge ${defaultPlan("").bridge} exists, so another ` +
        "local cluster is running (stop it first; a crashed one is cleaned up by its reaper within seconds)",
    );
  }
  const dir = await Deno.makeTempDir({ prefix: "mbcas-cluster-", dir: options.parentDir });
  const plan = defaultPlan(dir, { cpuCfsQuota: options.cpuCfsQuota ?? true });
  const p = paths(plan.dir);
  let before: HostSnapshot;
  try {
    before = await snapshotHost();
    await Deno.writeTextFile(join(dir, "host-before.json"), JSON.stringify(before));
  } catch (error) {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw error;
  }
  const processes = new Map<string, Deno.ChildProcess>();
  const writePids = () =>
    Deno.writeTextFileSync(
      join(dir, "pids"),
      [...processes.values()].map((c) => c.pid).join("\n") + "\n",
    );
  startReaper(dir);
  const env = { PATH: `${bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin` };
  const spawn = (name: string, exe: string, args: string[]) => {
    const open = () =>
      Deno.openSync(join(dir, `${name}.log`), { write: true, create: true, append: true });
    const child = new Deno.Command("setsid", {
      args: [exe, ...args],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      env,
      clearEnv: true,
    }).spawn();
    child.stdout.pipeTo(open().writable).catch(() => {});
    child.stderr.pipeTo(open().writable).catch(() => {});
    processes.set(name, child);
    writePids();
    return child;
  };
  const ctr = async (args: string[]) => {
    const out = await new Deno.Command(join(bin, "ctr"), {
      args: ["--address", p.containerdSocket, "--namespace", "k8s.io", ...args],
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(120_000),
    }).output();
    if (!out.success) {
      throw new Error(
        `ctr ${args.join(" ")} failed: ${new TextDecoder().decode(out.stderr).trim()}`,
      );
    }
    return new TextDecoder().decode(out.stdout);
  };
  const importImages = async (archives: string[]) => {
    for (const archive of archives) {
      log(`importing ${archive}`);
      await ctr(["images", "import", "--no-unpack=false", archive]);
    }
  };

  let testbed: Testbed | null = null;
  let stopping: Promise<void> | null = null;
  const teardown = async () => {
    log("stopping the local cluster");
    // Every step runs, whatever an earlier one did: a failed step is logged.
    const step = async (what: string, fn: () => Promise<unknown>) => {
      try {
        await fn();
      } catch (error) {
        log(`teardown: ${what}: ${(error as Error).message}`);
      }
    };
    const stopProcess = (name: string) =>
      step(`stopping ${name}`, async () => {
        const child = processes.get(name);
        if (child === undefined) return;
        processes.delete(name);
        writePids();
        await terminate(child, 10_000);
      });
    await stopProcess("kube-scheduler");
    if (testbed !== null && processes.has("kubelet")) {
      // Pods deleted through the API are torn down by the kubelet through the
      // CRI, so CNI releases their addresses and links in order.
      await step("deleting pods", () => deleteAllPods(testbed!));
      await step(
        "waiting for the containers to stop",
        () => waitUntil(async () => (await ctr(["tasks", "ls", "-q"])).trim() === "", 20_000),
      );
    }
    await stopProcess("kube-proxy");
    await stopProcess("kubelet");
    await stopProcess("coredns");
    if (processes.has("containerd")) await step("killing containers", () => killAllContainers(ctr));
    await stopProcess("containerd");
    await step("killing shims", () => killShims(p.containerdSocket));
    await step("stopping the control plane", async () => await testbed?.stop());
    await step(
      "restoring the machine",
      () => restoreHost(before, { log, filter: ownedByCluster(plan) }),
    );
    await step(`unmounting what is left below ${dir}`, () => unmountBelow(dir, log));
    await step(`removing ${dir}`, () => Deno.remove(dir, { recursive: true }));
    log("the local cluster is stopped and the machine restored");
  };
  // Idempotent, also when asked again while it runs (a second Ctrl-C).
  const stop = () => stopping ??= teardown();

  try {
    // The bridge first: the API server and CoreDNS listen on its address.
    await run("ip", ["link", "add", plan.bridge, "type", "bridge"]);
    await run("ip", [
      "addr",
      "add",
      `${plan.bridgeAddress}/${plan.podPrefixLength}`,
      "dev",
      plan.bridge,
    ]);
    await run("ip", ["link", "set", plan.bridge, "up"]);
    await run("nft", ["-f", "-"], guardRuleset(plan));

    testbed = await startTestbed({
      log,
      parentDir: dir,
      address: plan.bridgeAddress,
      serviceClusterIpRange: plan.serviceCidr,
      servingSans: [
        `IP:${plan.apiServiceIp}`,
        "DNS:kubernetes",
        "DNS:kubernetes.default",
        "DNS:kubernetes.default.svc.cluster.local",
      ],
      realNodes: true,
      extraIdentities: {
        kubelet: { user: `system:node:${plan.nodeName}`, groups: ["system:nodes"] },
        "kube-proxy": { user: "system:kube-proxy", groups: [] },
        "kube-scheduler": { user: "system:kube-scheduler", groups: [] },
      },
    });
    const tb = testbed;
    const ids = tb.identities;
    spawn("kube-scheduler", join(bin, "kube-scheduler"), [
      `--kubeconfig=${ids.extra["kube-scheduler"].kubeconfig}`,
      `--authentication-kubeconfig=${ids.extra["kube-scheduler"].kubeconfig}`,
      `--authorization-kubeconfig=${ids.extra["kube-scheduler"].kubeconfig}`,
      "--leader-elect=false",
      "--bind-address=127.0.0.1",
      "--secure-port=0",
    ]);

    for (const d of [p.cniConfDir, p.cniIpamDir, p.kubeletRoot, p.podLogs, p.images]) {
      await Deno.mkdir(d, { recursive: true });
    }
    await Deno.mkdir(p.containerdRoot, { recursive: true });
    await Deno.mkdir(join(dir, "containerd", "tmp"), { recursive: true });
    await Deno.writeTextFile(p.containerdConfig, containerdConfig(plan));
    const containerd = spawn("containerd", join(bin, "containerd"), [
      "--config",
      p.containerdConfig,
    ]);
    await waitFor(
      "containerd",
      async () => {
        await ctr(["version"]);
        return true;
      },
      containerd,
      join(dir, "containerd.log"),
    );
    await importImages(options.imageArchives ?? []);
    await Deno.writeTextFile(join(p.cniConfDir, "10-mbcas.conflist"), cniConfig(plan));
    await Deno.writeTextFile(p.resolvConf, hostResolvConf());
    await Deno.writeTextFile(p.kubeletConfig, kubeletConfig(plan, tb.caFile));
    const kubelet = spawn("kubelet", join(bin, "kubelet"), [
      `--config=${p.kubeletConfig}`,
      `--kubeconfig=${ids.extra.kubelet.kubeconfig}`,
      `--root-dir=${p.kubeletRoot}`,
      `--cert-dir=${join(p.kubeletRoot, "pki")}`,
      `--node-ip=${plan.bridgeAddress}`,
      `--hostname-override=${plan.nodeName}`,
      "--v=1",
    ]);
    await Deno.writeTextFile(
      p.kubeProxyConfig,
      kubeProxyConfig(plan, ids.extra["kube-proxy"].kubeconfig),
    );
    spawn("kube-proxy", join(bin, "kube-proxy"), [`--config=${p.kubeProxyConfig}`, "--v=1"]);
    await Deno.writeTextFile(p.corefile, corefile(plan, ids.admin.kubeconfig));
    const coredns = spawn("coredns", join(bin, "coredns"), ["-conf", p.corefile]);
    for (const object of dnsObjects(plan)) await apply(tb, object);

    await waitFor(
      "kubelet (node Ready)",
      async () => {
        const node = await api(tb, "GET", `/api/v1/nodes/${plan.nodeName}`);
        const ready = node.status?.conditions?.find((c: { type: string }) => c.type === "Ready");
        const tainted = (node.spec?.taints ?? []).some((t: { key: string }) =>
          t.key === "node.kubernetes.io/not-ready"
        );
        return ready?.status === "True" && !tainted;
      },
      kubelet,
      join(dir, "kubelet.log"),
      120_000,
    );
    await waitFor(
      "coredns",
      async () => {
        const r = await fetch(`http://${plan.bridgeAddress}:8181/ready`, {
          signal: AbortSignal.timeout(2_000),
        });
        await r.body?.cancel();
        return r.ok;
      },
      coredns,
      join(dir, "coredns.log"),
    );
    const startupMs = performance.now() - started;
    log(`local cluster ready in ${(startupMs / 1000).toFixed(1)} s`);
    const cluster: LocalCluster = {
      plan,
      testbed: tb,
      kubeconfig: ids.admin.kubeconfig,
      bin,
      startupMs,
      ctr,
      importImages,
      stop,
      [Symbol.asyncDispose]: stop,
    };
    return cluster;
  } catch (error) {
    await stop().catch((e) => log(`teardown after a failed start: ${e}`));
    throw error;
  }
}

/**
 * A request to the API server as the cluster admin. The body is sent as JSON
 * with `contentType` (default: server-side apply for PATCH, JSON otherwise);
 * a JSON answer is parsed, any other is returned as text.
 */
export async function api(
  testbed: Testbed,
  method: string,
  path: string,
  body?: unknown,
  contentType?: string,
  // deno-lint-ignore no-explicit-any
): Promise<any> {
  const client = Deno.createHttpClient({ caCerts: [testbed.caPem] });
  try {
    const r = await fetch(`${testbed.url}${path}`, {
      method,
      client,
      headers: {
        authorization: `Bearer ${testbed.identities.admin.token}`,
        "content-type": contentType ??
          (method === "PATCH" ? "application/apply-patch+yaml" : "application/json"),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(15_000),
    });
    const text = await r.text();
    if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${text.slice(0, 500)}`);
    if (text === "") return null;
    return (r.headers.get("content-type") ?? "").includes("json") ? JSON.parse(text) : text;
  } finally {
    client.close();
  }
}

async function apply(testbed: Testbed, object: Record<string, unknown>): Promise<void> {
  const meta = object.metadata as { name: string; namespace?: string };
  const [group, version] = String(object.apiVersion).includes("/")
    ? String(object.apiVersion).split("/")
    : [null, String(object.apiVersion)];
  const plural = `${String(object.kind).toLowerCase()}s`.replace(/ys$/, "ies");
  const base = group === null ? `/api/${version}` : `/apis/${group}/${version}`;
  const ns = meta.namespace === undefined ? "" : `/namespaces/${meta.namespace}`;
  await api(
    testbed,
    "PATCH",
    `${base}${ns}/${plural}/${meta.name}?fieldManager=mbcas-local-cluster&force=true`,
    object,
  );
}

async function deleteAllPods(testbed: Testbed): Promise<void> {
  const list = await api(testbed, "GET", "/api/v1/pods");
  for (const pod of list.items ?? []) {
    await api(
      testbed,
      "DELETE",
      `/api/v1/namespaces/${pod.metadata.namespace}/pods/${pod.metadata.name}?gracePeriodSeconds=0`,
    ).catch(() => {});
  }
}

async function killAllContainers(ctr: (args: string[]) => Promise<string>): Promise<void> {
  const tasks = (await ctr(["tasks", "ls", "-q"])).split("\n").filter((t) => t !== "");
  for (const task of tasks) {
    await ctr(["tasks", "kill", "--signal", "SIGKILL", task]).catch(() => {});
  }
  await waitUntil(async () => (await ctr(["tasks", "ls", "-q"])).trim() === "", 5_000)
    .catch(() => {});
  for (const task of tasks) await ctr(["tasks", "delete", "--force", task]).catch(() => {});
  const containers = (await ctr(["containers", "ls", "-q"])).split("\n").filter((c) => c !== "");
  for (const c of containers) await ctr(["containers", "delete", c]).catch(() => {});
}

/**
 * A detached process that outlives a crashed cluster process: once the
 * process that started the cluster is gone and the cluster's directory is
 * still there, it kills what `<dir>/pids` lists and restores the machine
 * from `<dir>/host-before.json` (src/cluster/_reaper.ts).
 */
function startReaper(dir: string): void {
  const child = new Deno.Command("setsid", {
    args: [Deno.execPath(), "run", "--no-prompt", "--allow-all", REAPER, String(Deno.pid), dir],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  child.unref();
}

async function run(command: string, args: string[], stdin?: string): Promise<void> {
  const result = await runCommand(command, args, { stdin });
  if (!result.ok) throw new Error(`${command} ${args.join(" ")} failed: ${result.stderr}`);
}

function linkExists(name: string): boolean {
  try {
    Deno.statSync(`/sys/class/net/${name}`);
    return true;
  } catch {
    return false;
  }
}

function which(command: string): string | null {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":").concat(["/usr/sbin", "/sbin"])) {
    try {
      Deno.statSync(join(dir, command));
      return join(dir, command);
    } catch {
      // keep looking
    }
  }
  return null;
}

async function waitUntil(probe: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    try {
      if (await probe()) return;
    } catch {
      // not yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`not done after ${timeoutMs} ms`);
}
