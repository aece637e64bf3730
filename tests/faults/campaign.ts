// deno-lint-ignore-file no-explicit-any -- PodAllocations are read and written as loose JSON
/**
 * `deno task faults`: a seeded fault campaign against MBCAS as users run it
 * (the agent and two leader-electing controller replicas as processes of
 * `src/agent/main.ts` and `src/controller/main.ts`) on the test bed: a real
 * kube-apiserver, etcd and controller-manager v1.35, the kubelet simulator for
 * `node-a` and `node-b`, and a cgroup v2 fixture tree whose counters advance
 * with a churning load. MBCAS reaches the API server through a proxy that can
 * stall. Faults are injected in a seeded order; all the while the campaign
 * polls every pod from the API and checks invariants (tests/faults/_checks.ts);
 * after each fault it measures recovery: from the end of the fault until a
 * new, throttled probe pod has gone through the agent's informer and market,
 * a published PodAllocation, the controller's raise and the (simulated)
 * kubelet. The same measure without a fault first gives the control figure.
 * It ends with undeploy's sequence in the middle of the churn, whose recovery
 * is the time until every pod is back at its declared limits.
 *
 * Usage: deno task faults [--seed N] [--rounds N] [--short] [--stall-seconds S]
 *
 * The kubelet is simulated: "reported" limits are the pod status the
 * simulator writes, not a kernel's cgroup files (the real node's tests cover
 * the kernel side).
 */
import * as k8s from "@kubernetes/client-node";
import { join } from "node:path";
import { GROUP, parseMillicores, PLURAL, VERSION } from "../../src/api/mod.ts";
import { CONTROLLER_OPTIONS } from "../../src/controller/mod.ts";
import { freePort, KubeletSimulator, terminate } from "../../src/testbed/mod.ts";
import { burstablePod } from "../k8s/_helpers.ts";
import { taskRunFlags } from "../_support/task_flags.ts";
import { type Load, NodeLab, NS } from "../agent/_node_lab.ts";
import {
  budgetViolations,
  campaignTable,
  faultOrder,
  type FaultResult,
  type PodBounds,
  type PodSnapshot,
  resizeTimes,
  restoreViolations,
  seededRandom,
  snapshotViolations,
  type Violation,
} from "./_checks.ts";
import { StallProxy } from "./_proxy.ts";
import { containerId, zeroCounters } from "../cgroup/_fixtures.ts";

const AGENT_MAIN = new URL("../../src/agent/main.ts", import.meta.url).pathname;
const CONTROLLER_MAIN = new URL("../../src/controller/main.ts", import.meta.url).pathname;

/** Every fault the campaign knows, in the order of the table in docs/development.md. */
export const FAULTS = [
  "agent-killed-while-publishing",
  "leader-killed-between-patch-and-status",
  "both-controllers-killed",
  "apiserver-restart",
  "etcd-restart",
  "apiserver-stalled",
  "hostile-allocations",
  "cgroup-vanishes-and-returns",
  "counter-reset",
  "opt-out-during-churn",
  "undeploy-during-churn",
] as const;
/** One fault. */
export type Fault = typeof FAULTS[number];

/** How a campaign runs. */
export interface CampaignOptions {
  seed: number;
  /** Rounds of every fault but undeploy (which ends the campaign once). */
  rounds: number;
  /** How long the API server stays stalled, seconds. */
  stallSeconds: number;
  /** How long the API server and etcd stay down, seconds. */
  outageSeconds: number;
  /** Give up waiting for a recovery after this long, seconds. */
  recoveryTimeoutSeconds: number;
  /** Progress lines. */
  log: (line: string) => void;
  /** Aborts the campaign (Ctrl-C): it stops everything it started and throws. */
  signal?: AbortSignal;
}

/** The control row: the recovery measure without a fault. */
export const CONTROL = "no fault (control)";

/** The full campaign: three rounds, 30 s stalls (about 6 minutes). */
export const FULL: Omit<CampaignOptions, "seed" | "log"> = {
  rounds: 3,
  stallSeconds: 30,
  outageSeconds: 5,
  recoveryTimeoutSeconds: 60,
};
/** The short campaign CI runs: one round, shorter outages (about 1½ minutes). */
export const SHORT: Omit<CampaignOptions, "seed" | "log"> = {
  rounds: 1,
  stallSeconds: 15,
  outageSeconds: 2,
  recoveryTimeoutSeconds: 45,
};

