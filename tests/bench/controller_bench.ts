/**
 * `deno task bench:controller`: the controller (a subprocess running
 * `src/controller/main.ts`) against the test bed with 1,000 simulated pods on
 * 10 nodes. Measures the time from a PodAllocation change to the pod's resize
 * (seen on a pod watch) at a steady 50 changes/s, the sustained resize rate
 * when every allocation changes at once, and the controller's peak RSS. The
 * per-pod resize budget and the cooldown are lifted: it measures the pipeline.
 * Targets: p50 ≤ 50 ms, p99 ≤ 500 ms at 50 changes/s, RSS ≤ 150 MB.
 */
import * as k8s from "@kubernetes/client-node";
import { API_VERSION, GROUP, KIND, PLURAL, VERSION } from "../../src/api/mod.ts";
import { MANAGED_LABEL } from "../../src/controller/mod.ts";
import { Informer, kubeSource, MERGE_PATCH, toPlain } from "../../src/k8s/mod.ts";
import {
  applyManifests,
  freePort,
  KubeletSimulator,
  MANIFESTS,
  startTestbed,
  waitForCrd,
} from "../../src/testbed/mod.ts";

import { manifestV8Flags, taskRunFlags } from "../_support/task_flags.ts";

const NODES = 10;
const PODS = 1000;
const RATE = 50; // changes per second in the latency phase
const LATENCY_CHANGES = 1000;
const NS = "bench";
const MAIN = new URL("../../src/controller/main.ts", import.meta.url).pathname;

