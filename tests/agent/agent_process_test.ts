/**
 * The agent as users run it (`src/agent/main.ts` in a subprocess, reading
 * nothing but the cgroup tree and its kubeconfig files): probes, metrics,
 * `explain`, a restart that does not cut allocations, an API server outage
 * ridden out, and configuration errors.
 */
import assert from "node:assert/strict";
import { burstablePod, eventually } from "../k8s/_helpers.ts";
import { requireOrSkip, testbedMissing } from "../_support/requirements.ts";
import { freePort } from "../../src/testbed/mod.ts";
import { millicores as m, NodeLab, NS } from "./_node_lab.ts";
import { taskRunFlags } from "../_support/task_flags.ts";

const MAIN = new URL("../../src/agent/main.ts", import.meta.url).pathname;
const EXPLAIN = new URL("../../src/cli/explain.ts", import.meta.url).pathname;

/** The agent task's flags, with reads narrowed to exactly the given paths. */
function agentFlags(readable: string[]): string[] {
  return taskRunFlags("agent").map((
    f,
  ) => (f === "--allow-read" ? `--allow-read=${readable.join(",")}` : f));
}

requireOrSkip(
  "agent process: probes, metrics, explain, restart without cuts, API outage",
  testbedMissing(),
  async (t) => {
    const lab = await NodeLab.start(2000);
    const { testbed, fixture, load } = lab;
    const port = freePort();
    let agent: Deno.ChildProcess | null = null;
    const spawnAgent = () =>
      new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          ...agentFlags([fixture.root, testbed.dir]),
          MAIN,
          "--kubeconfig",
          testbed.identities.agent.kubeconfig,
          "--node-name",
          "node-a",
          "--cgroup-root",
          fixture.root,
          "--metrics-port",
          String(port),
          "--bind-address",
          "127.0.0.1",
          "--sampling-interval-ms",
          "250",
          "--market-interval-ms",
          "1000",
        ],
        stdout: "null",
        stderr: "piped",
      }).spawn();
    const pa = (name: string) => lab.pa(name);
    const runPod = async (name: string, request: string) =>
      (await lab.runPod(
        burstablePod(NS, name, "node-a", [{ name: "app", cpuRequest: request, cpuLimit: "1" }]),
      ))[0];
    try {
      const web = await runPod("web", "500m");
      const batch = await runPod("batch", "500m");
      load.set(web, { usage: 900, throttled: 300 }); // needs ~1.2 cores
      load.set(batch, { usage: 1000, throttled: 2000 }); // needs 3 cores
      agent = spawnAgent();

      await t.step("ready, metrics, and a contended market published", async () => {
        await eventually(
          "ready",
          async () =>
            (await fetch(`http://127.0.0.1:${port}/readyz`).then((r) => r.status, () => 0)) === 200,
          20_000,
        );
        // Measured evidence on both: an allocation that moves less than the write
        // threshold is not written again, so the first one's evidence (not yet
        // measured) could otherwise stay in place and read as "unmeasured".
        const measured = async (name: string) => {
          const object = await pa(name);
          const evidence = object?.spec.containers[0].evidence;
          return evidence !== undefined && evidence.measured !== false ? object : undefined;
        };
        await eventually(
          "both allocations measured, contended",
          async () => (await measured("web"))?.spec.market.contended && (await measured("batch")),
        );
        const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
        assert.match(
          metrics,
          /mbcas_agent_container_allocation_millicores\{container="app",namespace="shop",pod="web"\} \d+/,
        );
        assert.match(
          metrics,
          /mbcas_agent_container_demand_millicores\{container="app",namespace="shop",pod="batch"\} \d+/,
        );
        assert.match(metrics, /^mbcas_agent_node_price [0-9.e-]+$/m);
        assert.match(
          metrics,
          /mbcas_agent_container_throttled_ratio\{container="app",namespace="shop",pod="batch"\} 1/,
        );
        assert.match(
          metrics,
          /mbcas_agent_api_writes_total\{operation="create",result="ok"\} [1-9]/,
        );
        assert.match(metrics, /mbcas_agent_market_clearing_duration_seconds_count [1-9]/);
      });

      await t.step("explain prints the node's market as a table", async () => {
        const out = await new Deno.Command(Deno.execPath(), {
          args: [
            "run",
            ...taskRunFlags("explain"),
            EXPLAIN,
            "--node",
            "node-a",
            "--kubeconfig",
            testbed.identities.admin.kubeconfig,
          ],
          stdout: "piped",
          stderr: "piped",
        }).output();
        const text = new TextDecoder().decode(out.stdout);
        assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
        // Every message carries the whole table, so a failure shows what was printed.
        assert.match(
          text,
          /node node-a: capacity 2000m for managed pods, contended, price [0-9.e+-]+ weight per millicore/,
          text,
        );
        assert.match(
          text,
          /POD\s+CONTAINER\s+TIER\s+FLOOR\s+USAGE\s+THROTTLED\s+DEMAND\s+WEIGHT\s+CAP\s+GUARANTEE\s+LIMIT\s+DECLARED/,
          text,
        );
        assert.match(
          text,
          /shop\/batch\s+app\s+protected\s+500m\s+\d+m\s+\d+%\s+\d+m\s+500\s+2000m\s+\S+\s+\S+/,
          text,
        );
        assert.match(text, /shop\/web\s+app\s+protected\s+500m/, text);
      });

      await t.step("a restarted agent does not cut allocations on its first samples", async () => {
        const before = m((await pa("web")).spec.containers[0].cpuLimit);
        agent!.kill("SIGTERM");
        assert.equal((await agent!.status).code, 0);
        await agent!.stderr.cancel();
        load.set(web, { usage: 50, throttled: 0 }); // the load dropped while the agent was away
        agent = spawnAgent();
        await eventually(
          "ready again",
          async () =>
            (await fetch(`http://127.0.0.1:${port}/readyz`).then((r) => r.status, () => 0)) === 200,
          20_000,
        );
        const lows: number[] = [];
        const until = performance.now() + 4000;
        while (performance.now() < until) {
          lows.push(m((await pa("web")).spec.containers[0].cpuLimit));
          await new Promise((r) => setTimeout(r, 250));
        }
        assert.ok(
          Math.min(...lows) >= before * 0.8,
          `allocation fell from ${before}m to ${Math.min(...lows)}m right after the restart`,
        );
      });

      await t.step("an API server outage is ridden out; the agent catches up", async () => {
        await testbed.stopApiserver();
        await new Promise((r) => setTimeout(r, 3000));
        assert.equal(
          (await fetch(`http://127.0.0.1:${port}/healthz`)).status,
          200,
          "alive during the outage",
        );
        await testbed.startApiserver();
        // A pod that appears after the outage gets its allocation: the agent's watches came back.
        const late = await runPod("late", "250m");
        load.set(late, { usage: 200, throttled: 0 });
        const allocation = await eventually("late pod's allocation", () => pa("late"), 30_000);
        assert.equal(allocation.spec.nodeName, "node-a");
        // And the market now splits 2000m three ways: the guarantees add up to
        // the node (limits, caps rather than reservations, may add up to more).
        const all = await Promise.all(["web", "batch", "late"].map(pa));
        const total = all.reduce((s, p) => s + m(p.spec.containers[0].cpuGuarantee ?? "0"), 0);
        assert.ok(Math.abs(total - 2000) <= 60, `guarantees add up to ${total}m`);
      });
    } finally {
      if (agent !== null) {
        try {
          agent.kill("SIGKILL");
        } catch {
          // exited
        }
        await agent.status;
        await agent.stderr.cancel().catch(() => {});
      }
      await lab.stop();
    }
  },
);

