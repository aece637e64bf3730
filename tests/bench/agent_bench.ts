/**
 * `deno task bench:agent`: the agent (a subprocess running
 * `src/agent/main.ts` with the task's flags) on a node of 110 pods × 2
 * containers (a cgroup fixture tree whose counters advance every second, pods
 * from the test bed's kubelet simulator), sampling every second and clearing
 * every 5 s. Reports its CPU time per second of wall time and its RSS over
 * 60 s at rest: the window opens 5 s after the agent has created every
 * pod's PodAllocation (the takeover, paced by the per-node write limit, is
 * reported on its own line). Its kubeconfig is JSON, so it loads no npm
 * module, as in a pod. Targets (issue 16, "an agent a node can afford"): ≤ 0.5% of one core,
 * RSS ≤ 64 MB. The RSS is also split into anonymous memory (the V8 heap,
 * buffers) and file-backed pages (mostly the Deno executable's code, shared
 * and reclaimable), as /proc reports them at the peak.
 */
import * as k8s from "@kubernetes/client-node";
import { load } from "js-yaml";
import { GROUP, PLURAL } from "../../src/api/mod.ts";
import { bareContainerID } from "../../src/cgroup/mod.ts";
import { MANAGED_LABEL } from "../../src/controller/mod.ts";
import {
  applyManifests,
  KubeletSimulator,
  MANIFESTS,
  startTestbed,
  waitForCrd,
} from "../../src/testbed/mod.ts";
import { CgroupFixture } from "../cgroup/_fixtures.ts";
import { manifestV8Flags, taskRunFlags } from "../_support/task_flags.ts";

const PODS = 110;
const SECONDS = 60;
const MAIN = new URL("../../src/agent/main.ts", import.meta.url).pathname;

