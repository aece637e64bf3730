// deno-lint-ignore-file no-explicit-any -- status objects are read as loose JSON
/**
 * The controller as users run it: `src/controller/main.ts` in subprocesses with
 * the task's permissions. Two replicas elect a leader; killing it hands over
 * within a lease duration and two retry periods (10 s + 2 × 2 s, plus 3 s for
 * requests on a loaded machine) without a double resize; probes and metrics answer; a graceful
 * stop releases the Lease; `--dry-run` patches nothing.
 */
import assert from "node:assert/strict";
import * as k8s from "@kubernetes/client-node";
import { API_VERSION, GROUP, KIND, PLURAL, VERSION } from "../../src/api/mod.ts";
import { MANAGED_LABEL } from "../../src/controller/mod.ts";
import { freePort } from "../../src/testbed/mod.ts";
import { taskRunFlags } from "../_support/task_flags.ts";
import { startCluster } from "../_support/cluster.ts";
import { requireOrSkip, testbedMissing } from "../_support/requirements.ts";
import { burstablePod, eventually } from "../k8s/_helpers.ts";

const MAIN = new URL("../../src/controller/main.ts", import.meta.url).pathname;
const NS = "web";

interface Replica {
  identity: string;
  port: number;
  child: Deno.ChildProcess;
  log: Promise<string>;
}

function spawnController(
  kubeconfig: string,
  identity: string,
  extra: string[] = [],
  env: Record<string, string> = {},
): Replica {
  const port = freePort();
  const child = new Deno.Command(Deno.execPath(), {
    env,
    args: [
      "run",
      ...taskRunFlags("controller"),
      MAIN,
      "--kubeconfig",
      kubeconfig,
      "--identity",
      identity,
      "--metrics-port",
      String(port),
      "--bind-address",
      "127.0.0.1",
      "--lease-duration-seconds",
      "10",
      ...extra,
    ],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const log = Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text()])
    .then(([a, b]) => a + b);
  return { identity, port, child, log };
}

async function get(replica: Replica, path: string): Promise<{ status: number; text: string }> {
  try {
    const r = await fetch(`http://127.0.0.1:${replica.port}${path}`);
    return { status: r.status, text: await r.text() };
  } catch {
    return { status: 0, text: "" };
  }
}

async function isLeader(replica: Replica): Promise<boolean> {
  return /^mbcas_controller_leader 1$/m.test((await get(replica, "/metrics")).text);
}