requireOrSkip(
  "agent process: invalid configuration and a missing cgroup root exit 2 naming the problem",
  null,
  async () => {
    for (
      const [args, env, pattern] of [
        [
          ["--node-name", "n", "--sampling-interval-ms", "5"],
          {},
          /invalid --sampling-interval-ms: must be at least 100, got "5"/,
        ],
        [
          ["--node-name", "n"],
          { MBCAS_MAX_CPU: "lots" },
          /invalid MBCAS_MAX_CPU \(--max-cpu\): must be a CPU quantity/,
        ],
        [[], {}, /invalid --node-name: must be set/],
      ] as [string[], Record<string, string>, RegExp][]
    ) {
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["run", ...taskRunFlags("agent"), MAIN, ...args],
        env,
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.equal(out.code, 2, args.join(" "));
      assert.match(new TextDecoder().decode(out.stderr), pattern);
    }
    // A cgroup root that is not there: exit 2 naming it (before any API call).
    const dir = await Deno.makeTempDir();
    try {
      const kubeconfig = `${dir}/kubeconfig`;
      await Deno.writeTextFile(
        kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:1\nusers:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: u\ncurrent-context: x\n",
      );
      const out = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          ...taskRunFlags("agent"),
          MAIN,
          "--node-name",
          "n",
          "--kubeconfig",
          kubeconfig,
          "--cgroup-root",
          `${dir}/nope`,
          "--metrics-port",
          "0",
        ],
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.equal(out.code, 2);
      assert.match(
        new TextDecoder().decode(out.stderr),
        new RegExp(`cgroup root ${dir}/nope does not exist`),
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);