/** What a campaign found. */
export interface CampaignReport {
  results: FaultResult[];
  violations: Violation[];
  table: string;
  elapsedMs: number;
  /** Where the processes' logs are (kept when anything went wrong). */
  logDir: string;
}

const NODE_CPU = 4000;
/** A probe pod's demand: its whole limit, heavily throttled (millicores of usage and throttling). */
const PROBE_LOAD: Load = { usage: 300, throttled: 1500 };

interface ManagedPod {
  name: string;
  tier: "protected" | "elastic";
  request: string;
  limit: string;
  load: Load;
  ids: string[];
  uid: string;
}

/** Runs one campaign and returns what it found; everything it started is stopped. */
export async function runCampaign(options: CampaignOptions): Promise<CampaignReport> {
  const started = Date.now();
  // Two seeded streams: the faults' order and choices (one after another, so the same seed
  // gives the same campaign), and the churn, which runs alongside them.
  const random = seededRandom(options.seed);
  const churnRandom = seededRandom(options.seed + 0x9e3779b9);
  const order = faultOrder(FAULTS, options.rounds, random, ["undeploy-during-churn"]);
  const log = options.log;
  const logDir = await Deno.makeTempDir({ prefix: "mbcas-faults-" });
  const violations: Violation[] = [];
  const results: FaultResult[] = [];
  const bounds = new Map<string, PodBounds>();
  const history = new Map<string, PodSnapshot[]>();
  const budget = Number(CONTROLLER_OPTIONS["max-resizes-per-pod-per-minute"].default);
  const signal = options.signal;
  // Every wait of the campaign ends early, with an error, when it is aborted.
  const sleep = (ms: number) =>
    new Promise<void>((resolve, reject) => {
      if (signal?.aborted) return reject(new Error("the campaign was interrupted"));
      const timer = setTimeout(() => {
        signal?.removeEventListener("abort", onAbort);
        resolve();
      }, ms);
      const onAbort = () => {
        clearTimeout(timer);
        reject(new Error("the campaign was interrupted"));
      };
      signal?.addEventListener("abort", onAbort, { once: true });
    });

  log(
    `seed ${options.seed}: starting the test bed, node-a and node-b, the agent and two controllers`,
  );
  const lab = await NodeLab.start(NODE_CPU);
  const { testbed, fixture, core, custom } = lab;
  const nodeB = new KubeletSimulator(lab.cluster.admin, {
    nodeName: "node-b",
    allocatableMillicores: NODE_CPU,
  });
  const proxy = StallProxy.start(Number(new URL(testbed.url).port));
  const processes = new Map<string, Deno.ChildProcess>();
  let polling = true;
  let poller: Promise<void> = Promise.resolve();
  let churner: Promise<void> = Promise.resolve();
  let churning = true;
  let ok = false;
  try {
    await nodeB.start();
    await core.createNamespace({ body: { metadata: { name: "other" } } });
    const proxied = async (identity: "agent" | "controller") => {
      const text = await Deno.readTextFile(testbed.identities[identity].kubeconfig);
      const file = join(logDir, `${identity}.kubeconfig`);
      await Deno.writeTextFile(file, text.replace(testbed.url, `https://127.0.0.1:${proxy.port}`));
      return file;
    };
    const kubeconfigs = { agent: await proxied("agent"), controller: await proxied("controller") };

    // The processes, as their deno tasks run them, logging to files in logDir.
    const spawn = (name: string, main: string, flags: string[], args: string[]) => {
      const child = new Deno.Command(Deno.execPath(), {
        args: ["run", ...flags, main, ...args],
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      // Both streams appended to one file, chunk by chunk, until the process ends.
      const file = Deno.openSync(join(logDir, `${name}.log`), {
        write: true,
        create: true,
        append: true,
      });
      const drain = async (stream: ReadableStream<Uint8Array>) => {
        for await (const chunk of stream) {
          for (let at = 0; at < chunk.length;) at += file.writeSync(chunk.subarray(at));
        }
      };
      Promise.all([drain(child.stdout), drain(child.stderr)]).catch(() => {})
        .finally(() => file.close());
      processes.set(name, child);
      return child;
    };
    const agentPort = freePort();
    const spawnAgent = () =>
      spawn(
        "agent",
        AGENT_MAIN,
        taskRunFlags("agent").map((f) =>
          f === "--allow-read" ? `--allow-read=${fixture.root},${logDir},${testbed.dir}` : f
        ),
        [
          ...["--kubeconfig", kubeconfigs.agent, "--node-name", "node-a"],
          ...["--cgroup-root", fixture.root, "--metrics-port", String(agentPort)],
          ...["--bind-address", "127.0.0.1", "--sampling-interval-ms", "250"],
          ...["--market-interval-ms", "1000"],
        ],
      );
    const spawnController = (identity: string) =>
      spawn(identity, CONTROLLER_MAIN, taskRunFlags("controller"), [
        ...["--kubeconfig", kubeconfigs.controller, "--identity", identity],
        ...["--metrics-port", String(freePort()), "--bind-address", "127.0.0.1"],
      ]);
    const kill = async (name: string) => {
      const child = processes.get(name);
      processes.delete(name);
      if (child === undefined) return;
      try {
        child.kill("SIGKILL");
      } catch { /* gone */ }
      await child.status;
    };

    // The workload: protected services, elastic batch, a decoy on node-b.
    const pods: ManagedPod[] = [
      {
        name: "web",
        tier: "protected",
        request: "500m",
        limit: "1",
        load: { usage: 600, throttled: 100, noise: 0.2 },
      },
      {
        name: "api",
        tier: "protected",
        request: "300m",
        limit: "800m",
        load: { usage: 300, throttled: 0, noise: 0.2 },
      },
      {
        name: "batch-a",
        tier: "elastic",
        request: "250m",
        limit: "1",
        load: { usage: 1000, throttled: 2000 },
      },
      {
        name: "batch-b",
        tier: "elastic",
        request: "250m",
        limit: "1",
        load: { usage: 1000, throttled: 2000 },
      },
    ].map((p): ManagedPod => ({ ...p, tier: p.tier as ManagedPod["tier"], ids: [], uid: "" }));
    for (const pod of pods) {
      const body = burstablePod(NS, pod.name, "node-a", [
        { name: "app", cpuRequest: pod.request, cpuLimit: pod.limit },
      ]);
      body.metadata!.annotations = { "mbcas.io/tier": pod.tier };
      pod.ids = await lab.runPod(body);
      for (const id of pod.ids) lab.load.set(id, { ...pod.load });
    }
    const decoy = burstablePod(NS, "decoy-b", "node-b", [
      { name: "app", cpuRequest: "300m", cpuLimit: "600m" },
    ]);
    await core.createNamespacedPod({ namespace: NS, body: decoy });
    const listPods = async () => (await core.listNamespacedPod({ namespace: NS })).items;
    for (let i = 0; i < 100; i++) {
      const all = await listPods();
      if (all.length === pods.length + 1 && all.every((p) => p.status?.phase === "Running")) break;
      await sleep(200);
    }
    // A pod's bounds, from the pod as created: never below its request, never above the
    // node, and given back its declared limits when MBCAS leaves.
    const register = (pod: k8s.V1Pod) => {
      const key = `${NS}/${pod.metadata!.name}`;
      const onB = pod.spec!.nodeName === "node-b";
      bounds.set(key, {
        uid: pod.metadata!.uid!,
        qosClass: pod.status!.qosClass!,
        containers: Object.fromEntries(pod.spec!.containers.map((c) => {
          const declared = parseMillicores(String(c.resources!.limits!.cpu))!;
          const request = parseMillicores(String(c.resources!.requests!.cpu))!;
          // No agent runs on node-b: nothing may ever change the decoy.
          return [c.name, {
            declared,
            floor: onB ? declared : request,
            cap: onB ? declared : NODE_CPU,
          }];
        })),
      });
    };
    for (const pod of await listPods()) register(pod);
    for (const pod of pods) pod.uid = bounds.get(`${NS}/${pod.name}`)!.uid;

    // Observation: every pod of the namespace from the API (directly, not through the proxy).
    let phase = "start";
    const snapshotOf = (pod: k8s.V1Pod, atMs: number, sentMs = atMs): PodSnapshot => ({
      atMs,
      sentMs,
      key: `${NS}/${pod.metadata!.name}`,
      uid: pod.metadata!.uid!,
      generation: pod.metadata!.generation ?? 0,
      qosClass: pod.status?.qosClass ?? "",
      restarts: (pod.status?.containerStatuses ?? []).reduce(
        (s, c) => s + (c.restartCount ?? 0),
        0,
      ),
      containers: Object.fromEntries(pod.spec!.containers.map((c) => {
        const status = pod.status?.containerStatuses?.find((s) => s.name === c.name);
        const reported = status?.resources?.limits?.cpu;
        return [c.name, {
          request: parseMillicores(String(c.resources?.requests?.cpu ?? "0")) ?? 0,
          limit: c.resources?.limits?.cpu === undefined
            ? null
            : parseMillicores(String(c.resources.limits.cpu)),
          reported: reported === undefined ? null : parseMillicores(String(reported)),
        }];
      })),
    });
    const faultViolations = new Map<string, number>();
    const record = (found: Violation[]) => {
      for (const v of found) {
        violations.push(v);
        faultViolations.set(phase, (faultViolations.get(phase) ?? 0) + 1);
        log(`  VIOLATION during ${phase}: ${v.key} ${v.invariant}: ${v.detail}`);
      }
    };
    const poll = async () => {
      let items: k8s.V1Pod[];
      const sentMs = Date.now();
      try {
        items = await listPods();
      } catch {
        return; // the API server or etcd is down: nothing to see
      }
      const atMs = Date.now();
      for (const pod of items) {
        const snapshot = snapshotOf(pod, atMs, sentMs);
        const b = bounds.get(snapshot.key);
        if (b === undefined) continue;
        record(snapshotViolations(snapshot, b));
        const seen = history.get(snapshot.key) ?? [];
        seen.push(snapshot);
        history.set(snapshot.key, seen);
      }
    };
    poller = (async () => {
      while (polling) {
        await poll();
        await sleep(100);
      }
    })().catch(() => {}); // only an interrupted sleep ends it early

    // Churn: every 1.5 s one of the pods gets a new load.
    churner = (async () => {
      while (churning) {
        const pod = pods[Math.floor(churnRandom() * pods.length)];
        const scale = [0.3, 0.7, 1, 1.5][Math.floor(churnRandom() * 4)];
        for (const id of pod.ids) {
          if (lab.load.has(id)) {
            lab.load.set(id, {
              usage: Math.round(pod.load.usage * scale),
              throttled: Math.round(pod.load.throttled * scale),
              noise: pod.load.noise,
            });
          }
        }
        await sleep(1500);
      }
    })().catch(() => {}); // likewise

    spawnAgent();
    const controllers = ["replica-1", "replica-2"];
    for (const identity of controllers) spawnController(identity);
    const coordination = lab.cluster.admin.makeApiClient(k8s.CoordinationV1Api);
    const leader = async () => {
      const lease = await coordination.readNamespacedLease({
        name: "mbcas-controller",
        namespace: "mbcas-system",
      });
      return lease.spec?.holderIdentity ?? null;
    };
    const pa = async (name: string, namespace = NS): Promise<any | undefined> => {
      try {
        return await custom.getNamespacedCustomObject({
          group: GROUP,
          version: VERSION,
          namespace,
          plural: PLURAL,
          name,
        });
      } catch {
        return undefined;
      }
    };
    const podNow = async (name: string) => {
      try {
        return snapshotOf(await core.readNamespacedPod({ name, namespace: NS }), Date.now());
      } catch {
        return undefined;
      }
    };

    // Recovery: a new protected probe pod (100m request, 300m limit) that uses its whole
    // limit and is heavily throttled; recovered once MBCAS raised its limit and the kubelet
    // reports the raise. The probe is deleted afterwards.
    let probes = 0;
    const recover = async (): Promise<number | null> => {
      const since = Date.now();
      const name = `probe-${probes++}`;
      const body = burstablePod(NS, name, "node-a", [
        { name: "app", cpuRequest: "100m", cpuLimit: "300m" },
      ]);
      body.metadata!.annotations = { "mbcas.io/tier": "protected" };
      let ids: string[] = [];
      try {
        ids = await lab.runPod(body);
        const created = await core.readNamespacedPod({ name, namespace: NS });
        register(created);
        for (const id of ids) lab.load.set(id, { ...PROBE_LOAD });
        while (Date.now() - since < options.recoveryTimeoutSeconds * 1000) {
          const app = (await podNow(name))?.containers.app;
          if (
            app !== undefined && app.limit !== null && app.limit > 300 &&
            app.reported === app.limit
          ) {
            return Date.now() - since;
          }
          await sleep(100);
        }
        return null;
      } finally {
        for (const id of ids) {
          lab.load.delete(id);
          fixture.removeContainer(id);
        }
        await core.deleteNamespacedPod({ name, namespace: NS, gracePeriodSeconds: 0 })
          .catch(() => {});
      }
    };

    // Ready: every managed pod has an applied allocation.
    phase = "startup";
    const readySince = Date.now();
    while (true) {
      const all = await Promise.all(pods.map((p) => pa(p.name)));
      if (all.every((a) => a?.status?.state === "Applied")) break;
      if (Date.now() - readySince > 60_000) {
        throw new Error(`MBCAS did not apply every allocation within 60 s (logs: ${logDir})`);
      }
      await sleep(250);
    }
    log(`ready in ${((Date.now() - readySince) / 1000).toFixed(1)} s; leader ${await leader()}`);

    // What a fault did; a fault that measures its own recovery says so.
    type Injected = string | { detail: string; recoveryMs: number | null };
    const inject: Record<Fault, () => Promise<Injected>> = {
      "agent-killed-while-publishing": async () => {
        // A load step makes the next clearing publish; the kill lands within that market interval.
        const pod = pods[Math.floor(random() * pods.length)];
        lab.load.set(pod.ids[0], { usage: pod.load.usage * 2, throttled: 3000 });
        const after = 300 + Math.floor(random() * 900);
        await sleep(after);
        await kill("agent");
        await sleep(1000);
        spawnAgent();
        return `${pod.name} stepped up, agent SIGKILLed ${after} ms later, restarted after 1 s`;
      },
      "leader-killed-between-patch-and-status": async () => {
        // Provoke resizes both ways (web's demand up, the widest elastic pod's down: an
        // elastic decrease applies at once) and kill the leader on the first one to land.
        const holder = await leader();
        const generations = async () =>
          new Map((await listPods()).map((p) => [p.metadata!.name!, p.metadata!.generation ?? 0]));
        const before = await generations();
        const web = pods.find((p) => p.name === "web")!;
        const elastic = pods.filter((p) => p.tier === "elastic");
        const limits = await Promise.all(
          elastic.map(async (p) => (await podNow(p.name))?.containers.app.limit ?? 0),
        );
        const wide = elastic[limits.indexOf(Math.max(...limits))];
        lab.load.set(web.ids[0], { usage: 1000, throttled: 3000 });
        lab.load.set(wide.ids[0], { usage: 50, throttled: 0 });
        const since = Date.now();
        let resized: string | null = null;
        while (resized === null && Date.now() - since < 15_000) {
          for (const [name, generation] of await generations()) {
            if (generation > (before.get(name) ?? generation)) resized = name;
          }
          if (resized === null) await sleep(10);
        }
        if (holder !== null) await kill(holder);
        lab.load.set(web.ids[0], { ...web.load });
        lab.load.set(wide.ids[0], { ...wide.load });
        await sleep(1000);
        if (holder !== null) spawnController(holder);
        return resized !== null
          ? `leader ${holder} SIGKILLed as soon as ${resized}'s resize landed, restarted after 1 s`
          : `no resize within 15 s; leader ${holder} SIGKILLed anyway`;
      },
      "both-controllers-killed": async () => {
        for (const identity of controllers) await kill(identity);
        await sleep(2000);
        for (const identity of controllers) spawnController(identity);
        return "both replicas SIGKILLed, restarted after 2 s";
      },
      "apiserver-restart": async () => {
        await testbed.stopApiserver();
        await sleep(options.outageSeconds * 1000);
        await testbed.startApiserver();
        return `kube-apiserver stopped for ${options.outageSeconds} s`;
      },
      "etcd-restart": async () => {
        await testbed.stopEtcd();
        await sleep(options.outageSeconds * 1000);
        await testbed.startEtcd();
        return `etcd stopped for ${options.outageSeconds} s`;
      },
      "apiserver-stalled": async () => {
        proxy.stall();
        await sleep(options.stallSeconds * 1000);
        proxy.resume();
        return `every byte between MBCAS and the API server held for ${options.stallSeconds} s, connections open`;
      },
      "hostile-allocations": async () => {
        const template = await pa("web");
        const decoyPod = await core.readNamespacedPod({ name: "decoy-b", namespace: NS });
        const hostile = (name: string, namespace: string, spec: Record<string, unknown>) => ({
          apiVersion: `${GROUP}/${VERSION}`,
          kind: "PodAllocation",
          metadata: { name, namespace },
          spec: { ...template.spec, ...spec },
        });
        const outcomes: string[] = [];
        const attempt = async (what: string, write: () => Promise<unknown>) => {
          try {
            await write();
            outcomes.push(`${what}: accepted by the API`);
          } catch (error) {
            outcomes.push(
              `${what}: refused by the API (${(error as { code?: number }).code ?? "error"})`,
            );
          }
        };
        const containers = (limit: string) =>
          template.spec.containers.map((c: any) => ({
            ...c,
            cpuLimit: limit,
            cpuGuarantee: "100m",
          }));
        await attempt("wrong node", () =>
          custom.createNamespacedCustomObject({
            group: GROUP,
            version: VERSION,
            namespace: NS,
            plural: PLURAL,
            body: hostile("decoy-b", NS, {
              podName: "decoy-b",
              podUID: decoyPod.metadata!.uid,
              nodeName: "node-a",
              containers: containers("2"),
            }),
          }));
        await attempt("another namespace", () =>
          custom.createNamespacedCustomObject({
            group: GROUP,
            version: VERSION,
            namespace: "other",
            plural: PLURAL,
            body: hostile("web", "other", { containers: containers("3") }),
          }));
        const patch = (name: string, spec: Record<string, unknown>) =>
          custom.patchNamespacedCustomObject({
            group: GROUP,
            version: VERSION,
            namespace: NS,
            plural: PLURAL,
            name,
            body: [{ op: "replace", path: "/spec", value: spec }],
          }, k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.JsonPatch));
        const api = await pa("api");
        await attempt(
          "absurd limit (1,000 cores)",
          () =>
            patch("api", {
              ...api.spec,
              containers: api.spec.containers.map((c: any) => ({ ...c, cpuLimit: "1000" })),
            }),
        );
        const batch = await pa("batch-a");
        await attempt("stale computedAt (1 h ago), limit above the node", () =>
          patch("batch-a", {
            ...batch.spec,
            market: {
              ...batch.spec.market,
              computedAt: new Date(Date.now() - 3_600_000).toISOString(),
            },
            containers: batch.spec.containers.map((c: any) => ({ ...c, cpuLimit: "64" })),
          }));
        await sleep(4000);
        // The controller must say it refused the other node's allocation.
        const refused = await pa("decoy-b");
        const agreement = refused?.status?.conditions?.find((c: any) => c.type === "NodeAgreement");
        if (
          refused !== undefined &&
          !(agreement?.status === "False" && agreement?.reason === "NodeMismatch")
        ) {
          record([{
            atMs: Date.now(),
            key: `${NS}/decoy-b`,
            invariant: "node-agreement",
            detail: `another node's allocation: NodeAgreement ${agreement?.status ?? "missing"} ${
              agreement?.reason ?? ""
            }`,
          }]);
        }
        for (const [name, namespace] of [["decoy-b", NS], ["web", "other"]]) {
          await custom.deleteNamespacedCustomObject({
            group: GROUP,
            version: VERSION,
            namespace,
            plural: PLURAL,
            name,
          })
            .catch(() => {});
        }
        return outcomes.join("; ");
      },
      "cgroup-vanishes-and-returns": async () => {
        const pod = pods.find((p) => p.name === "batch-b")!;
        const [id] = pod.ids;
        const replacement = containerId(Math.floor(random() * 1e9));
        lab.load.delete(id);
        fixture.removeContainer(id);
        await sleep(1500);
        fixture.addPod({
          uid: pod.uid,
          qos: "burstable",
          containers: [{ id: replacement, shares: 256, quotaMicros: 100_000 }],
        });
        lab.load.set(replacement, { ...pod.load });
        await sleep(3000);
        lab.load.delete(replacement);
        fixture.removeContainer(replacement);
        fixture.addPod({
          uid: pod.uid,
          qos: "burstable",
          containers: [{ id, shares: 256, quotaMicros: 100_000 }],
        });
        lab.load.set(id, { ...pod.load });
        return "batch-b's cgroup removed mid-sampling, back 1.5 s later under a new id for 3 s, then under its own id with counters from 0";
      },
      "counter-reset": async () => {
        const pod = pods.find((p) => p.name === "web")!;
        fixture.setCounters(pod.ids[0], zeroCounters());
        await sleep(2000);
        return "web's usage, throttling and PSI counters set back to 0";
      },
      "opt-out-during-churn": async () => {
        // The pod MBCAS moved furthest from its declared limit (the first, if none moved).
        const moved = await Promise.all(pods.map(async (p) => {
          const app = (await podNow(p.name))?.containers.app;
          const declared = bounds.get(`${NS}/${p.name}`)!.containers.app.declared;
          return { name: p.name, declared, from: app?.limit ?? declared };
        }));
        const target = moved.reduce((best, m) =>
          Math.abs(m.from - m.declared) > Math.abs(best.from - best.declared) ? m : best
        );
        const annotate = (value: string | null) =>
          core.patchNamespacedPod({
            name: target.name,
            namespace: NS,
            body: { metadata: { annotations: { "mbcas.io/managed": value } } },
          }, k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch));
        await annotate("false");
        const since = Date.now();
        let restoredMs: number | null = null;
        while (Date.now() - since < 30_000) {
          const app = (await podNow(target.name))?.containers.app;
          if (app?.limit === target.declared && app.reported === target.declared) {
            restoredMs = Date.now() - since;
            break;
          }
          await sleep(100);
        }
        if (restoredMs === null) {
          record([{
            atMs: Date.now(),
            key: `${NS}/${target.name}`,
            invariant: "opt-out",
            detail: `not back at ${target.declared}m within 30 s of opting out`,
          }]);
        }
        await annotate(null);
        return `${target.name} (at ${target.from}m) annotated mbcas.io/managed=false: back at its declared ${target.declared}m after ${
          restoredMs === null ? "never" : `${(restoredMs / 1000).toFixed(1)} s`
        }; opted in again`;
      },
      "undeploy-during-churn": async () => {
        // undeploy's order: the agent goes first, then the PodAllocations while the controller
        // still runs (its finalizer restores each pod), then the controller. Recovery: every
        // pod back at its declared limits, in the spec and as the kubelet reports them.
        await kill("agent");
        const since = Date.now();
        await custom.deleteCollectionNamespacedCustomObject({
          group: GROUP,
          version: VERSION,
          namespace: NS,
          plural: PLURAL,
        });
        const restored = async () =>
          (await listPods()).every((pod) =>
            restoreViolations(
              snapshotOf(pod, Date.now()),
              bounds.get(`${NS}/${pod.metadata!.name}`)!,
            )
              .length === 0
          );
        let recoveryMs: number | null = null;
        while (Date.now() - since < options.recoveryTimeoutSeconds * 1000) {
          if (await restored()) {
            recoveryMs = Date.now() - since;
            break;
          }
          await sleep(100);
        }
        let gone = false;
        while (Date.now() - since < options.recoveryTimeoutSeconds * 1000) {
          const left = await custom.listNamespacedCustomObject({
            group: GROUP,
            version: VERSION,
            namespace: NS,
            plural: PLURAL,
          }) as { items: unknown[] };
          if ((gone = left.items.length === 0)) break;
          await sleep(250);
        }
        for (const identity of controllers) {
          const child = processes.get(identity);
          processes.delete(identity);
          if (child !== undefined) await terminate(child);
        }
        await sleep(1000);
        for (const pod of await listPods()) {
          const snapshot = snapshotOf(pod, Date.now());
          record(restoreViolations(snapshot, bounds.get(snapshot.key)!));
        }
        if (!gone) {
          record([{
            atMs: Date.now(),
            key: NS,
            invariant: "restore",
            detail: `PodAllocations left ${options.recoveryTimeoutSeconds} s after their deletion`,
          }]);
        }
        return {
          detail:
            "agent stopped, every PodAllocation deleted with the controllers running, then the controllers stopped; every pod checked against its declared limits",
          recoveryMs,
        };
      },
    };

    // The control: the recovery measure with no fault.
    phase = CONTROL;
    const controlMs = await recover();
    log(
      `control (no fault): ${controlMs === null ? "NEVER" : `${(controlMs / 1000).toFixed(1)} s`}`,
    );
    results.push({
      fault: CONTROL,
      detail: "no fault",
      recoveryMs: controlMs,
      violations: faultViolations.get(CONTROL) ?? 0,
      control: true,
    });

    for (const [i, fault] of order.entries()) {
      phase = fault;
      const before = faultViolations.get(fault) ?? 0;
      log(`[${i + 1}/${order.length}] ${fault}`);
      const injected = await inject[fault]();
      const { detail, recoveryMs } = typeof injected === "string"
        ? { detail: injected, recoveryMs: await recover() }
        : injected;
      const count = (faultViolations.get(fault) ?? 0) - before;
      log(
        `  ${detail}; recovered ${
          recoveryMs === null ? "NEVER" : `in ${(recoveryMs / 1000).toFixed(1)} s`
        }`,
      );
      results.push({ fault, detail, recoveryMs, violations: count });
      await sleep(1000);
    }
    churning = false;
    polling = false;
    await Promise.all([poller, churner]);
    phase = "budget";
    for (const [key, snapshots] of history) {
      const declared = Object.fromEntries(
        Object.entries(bounds.get(key)!.containers).map(([name, b]) => [name, b.declared]),
      );
      record(budgetViolations(key, resizeTimes(snapshots, declared), budget));
    }
    ok = violations.length === 0 && results.every((r) => r.recoveryMs !== null);
    return {
      results,
      violations,
      table: campaignTable(results, violations.length),
      elapsedMs: Date.now() - started,
      logDir,
    };
  } finally {
    churning = false;
    polling = false;
    await Promise.all([poller, churner]).catch(() => {});
    for (const child of processes.values()) {
      try {
        child.kill("SIGKILL");
      } catch { /* gone */ }
      await child.status;
    }
    proxy.close();
    await nodeB.stop();
    await lab.stop();
    if (ok) await Deno.remove(logDir, { recursive: true }).catch(() => {});
  }
}