requireOrSkip(
  "controller processes: leader failover within 17 s, probes, metrics, graceful release, dry run",
  testbedMissing(),
  async (t) => {
    const cluster = await startCluster({ namespaces: { [NS]: { [MANAGED_LABEL]: "true" } } });
    const { testbed, admin, core, custom } = cluster;
    const coordination = admin.makeApiClient(k8s.CoordinationV1Api);
    const replicas: Replica[] = [];
    const pa = (name: string, uid: string, cpuLimit: string) => ({
      apiVersion: API_VERSION,
      kind: KIND,
      metadata: { name, namespace: NS },
      spec: {
        podName: name,
        podUID: uid,
        nodeName: "node-a",
        containers: [{ name: "app", cpuLimit }],
        market: {
          price: 0,
          capacityMillicores: 4000,
          contended: false,
          computedAt: new Date().toISOString(),
          // No agent vouches for it here: a long market interval keeps it from going stale.
          intervalSeconds: 3600,
        },
      },
    });
    const newPod = async (name: string) => {
      const pod = await core.createNamespacedPod({
        namespace: NS,
        body: burstablePod(NS, name, "node-a", [{
          name: "app",
          cpuRequest: "100m",
          cpuLimit: "200m",
        }]),
      });
      await eventually(
        `${name} running`,
        async () =>
          (await core.readNamespacedPod({ name, namespace: NS })).status?.phase === "Running",
      );
      return pod.metadata!.uid!;
    };
    try {
      const kubeconfig = testbed.identities.controller.kubeconfig;
      // Two heap sizes through DENO_V8_FLAGS, as the manifests set it.
      replicas.push(
        spawnController(kubeconfig, "replica-1", [], {
          DENO_V8_FLAGS: "--max-old-space-size=160",
        }),
        spawnController(kubeconfig, "replica-2", [], {
          DENO_V8_FLAGS: "--max-old-space-size=96",
        }),
      );

      let leader!: Replica;
      let standby!: Replica;
      await t.step(
        "both become ready; exactly one leads; /healthz and /metrics answer",
        async () => {
          for (const r of replicas) {
            await eventually(
              `${r.identity} ready`,
              async () => (await get(r, "/readyz")).status === 200,
              30_000,
            );
          }
          await eventually(
            "a leader",
            async () => (await Promise.all(replicas.map(isLeader))).filter(Boolean).length === 1,
            20_000,
          );
          const flags = await Promise.all(replicas.map(isLeader));
          leader = replicas[flags.indexOf(true)];
          standby = replicas[flags.indexOf(false)];
          assert.equal((await get(leader, "/healthz")).status, 200);
          const lease = await coordination.readNamespacedLease({
            name: "mbcas-controller",
            namespace: "mbcas-system",
          });
          assert.equal(lease.spec?.holderIdentity, leader.identity);
          const limits = await Promise.all(replicas.map(async (r) => {
            const text = (await get(r, "/metrics")).text;
            return Number(/^deno_heap_limit_bytes (\d+)$/m.exec(text)?.[1]);
          }));
          assert.equal(
            limits[0] - limits[1],
            64 * 1024 * 1024,
            `DENO_V8_FLAGS sets the heap: ${limits.join(" vs ")} bytes`,
          );
        },
      );

      await t.step("the leader resizes once; the standby never writes", async () => {
        const uid = await newPod("one");
        await custom.createNamespacedCustomObject({
          group: GROUP,
          version: VERSION,
          namespace: NS,
          plural: PLURAL,
          body: pa("one", uid, "700m"),
        });
        await eventually(
          "resized",
          async () =>
            (await core.readNamespacedPod({ name: "one", namespace: NS })).spec?.containers[0]
              .resources?.limits?.cpu === "700m",
        );
        await new Promise((r) => setTimeout(r, 1500));
        assert.equal(
          (await core.readNamespacedPod({ name: "one", namespace: NS })).metadata?.generation,
          2,
          "exactly one resize",
        );
        assert.match(
          (await get(leader, "/metrics")).text,
          /mbcas_controller_resizes_total\{result="accepted"\} 1/,
        );
        assert.doesNotMatch(
          (await get(standby, "/metrics")).text,
          /mbcas_controller_resizes_total\{result="accepted"\}/,
        );
      });

      await t.step(
        "killing the leader: the standby takes over within 17 s and carries on, without a double resize",
        async () => {
          const uid = await newPod("two");
          leader.child.kill("SIGKILL");
          const killedAt = performance.now();
          await custom.createNamespacedCustomObject({
            group: GROUP,
            version: VERSION,
            namespace: NS,
            plural: PLURAL,
            body: pa("two", uid, "900m"),
          });
          await eventually("standby leads", () => isLeader(standby), 30_000);
          const takeoverMs = performance.now() - killedAt;
          console.log(`takeover after ${Math.round(takeoverMs)} ms`);
          // The design's bound: the lease runs out 10 s after the last renewal, which came at
          // most one retry period (2 s) before the kill and which the standby saw at most one
          // retry period late; then its next attempt. 3 s more for the rounds' requests.
          assert.ok(takeoverMs <= 17_000, `takeover took ${takeoverMs} ms`);
          await eventually(
            "resized by the new leader",
            async () =>
              (await core.readNamespacedPod({ name: "two", namespace: NS })).spec?.containers[0]
                .resources?.limits?.cpu === "900m",
            10_000,
          );
          assert.equal(
            (await core.readNamespacedPod({ name: "one", namespace: NS })).metadata?.generation,
            2,
            "no second resize of the first pod",
          );
          const lease = await coordination.readNamespacedLease({
            name: "mbcas-controller",
            namespace: "mbcas-system",
          });
          assert.equal(lease.spec?.holderIdentity, standby.identity);
          assert.ok((lease.spec?.leaseTransitions ?? 0) >= 1);
        },
      );

      await t.step("SIGTERM stops gracefully (exit 0) and releases the Lease", async () => {
        standby.child.kill("SIGTERM");
        const status = await standby.child.status;
        assert.equal(status.code, 0, await standby.log);
        const lease = await coordination.readNamespacedLease({
          name: "mbcas-controller",
          namespace: "mbcas-system",
        });
        assert.equal(lease.spec?.holderIdentity ?? "", "");
      });

      await t.step("--dry-run computes and records, but patches nothing", async () => {
        const dry = spawnController(kubeconfig, "dry", [
          "--dry-run",
          "true",
          "--leader-elect",
          "false",
        ]);
        replicas.push(dry);
        await eventually(
          "dry ready",
          async () => (await get(dry, "/readyz")).status === 200,
          30_000,
        );
        const uid = await newPod("dry");
        await custom.createNamespacedCustomObject({
          group: GROUP,
          version: VERSION,
          namespace: NS,
          plural: PLURAL,
          body: pa("dry", uid, "800m"),
        });
        const status = await eventually("dry-run status", async () => {
          const s = (await custom.getNamespacedCustomObject({
            group: GROUP,
            version: VERSION,
            namespace: NS,
            plural: PLURAL,
            name: "dry",
          }) as any).status;
          return s?.conditions?.find((c: any) => c.type === "Applied")?.reason === "DryRun"
            ? s
            : undefined;
        });
        assert.match(
          status.conditions.find((c: any) => c.type === "Applied").message,
          /dry run: resizing app to 800m/,
        );
        const pod = await core.readNamespacedPod({ name: "dry", namespace: NS });
        assert.equal(pod.metadata?.generation, 1);
        assert.equal(pod.spec?.containers[0].resources?.limits?.cpu, "200m");
        assert.match(
          (await get(dry, "/metrics")).text,
          /mbcas_controller_resizes_total\{result="dry_run"\} [1-9]/,
        );
        const logs = dry.log;
        dry.child.kill("SIGTERM");
        await dry.child.status;
        const lines = (await logs).split("\n").filter((l) => l.startsWith("{"));
        assert.ok(
          lines.some((l) => JSON.parse(l).message === "dry run: would resize"),
          "JSON-lines logs with the pod",
        );
        const line = JSON.parse(
          lines.find((l) => JSON.parse(l).message === "dry run: would resize")!,
        );
        assert.equal(line.properties.pod, "dry");
        assert.equal(line.properties.namespace, NS);
      });
    } finally {
      for (const r of replicas) {
        try {
          r.child.kill("SIGKILL");
        } catch {
          // exited
        }
        await r.child.status;
        await r.log;
      }
      await cluster.stop();
    }
  },
);

