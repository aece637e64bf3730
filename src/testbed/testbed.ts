/**
 * The test bed: a real Kubernetes control plane on this machine — etcd,
 * kube-apiserver and kube-controller-manager v1.35 on free loopback ports —
 * with generated PKI, RBAC, a token file for the project's identities, and
 * kubeconfigs for each. A lab and test component; never deployed.
 *
 * @module
 */
import { join } from "node:path";
import { generatePki, type Pki } from "./_pki.ts";

/** A client identity of the test bed. */
export interface Identity {
  /** User name as the API server sees it. */
  user: string;
  /** Groups (besides system:authenticated). */
  groups: string[];
  /** Bearer token (absent for the client-certificate identity). */
  token?: string;
  /** A kubeconfig file for this identity. */
  kubeconfig: string;
}

/** Identities the test bed provisions. */
export interface Identities {
  /** Cluster admin by token (`system:masters`). */
  admin: Identity;
  /** Cluster admin by client certificate (`O=system:masters`). */
  certAdmin: Identity & { clientCert: string; clientKey: string };
  /** The agent's ServiceAccount, `system:serviceaccount:mbcas-system:mbcas-agent`. */
  agent: Identity;
  /** The controller's ServiceAccount, `system:serviceaccount:mbcas-system:mbcas-controller`. */
  controller: Identity;
  /** An authenticated user with no roles at all. */
  nobody: Identity;
  /** Identities asked for with {@link TestbedOptions.extraIdentities}. */
  extra: Record<string, Identity>;
}

/** Options for {@link startTestbed}. */
export interface TestbedOptions {
  /** Progress lines (build, start-up); default: nothing. */
  log?: (line: string) => void;
  /** Extra kube-apiserver flags. */
  apiserverFlags?: string[];
  /**
   * Where the API server listens and what it advertises (default 127.0.0.1).
   * A real node's pods reach it there, through the `kubernetes` Service.
   */
  address?: string;
  /** Service IP range (default 10.0.0.0/24). */
  serviceClusterIpRange?: string;
  /** Extra subject alternative names of the serving certificate, e.g. `IP:10.0.0.1`. */
  servingSans?: string[];
  /**
   * A cluster with real nodes: Node and RBAC authorization, the ServiceAccount
   * and NodeRestriction admission plugins, the lease endpoint reconciler, and
   * the controllers a node needs (endpoint slices, node lifecycle, jobs).
   * Default false: the test bed of simulated nodes.
   */
  realNodes?: boolean;
  /** Where to make the test bed's temp directory (default: the system's temp directory). */
  parentDir?: string;
  /** More token identities (`name` → user and groups), written like the built-in ones. */
  extraIdentities?: Record<string, { user: string; groups: string[] }>;
}

/** A running control plane. */
export interface Testbed extends AsyncDisposable {
  /** `https://127.0.0.1:<port>`. */
  url: string;
  /** The CA certificate file clients must trust. */
  caFile: string;
  /** The CA certificate (PEM). */
  caPem: string;
  /** The temp directory holding data, PKI, logs and kubeconfigs. */
  dir: string;
  /** Identities with their kubeconfigs. */
  identities: Identities;
  /** Time from the call to `/readyz` answering ok, milliseconds. */
  startupMs: number;
  /** Stops the API server (etcd and the controller-manager keep running). */
  stopApiserver(): Promise<void>;
  /** Starts the API server again on the same port and waits for `/readyz`. */
  startApiserver(): Promise<void>;
  /** Stops etcd (its data stays; the API server keeps running and fails its requests). */
  stopEtcd(): Promise<void>;
  /** Starts etcd again on the same ports and data and waits for its `/health`. */
  startEtcd(): Promise<void>;
  /** Stops everything and deletes the temp directory. Idempotent. */
  stop(): Promise<void>;
}

/**
 * Runs one of the project's cached-build scripts (`scripts/<name>.sh`, which
 * print their bin directory on the last line of stdout), passing its
 * `[<name>]` progress lines to `log` as they come; resolves to that
 * directory, or fails with the tail of its stderr.
 */