/** The bench namespace's PodAllocations: how many, and the sum of their generations (a new one counts 1). */
async function specWrites(): Promise<{ count: number; generations: number }> {
  const list = await admin.makeApiClient(k8s.CustomObjectsApi).listNamespacedCustomObject({
    group: GROUP,
    version: "v1alpha1",
    namespace: "bench",
    plural: PLURAL,
  }) as { items: { metadata?: { generation?: number } }[] };
  return {
    count: list.items.length,
    generations: list.items.reduce((sum, pa) => sum + (pa.metadata?.generation ?? 1), 0),
  };
}
const log = (line: string) => console.error(`[bench] ${line}`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const CLOCK_TICKS = 100; // USER_HZ

function cpuSeconds(pid: number): number {
  const fields = Deno.readTextFileSync(`/proc/${pid}/stat`).split(") ")[1].split(" ");
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS; // utime + stime
}

/** RSS, its anonymous and its file-backed part, MB. */
function rssMb(pid: number): { rss: number; anon: number; file: number } {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const field = (name: string) =>
    Number(new RegExp(`${name}:\\s+(\\d+)`).exec(status)?.[1] ?? 0) / 1024;
  return { rss: field("VmRSS"), anon: field("RssAnon"), file: field("RssFile") };
}

const testbed = await startTestbed({ log });
const admin = new k8s.KubeConfig();
admin.loadFromFile(testbed.identities.admin.kubeconfig);
const core = admin.makeApiClient(k8s.CoreV1Api);
const simulator = new KubeletSimulator(admin, {
  nodeName: "node-a",
  allocatableMillicores: 64_000,
});
const fixture = CgroupFixture.create("v2-systemd");
let agent: Deno.ChildProcess | null = null;
let kubeconfigJson: string | null = null;
let ticker: ReturnType<typeof setInterval> | undefined;
try {
  await applyManifests(admin, [MANIFESTS.crd, ...MANIFESTS.rbac]);
  await waitForCrd(admin, `${PLURAL}.${GROUP}`);
  await core.createNamespace({
    body: { metadata: { name: "bench", labels: { [MANAGED_LABEL]: "true" } } },
  });
  await simulator.start();
  log(`creating ${PODS} pods × 2 containers`);
  for (let start = 0; start < PODS; start += 10) {
    await Promise.all(
      Array.from({ length: Math.min(10, PODS - start) }, (_, k) =>
        core.createNamespacedPod({
          namespace: "bench",
          body: {
            metadata: { name: `p${start + k}`, namespace: "bench" },
            spec: {
              nodeName: "node-a",
              containers: ["app", "sidecar"].map((name) => ({
                name,
                image: "pause",
                resources: {
                  requests: { cpu: "100m", memory: "32Mi" },
                  limits: { cpu: "500m", memory: "64Mi" },
                },
              })),
            },
          },
        })),
    );
  }
  const ids: string[] = [];
  for (;;) {
    const pods = (await core.listNamespacedPod({ namespace: "bench" })).items;
    if (pods.filter((p) => p.status?.phase === "Running").length === PODS) {
      for (const p of pods) {
        const containers = p.status!.containerStatuses!.map((s) => ({
          id: bareContainerID(s.containerID!),
          shares: 102,
          quotaMicros: 50_000,
        }));
        fixture.addPod({ uid: p.metadata!.uid!, qos: "burstable", containers });
        ids.push(...containers.map((c) => c.id));
      }
      break;
    }
    await sleep(500);
  }
  let n = 0;
  ticker = setInterval(() => {
    n++;
    ids.forEach((id, i) =>
      fixture.advance(id, {
        usageNanos: (100 + (i % 7) * 50) * 1_000_000,
        periods: 10,
        throttledPeriods: i % 5 === 0 ? 3 : 0,
        throttledNanos: i % 5 === 0 ? 50_000_000 : 0,
      })
    );
  }, 1000);
  // The agent's kubeconfig as JSON: read without js-yaml, the agent loads no npm module, as in a
  // pod (in-cluster credentials); a YAML one would load js-yaml, which a pod never does.
  kubeconfigJson = await Deno.makeTempFile({ suffix: ".json" });
  await Deno.writeTextFile(
    kubeconfigJson,
    JSON.stringify(load(await Deno.readTextFile(testbed.identities.agent.kubeconfig))),
  );
  agent = new Deno.Command(Deno.execPath(), {
    // The heap the shipped manifest gives it (DENO_V8_FLAGS), unless the caller sets one.
    env: { DENO_V8_FLAGS: Deno.env.get("DENO_V8_FLAGS") ?? manifestV8Flags("agent") },
    args: [
      "run",
      ...(Deno.env.get("MBCAS_BENCH_DENO_FLAGS")?.split(" ").filter(Boolean) ?? []),
      ...taskRunFlags("agent"),
      MAIN,
      "--kubeconfig",
      kubeconfigJson,
      "--node-name",
      "node-a",
      "--cgroup-root",
      fixture.root,
      "--metrics-port",
      "0",
      "--bind-address",
      "127.0.0.1",
      "--log-level",
      "warning",
    ],
    stdout: "null",
    stderr: "inherit",
  }).spawn();
  const started = performance.now();
  log("agent started; waiting until it has published every pod (at most 120 s)");
  // The window measures the agent at rest: every pod taken over, demand steady.
  // Taking over 110 pods is paced by the per-node write limit (5/s, burst 20).
  let takeover = NaN;
  while (performance.now() - started < 120_000) {
    await sleep(1000);
    if ((await specWrites()).count === PODS) {
      takeover = (performance.now() - started) / 1000;
      break;
    }
  }
  const takeoverCpu = cpuSeconds(agent.pid);
  await sleep(5_000); // the clearing after the last creation
  const written0 = await specWrites();
  const cpu0 = cpuSeconds(agent.pid);
  const t0 = performance.now();
  let peak = { rss: 0, anon: 0, file: 0 };
  for (let s = 0; s < SECONDS; s++) {
    await sleep(1000);
    const now = rssMb(agent.pid);
    if (now.rss > peak.rss) peak = now;
  }
  const cpu = cpuSeconds(agent.pid) - cpu0;
  const wall = (performance.now() - t0) / 1000;
  const written = await specWrites();
  const pas = written.count;
  // Each spec write the agent makes bumps a PodAllocation's generation (a new
  // one starts at 1); no controller runs here, so nothing else writes them.
  const writes = written.generations - written0.generations;
  console.log(
    `agent benchmark: ${PODS} pods × 2 containers on one node (cgroup v2 fixture tree), sampling every 1 s, market every 5 s, Deno ${Deno.version.deno}`,
  );
  console.log(
    `  CPU: ${cpu.toFixed(2)} s over ${wall.toFixed(0)} s = ${
      ((cpu / wall) * 100).toFixed(2)
    }% of one core   (target: <= 0.5%)`,
  );
  console.log(
    `  peak RSS: ${peak.rss.toFixed(0)} MB   (target: <= 64 MB): anonymous ${
      peak.anon.toFixed(0)
    } MB, file-backed ${peak.file.toFixed(0)} MB`,
  );
  console.log(
    `  PodAllocation writes in the ${wall.toFixed(0)} s window (steady demand): ${writes} = ${
      (writes / wall).toFixed(2)
    }/s for the node (Σ generation at its end minus at its start), ${
      written.count - written0.count
    } of them creations`,
  );
  console.log(`  PodAllocations published: ${pas}; counter ticks: ${n}`);
  console.log(
    Number.isNaN(takeover)
      ? `  takeover: not every pod published within 120 s (${pas} of ${PODS}): the window was not at rest`
      : `  takeover: all ${PODS} PodAllocations created ${
        takeover.toFixed(0)
      } s after start; CPU until then ${takeoverCpu.toFixed(2)} s (start-up included)`,
  );
} finally {
  if (ticker !== undefined) clearInterval(ticker);
  if (agent !== null) {
    agent.kill("SIGTERM");
    await agent.status;
  }
  await simulator.stop();
  await testbed.stop();
  fixture.cleanup();
  if (kubeconfigJson !== null) await Deno.remove(kubeconfigJson);
}