requireOrSkip(
  "controller process: an invalid setting stops it with exit 2 naming the flag and value",
  null,
  async () => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        ...taskRunFlags("controller"),
        MAIN,
        "--max-step-down",
        "2",
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 2);
    assert.match(
      new TextDecoder().decode(out.stderr),
      /invalid --max-step-down: must be at most 1, got "2"/,
    );
    const env = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        ...taskRunFlags("controller"),
        MAIN,
      ],
      env: { MBCAS_RATE_LIMIT_QPS: "fast" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(env.code, 2);
    assert.match(
      new TextDecoder().decode(env.stderr),
      /invalid MBCAS_RATE_LIMIT_QPS \(--rate-limit-qps\): must be a number, got "fast"/,
    );
  },
);

requireOrSkip(
  "controller process: a kubeconfig whose user runs an exec plugin (which its lean API client cannot use) stops it with exit 2 naming the file and the user",
  null,
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "mbcas-exec-kubeconfig-" });
    try {
      const kubeconfig = `${dir}/config`;
      await Deno.writeTextFile(
        kubeconfig,
        JSON.stringify({
          apiVersion: "v1",
          kind: "Config",
          clusters: [{ name: "c", cluster: { server: "https://127.0.0.1:1" } }],
          users: [{
            name: "cloud-user",
            user: { exec: { apiVersion: "client.authentication.k8s.io/v1", command: "true" } },
          }],
          contexts: [{ name: "x", context: { cluster: "c", user: "cloud-user" } }],
          "current-context": "x",
        }),
      );
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["run", ...taskRunFlags("controller"), MAIN, "--kubeconfig", kubeconfig],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const stderr = new TextDecoder().decode(out.stderr);
      assert.equal(out.code, 2, stderr);
      assert.match(
        stderr,
        /mbcas-controller: kubeconfig .*\/config: user "cloud-user" authenticates with exec, which the lean API client does not support; use a token, a token file or a client certificate/,
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);