export async function runBuildScript(
  name: string,
  log: (line: string) => void = () => {},
): Promise<string> {
  const script = new URL(`../../scripts/${name}.sh`, import.meta.url).pathname;
  const child = new Deno.Command("bash", { args: [script], stdout: "piped", stderr: "piped" })
    .spawn();
  const stderr = (async () => {
    let text = "";
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
      text += chunk;
      for (const line of chunk.split("\n")) if (line.startsWith(`[${name}]`)) log(line);
    }
    return text;
  })();
  const stdout = new Response(child.stdout).text();
  const [status, err, text] = await Promise.all([child.status, stderr, stdout]);
  if (!status.success) {
    throw new Error(
      `scripts/${name}.sh failed:\n${err.split("\n").slice(-30).join("\n")}`,
    );
  }
  return text.trim().split("\n").pop()!;
}

/** Builds (once, cached) and returns the directory with etcd, kube-apiserver, kube-controller-manager, kwok. */
export function ensureBinaries(log: (line: string) => void = () => {}): Promise<string> {
  return runBuildScript("build_testbed", log);
}

/** Starts etcd, kube-apiserver and kube-controller-manager; resolves when the API server is ready. */
export async function startTestbed(options: TestbedOptions = {}): Promise<Testbed> {
  const log = options.log ?? (() => {});
  const started = performance.now();
  const bin = await ensureBinaries(log);
  const dir = await Deno.makeTempDir({ prefix: "mbcas-testbed-", dir: options.parentDir });
  const processes = new Map<string, Deno.ChildProcess>();
  startReaper(dir);
  try {
    const address = options.address ?? "127.0.0.1";
    const pki = await generatePki(dir, [
      ...(address === "127.0.0.1" ? [] : [`IP:${address}`]),
      ...(options.servingSans ?? []),
    ]);
    const caPem = await Deno.readTextFile(pki.caCert);
    const [etcdClient, etcdPeer, apiPort] = [freePort(), freePort(), freePort(address)];
    const url = `https://${address}:${apiPort}`;
    const identities = await writeIdentities(dir, url, pki, options.extraIdentities ?? {});
    const realNodes = options.realNodes ?? false;

    const spawn = (name: string, exe: string, args: string[]) => {
      const open = () =>
        Deno.openSync(join(dir, `${name}.log`), { write: true, create: true, append: true });
      // In a session of its own (setsid execs in place: same pid), so a terminal's
      // Ctrl-C reaches the program that started the test bed, which stops it in order.
      const child = new Deno.Command("setsid", {
        args: [join(bin, exe), ...args],
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      // Separate handles: a stream can only be piped into once, and an unread pipe blocks the child.
      child.stdout.pipeTo(open().writable).catch(() => {});
      child.stderr.pipeTo(open().writable).catch(() => {});
      processes.set(name, child);
      writePids(dir, processes);
      return child;
    };

    const etcdArgs = [
      `--data-dir=${join(dir, "etcd")}`,
      `--listen-client-urls=http://127.0.0.1:${etcdClient}`,
      `--advertise-client-urls=http://127.0.0.1:${etcdClient}`,
      `--listen-peer-urls=http://127.0.0.1:${etcdPeer}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${etcdPeer}`,
      `--initial-cluster=default=http://127.0.0.1:${etcdPeer}`,
      "--unsafe-no-fsync",
      "--log-level=warn",
    ];
    const startEtcd = async () => {
      const child = spawn("etcd", "etcd", etcdArgs);
      await waitFor(
        `etcd on :${etcdClient}`,
        async () => {
          const r = await fetch(`http://127.0.0.1:${etcdClient}/health`);
          return r.ok && (await r.json()).health === "true";
        },
        child,
        join(dir, "etcd.log"),
      );
    };
    await startEtcd();

    const apiserverArgs = [
      `--etcd-servers=http://127.0.0.1:${etcdClient}`,
      `--cert-dir=${join(dir, "apiserver-certs")}`,
      `--tls-cert-file=${pki.servingCert}`,
      `--tls-private-key-file=${pki.servingKey}`,
      `--client-ca-file=${pki.caCert}`,
      `--secure-port=${apiPort}`,
      `--bind-address=${address}`,
      `--advertise-address=${address}`,
      `--service-cluster-ip-range=${options.serviceClusterIpRange ?? "10.0.0.0/24"}`,
      `--authorization-mode=${realNodes ? "Node,RBAC" : "RBAC"}`,
      `--token-auth-file=${join(dir, "tokens.csv")}`,
      "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
      `--service-account-key-file=${pki.serviceAccountPublicKey}`,
      `--service-account-signing-key-file=${pki.serviceAccountKey}`,
      ...(realNodes
        ? [
          "--enable-admission-plugins=NodeRestriction",
          `--kubelet-client-certificate=${pki.adminClientCert}`,
          `--kubelet-client-key=${pki.adminClientKey}`,
          // kubectl exec/logs: the node's InternalIP, not its name in DNS.
          "--kubelet-preferred-address-types=InternalIP",
        ]
        : ["--disable-admission-plugins=ServiceAccount", "--endpoint-reconciler-type=none"]),
      "--profiling=false",
      ...(options.apiserverFlags ?? []),
    ];
    const admin = identities.admin.token!;
    const client = Deno.createHttpClient({ caCerts: [caPem] });
    const startApiserver = async () => {
      const child = spawn("kube-apiserver", "kube-apiserver", apiserverArgs);
      await waitFor(
        `kube-apiserver on :${apiPort}`,
        async () => {
          const r = await fetch(`${url}/readyz`, {
            client,
            headers: { authorization: `Bearer ${admin}` },
          });
          await r.body?.cancel();
          return r.ok;
        },
        child,
        join(dir, "kube-apiserver.log"),
      );
    };
    await startApiserver();
    log(`kube-apiserver ready at ${url}`);

    spawn("kube-controller-manager", "kube-controller-manager", [
      `--kubeconfig=${identities.admin.kubeconfig}`,
      "--controllers=garbage-collector-controller,namespace-controller,serviceaccount-controller," +
      "serviceaccount-token-controller,root-ca-certificate-publisher-controller,deployment-controller," +
      "replicaset-controller,daemonset-controller,disruption-controller," +
      "validatingadmissionpolicy-status-controller" +
      (realNodes
        ? ",endpointslice-controller,endpointslice-mirroring-controller,node-lifecycle-controller," +
          "job-controller,pod-garbage-collector-controller"
        : ""),
      `--service-account-private-key-file=${pki.serviceAccountKey}`,
      `--root-ca-file=${pki.caCert}`,
      "--leader-elect=false",
      "--use-service-account-credentials=false",
      "--secure-port=0",
    ]);
    const startupMs = performance.now() - started;

    let stopped = false;
    const stopProcess = async (name: string) => {
      const child = processes.get(name);
      if (child === undefined) return;
      processes.delete(name);
      writePids(dir, processes);
      await terminate(child);
    };
    const testbed: Testbed = {
      url,
      caFile: pki.caCert,
      caPem,
      dir,
      identities,
      startupMs,
      stopApiserver: () => stopProcess("kube-apiserver"),
      startApiserver,
      stopEtcd: () => stopProcess("etcd"),
      startEtcd,
      async stop() {
        if (stopped) return;
        stopped = true;
        client.close();
        for (const name of ["kube-controller-manager", "kube-apiserver", "etcd"]) {
          await stopProcess(name);
        }
        await Deno.remove(dir, { recursive: true }).catch(() => {});
      },
      [Symbol.asyncDispose]() {
        return this.stop();
      },
    };
    return testbed;
  } catch (error) {
    for (const child of processes.values()) await terminate(child);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw error;
  }
}

async function writeIdentities(
  dir: string,
  url: string,
  pki: Pki,
  extra: Record<string, { user: string; groups: string[] }>,
): Promise<Identities> {
  const token = () => crypto.randomUUID().replaceAll("-", "");
  const sa = (name: string) => ({
    user: `system:serviceaccount:mbcas-system:${name}`,
    groups: ["system:serviceaccounts", "system:serviceaccounts:mbcas-system"],
  });
  const specs = {
    admin: { user: "mbcas-admin", groups: ["system:masters"] },
    agent: sa("mbcas-agent"),
    controller: sa("mbcas-controller"),
    nobody: { user: "mbcas-nobody", groups: [] as string[] },
  };
  const lines: string[] = [];
  const result: Partial<Identities> = { extra: {} };
  const write = async (name: string, spec: { user: string; groups: string[] }) => {
    const t = token();
    lines.push(`${t},${spec.user},${crypto.randomUUID()},"${spec.groups.join(",")}"`);
    const kubeconfig = join(dir, `${name}.kubeconfig`);
    await Deno.writeTextFile(kubeconfig, kubeconfigYaml(url, pki.caCert, name, `    token: ${t}`));
    return { ...spec, token: t, kubeconfig };
  };
  for (const [name, spec] of Object.entries(specs)) {
    (result as Record<string, Identity>)[name] = await write(name, spec);
  }
  for (const [name, spec] of Object.entries(extra)) result.extra![name] = await write(name, spec);
  await Deno.writeTextFile(join(dir, "tokens.csv"), lines.join("\n") + "\n");
  const certKubeconfig = join(dir, "cert-admin.kubeconfig");
  await Deno.writeTextFile(
    certKubeconfig,
    kubeconfigYaml(
      url,
      pki.caCert,
      "cert-admin",
      `    client-certificate: ${pki.adminClientCert}\n    client-key: ${pki.adminClientKey}`,
    ),
  );
  result.certAdmin = {
    user: "mbcas-cert-admin",
    groups: ["system:masters"],
    kubeconfig: certKubeconfig,
    clientCert: pki.adminClientCert,
    clientKey: pki.adminClientKey,
  };
  return result as Identities;
}

function kubeconfigYaml(url: string, caFile: string, name: string, credentials: string): string {
  return `apiVersion: v1
kind: Config
clusters:
- name: testbed
  cluster:
    server: ${url}
    certificate-authority: ${caFile}
users:
- name: ${name}
  user:
${credentials}
contexts:
- name: ${name}
  context:
    cluster: testbed
    user: ${name}
current-context: ${name}
`;
}

/** A free TCP port on `hostname` (default loopback; bound then released). */
export function freePort(hostname = "127.0.0.1"): number {
  const listener = Deno.listen({ hostname, port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/**
 * Waits until `probe` answers true, polling every 100 ms; fails early when
 * `child` exits, with the tail of its log.
 */
export async function waitFor(
  what: string,
  probe: () => Promise<boolean>,
  child: Deno.ChildProcess,
  logFile: string,
  timeoutMs = 60_000,
): Promise<void> {
  let exited: Deno.CommandStatus | null = null;
  child.status.then((s) => (exited = s));
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    if (exited !== null) break;
    try {
      if (await probe()) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  let tail = "";
  try {
    tail = (await Deno.readTextFile(logFile)).split("\n").slice(-25).join("\n");
  } catch {
    // no log
  }
  throw new Error(
    `${what} did not become ready${exited ? ` (exited: ${JSON.stringify(exited)})` : ""}:\n${tail}`,
  );
}

/** Stops a child process: SIGTERM, then SIGKILL after `graceMs`; resolves when it has exited. */
export async function terminate(child: Deno.ChildProcess, graceMs = 5000): Promise<void> {
  try {
    child.kill("SIGTERM");
  } catch {
    return; // already exited
  }
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch {
      // gone
    }
  }, graceMs);
  await child.status;
  clearTimeout(timer);
}

function writePids(dir: string, processes: Map<string, Deno.ChildProcess>): void {
  Deno.writeTextFileSync(
    join(dir, "pids"),
    [...processes.values()].map((p) => p.pid).join("\n") + "\n",
  );
}

/**
 * A detached shell that outlives a crashed test process: once this process is
 * gone and the test bed's directory still exists, it kills every process
 * listed in `<dir>/pids` and removes the directory.
 */
function startReaper(dir: string): void {
  const script = 'while kill -0 "$0" 2>/dev/null && [ -d "$1" ]; do sleep 1; done; ' +
    'if [ -d "$1" ]; then for p in $(cat "$1/pids" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done; rm -rf "$1"; fi';
  const child = new Deno.Command("setsid", {
    args: ["sh", "-c", script, String(Deno.pid), dir],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  child.unref();
}