const log = (line: string) => console.error(`[bench] ${line}`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const percentile = (values: number[], p: number) => {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};

/** One cumulative histogram bucket. */
interface Bucket {
  le: number;
  count: number;
}

/** Cumulative bucket counts of the controller's resize-latency histogram. */
async function ownLatency(metricsPort: number): Promise<Bucket[]> {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  return [
    ...text.matchAll(/^mbcas_controller_resize_latency_seconds_bucket\{le="([^"]+)"\} (\d+)$/gm),
  ]
    .map((m) => ({ le: m[1] === "+Inf" ? Infinity : Number(m[1]), count: Number(m[2]) }));
}

/** Upper bound (ms) of the bucket holding quantile `q` of the observations between two snapshots. */
function quantileBetween(a: Bucket[], b: Bucket[], q: number): number {
  const delta = b.map((x, i) => ({ le: x.le, count: x.count - (a[i]?.count ?? 0) }));
  const total = delta.at(-1)?.count ?? 0;
  return (delta.find((x) => x.count >= q * total)?.le ?? NaN) * 1000;
}

/** Sends `changes` PodAllocation changes at `rate`/s; returns each change's time until the pod shows it. */
async function latencyPhase(
  custom: k8s.CustomObjectsApi,
  changedAt: Map<string, { limit: string; at: number }>,
  changes: number,
  rate: number,
  fixedLimit: string | null,
): Promise<number[]> {
  log(`latency phase: ${changes} changes at ${rate}/s`);
  const sentAt = new Map<string, { limit: string; at: number }>();
  const started = performance.now();
  for (let k = 0; k < changes; k++) {
    const due = started + (k * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 0) await sleep(wait);
    const i = k % PODS;
    const limit = fixedLimit ?? `${300 + Math.floor(k / PODS) * 100 + 200}m`;
    sentAt.set(`p${i}`, { limit, at: performance.now() });
    custom.patchNamespacedCustomObject(
      {
        group: GROUP,
        version: VERSION,
        namespace: NS,
        plural: PLURAL,
        name: `p${i}`,
        body: { spec: { containers: [{ name: "app", cpuLimit: limit }] } },
      },
      MERGE_PATCH,
    ).catch((e) => log(`patch failed: ${e}`));
  }
  const deadline = performance.now() + 30_000;
  const done = () => [...sentAt].every(([name, s]) => changedAt.get(name)?.limit === s.limit);
  while (!done() && performance.now() < deadline) await sleep(50);
  return [...sentAt].filter(([name, s]) => changedAt.get(name)?.limit === s.limit).map((
    [name, s],
  ) => changedAt.get(name)!.at - s.at);
}

const testbed = await startTestbed({ log });
const admin = new k8s.KubeConfig();
admin.loadFromFile(testbed.identities.admin.kubeconfig);
const core = admin.makeApiClient(k8s.CoreV1Api);
const custom = admin.makeApiClient(k8s.CustomObjectsApi);
const simulators: KubeletSimulator[] = [];
let controller: Deno.ChildProcess | null = null;
try {
  await applyManifests(admin, [MANIFESTS.crd, ...MANIFESTS.rbac]);
  await waitForCrd(admin, `${PLURAL}.${GROUP}`);
  await core.createNamespace({
    body: { metadata: { name: NS, labels: { [MANAGED_LABEL]: "true" } } },
  });
  for (let n = 0; n < NODES; n++) {
    const s = new KubeletSimulator(admin, { nodeName: `node-${n}`, allocatableMillicores: 64_000 });
    await s.start();
    simulators.push(s);
  }
  log(`creating ${PODS} pods on ${NODES} nodes`);
  const uids: string[] = [];
  for (let start = 0; start < PODS; start += 50) {
    await Promise.all(Array.from({ length: Math.min(50, PODS - start) }, async (_, k) => {
      const i = start + k;
      const pod = await core.createNamespacedPod({
        namespace: NS,
        body: {
          metadata: { name: `p${i}`, namespace: NS },
          spec: {
            nodeName: `node-${i % NODES}`,
            containers: [{
              name: "app",
              image: "pause",
              resources: {
                requests: { cpu: "100m", memory: "32Mi" },
                limits: { cpu: "200m", memory: "64Mi" },
              },
            }],
          },
        },
      });
      uids[i] = pod.metadata!.uid!;
    }));
  }
  // Watch pods: when did each pod's CPU limit change?
  const changedAt = new Map<string, { limit: string; at: number }>();
  const pods = new Informer<k8s.V1Pod>(
    kubeSource<k8s.V1Pod>(admin, {
      path: `/api/v1/namespaces/${NS}/pods`,
      list: async () => {
        const l = toPlain(await core.listNamespacedPod({ namespace: NS }));
        return { items: l.items, resourceVersion: l.metadata?.resourceVersion ?? "" };
      },
    }),
    { name: "bench-pods", resyncMs: 0 },
  );
  pods.subscribe((e) => {
    const limit = e.object.spec?.containers[0].resources?.limits?.cpu;
    const name = e.object.metadata!.name!;
    if (limit !== undefined && changedAt.get(name)?.limit !== limit) {
      changedAt.set(name, { limit, at: performance.now() });
    }
  });
  pods.start();
  await pods.synced();
  const running = () => pods.list().filter((p) => p.status?.phase === "Running").length;
  while (running() < PODS) await sleep(500);
  log("all pods running; creating PodAllocations and starting the controller");

  const body = (i: number, cpuLimit: string) => ({
    apiVersion: API_VERSION,
    kind: KIND,
    metadata: { name: `p${i}`, namespace: NS },
    spec: {
      podName: `p${i}`,
      podUID: uids[i],
      nodeName: `node-${i % NODES}`,
      containers: [{ name: "app", cpuLimit }],
      market: {
        price: 0,
        capacityMillicores: 64_000,
        contended: false,
        computedAt: new Date().toISOString(),
        // No agent vouches for it here: a long market interval keeps it from going stale.
        intervalSeconds: 3600,
      },
    },
  });
  for (let start = 0; start < PODS; start += 50) {
    await Promise.all(
      Array.from(
        { length: Math.min(50, PODS - start) },
        (_, k) =>
          custom.createNamespacedCustomObject({
            group: GROUP,
            version: VERSION,
            namespace: NS,
            plural: PLURAL,
            body: body(start + k, "200m"),
          }),
      ),
    );
  }
  const metricsPort = freePort();
  controller = new Deno.Command(Deno.execPath(), {
    // The heap the shipped manifest gives it (DENO_V8_FLAGS), unless the caller sets one.
    env: { DENO_V8_FLAGS: Deno.env.get("DENO_V8_FLAGS") ?? manifestV8Flags("controller") },
    args: [
      "run",
      ...(Deno.env.get("MBCAS_BENCH_DENO_FLAGS")?.split(" ").filter(Boolean) ?? []),
      ...taskRunFlags("controller"),
      MAIN,
      "--kubeconfig",
      testbed.identities.controller.kubeconfig,
      "--leader-elect",
      "false",
      "--metrics-port",
      String(metricsPort),
      "--bind-address",
      "127.0.0.1",
      "--log-level",
      "warning",
      // Each pod changes up to three times in a minute here (5/s, 50/s and the
      // flood phase), up and down: the per-pod budget (4 a minute, the last two
      // for protective changes) and the 30 s cooldown of decreases would hold
      // most changes back and measure the safety rules, not the pipeline. 16 is
      // the most the option takes (14 a minute for changes that are not protective).
      "--max-resizes-per-pod-per-minute",
      "16",
      "--cooldown-seconds",
      "0",
      ...(Deno.env.get("MBCAS_BENCH_CONTROLLER_ARGS")?.split(" ").filter(Boolean) ?? []),
      "--rate-limit-qps",
      "1000",
      "--rate-limit-burst",
      "1000",
      "--node-rate-limit-qps",
      "100",
      "--node-rate-limit-burst",
      "100",
    ],
    stdout: "null",
    stderr: "inherit",
  }).spawn();
  let peakRss = 0;
  const rssTimer = setInterval(() => {
    try {
      const kb = Number(
        /VmRSS:\s+(\d+)/.exec(Deno.readTextFileSync(`/proc/${controller!.pid}/status`))?.[1] ?? 0,
      );
      peakRss = Math.max(peakRss, kb / 1024);
    } catch {
      // exited
    }
  }, 200);
  // Start-up: the initial sync writes 1,000 statuses. Measure only once the queue has drained.
  await sleep(2000);
  for (let quiet = 0; quiet < 4;) {
    await sleep(500);
    try {
      const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      quiet = /^mbcas_controller_queue_depth 0$/m.test(text) ? quiet + 1 : 0;
    } catch {
      quiet = 0;
    }
  }
  log("controller idle; measuring");

  // Phase 0: latency at a gentle 5 changes/s (the control plane is not saturated).
  const before = await ownLatency(metricsPort);
  const gentle = await latencyPhase(custom, changedAt, 50, 5, "400m");
  const afterGentle = await ownLatency(metricsPort);
  // Phase 1: latency at a steady 50 changes/s.
  const latencies = await latencyPhase(custom, changedAt, LATENCY_CHANGES, RATE, null);
  const afterSteady = await ownLatency(metricsPort);

  // Phase 2: every allocation changes at once.
  log("throughput phase: all 1,000 allocations change at once");
  const floodStart = performance.now();
  const floodTarget = "1500m";
  for (let start = 0; start < PODS; start += 100) {
    await Promise.all(
      Array.from(
        { length: Math.min(100, PODS - start) },
        (_, k) =>
          custom.patchNamespacedCustomObject(
            {
              group: GROUP,
              version: VERSION,
              namespace: NS,
              plural: PLURAL,
              name: `p${start + k}`,
              body: { spec: { containers: [{ name: "app", cpuLimit: floodTarget }] } },
            },
            MERGE_PATCH,
          ),
      ),
    );
  }
  const floodDeadline = performance.now() + 120_000;
  const floodDone = () =>
    pods.list().filter((p) => p.spec?.containers[0].resources?.limits?.cpu === floodTarget).length;
  while (floodDone() < PODS && performance.now() < floodDeadline) await sleep(100);
  const floodSeconds = (performance.now() - floodStart) / 1000;
  clearInterval(rssTimer);
  const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  const reconcileBuckets = [
    ...metrics.matchAll(
      /^mbcas_controller_reconcile_duration_seconds_bucket\{le="([^"]+)"\} (\d+)$/gm,
    ),
  ].map((m) => `${m[1]}:${m[2]}`).join(" ");
  console.error(`[bench] reconcile duration buckets: ${reconcileBuckets}`);
  const heap = Number(/^deno_heap_used_bytes (\d+)$/m.exec(metrics)?.[1] ?? 0) / 1048576;
  await pods.stop();

  const ms = (v: number) => `${v.toFixed(1)} ms`;
  console.log(
    `controller benchmark: ${PODS} pods on ${NODES} simulated nodes, Deno ${Deno.version.deno}, 2 cores shared with the API server, etcd and the simulators`,
  );
  console.log(
    `  PodAllocation change -> pod resized, at ${RATE} changes/s: ${latencies.length}/${LATENCY_CHANGES} seen; p50 ${
      ms(percentile(latencies, 50))
    }, p99 ${ms(percentile(latencies, 99))}, max ${
      ms(Math.max(...latencies))
    }   (targets: p50 <= 50 ms, p99 <= 500 ms)`,
  );
  console.log(
    `  the same at 5 changes/s: p50 ${ms(percentile(gentle, 50))}, p99 ${
      ms(percentile(gentle, 99))
    }`,
  );
  console.log(
    `  sustained resizes: ${floodDone()} pods resized in ${floodSeconds.toFixed(1)} s = ${
      (floodDone() / floodSeconds).toFixed(0)
    } resizes/s`,
  );
  console.log(
    `  controller's own share (its watch event -> accepted pods/resize patch, from its histogram): ` +
      `at 5/s p50 <= ${quantileBetween(before, afterGentle, 0.5)} ms, p99 <= ${
        quantileBetween(before, afterGentle, 0.99)
      } ms; ` +
      `at ${RATE}/s p50 <= ${quantileBetween(afterGentle, afterSteady, 0.5)} ms, p99 <= ${
        quantileBetween(afterGentle, afterSteady, 0.99)
      } ms`,
  );
  console.log(
    `  controller peak RSS: ${peakRss.toFixed(0)} MB, V8 heap in use at the end: ${
      heap.toFixed(0)
    } MB   (target: RSS <= 150 MB)`,
  );
} finally {
  if (controller !== null) {
    try {
      controller.kill("SIGTERM");
    } catch {
      // gone
    }
    await controller.status;
  }
  for (const s of simulators) await s.stop();
  await testbed.stop();
}