/** Parses the campaign's command line; throws naming the option and value. */
export function parseCampaignArgs(args: string[]): Omit<CampaignOptions, "log"> {
  // --short first, so that options given with it override its values.
  const options: Omit<CampaignOptions, "log"> = {
    seed: 1,
    ...(args.includes("--short") ? SHORT : FULL),
  };
  const number = (flag: string, text: string | undefined, min: number) => {
    const value = Number(text);
    if (text === undefined || !Number.isInteger(value) || value < min) {
      throw new Error(`${flag} must be an integer ≥ ${min}, got ${JSON.stringify(text ?? null)}`);
    }
    return value;
  };
  for (let i = 0; i < args.length; i++) {
    const flag = args[i];
    if (flag === "--short" || flag === "--") continue;
    else if (flag === "--seed") options.seed = number(flag, args[++i], 0);
    else if (flag === "--rounds") options.rounds = number(flag, args[++i], 1);
    else if (flag === "--stall-seconds") options.stallSeconds = number(flag, args[++i], 1);
    else {throw new Error(
        `unknown option ${JSON.stringify(flag)} (--seed N, --rounds N, --short, --stall-seconds S)`,
      );}
  }
  return options;
}

if (import.meta.main) {
  let parsed: Omit<CampaignOptions, "log">;
  try {
    parsed = parseCampaignArgs(Deno.args);
  } catch (error) {
    console.error(`faults: ${(error as Error).message}`);
    Deno.exit(2);
  }
  // Ctrl-C or SIGTERM: the campaign stops what it started, then the process exits 130.
  const interrupt = new AbortController();
  for (const name of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(name, () => {
      console.error(`faults: ${name}: stopping everything the campaign started`);
      interrupt.abort();
    });
  }
  let report: CampaignReport;
  try {
    report = await runCampaign({
      ...parsed,
      log: (line) => console.log(`faults: ${line}`),
      signal: interrupt.signal,
    });
  } catch (error) {
    console.error(`faults: ${(error as Error).message}`);
    Deno.exit(interrupt.signal.aborted ? 130 : 1);
  }
  console.log(report.table);
  const faults = report.results.filter((r) => !r.control);
  const recovered = faults.filter((r) => r.recoveryMs !== null).length;
  const control = report.results.find((r) => r.control);
  console.log(
    `faults: ${faults.length} injected, ${report.violations.length} invariant violations, ` +
      `${recovered}/${faults.length} recovered, ${
        (report.elapsedMs / 1000).toFixed(0)
      } s (seed ${parsed.seed})`,
  );
  if (
    report.violations.length > 0 || recovered < faults.length || control?.recoveryMs === null
  ) {
    console.log(`faults: the processes' logs are in ${report.logDir}`);
    Deno.exit(1);
  }
}
