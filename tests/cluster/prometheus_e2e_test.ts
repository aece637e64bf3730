// deno-lint-ignore-file no-explicit-any -- Prometheus' HTTP API answers are read as loose JSON
/**
 * A real Prometheus against MBCAS on the local real node (src/cluster):
 * MBCAS deployed from the manifests (`deno task deploy`, deploy/overlays/local)
 * onto a real kubelet and containerd, and Debian's `prometheus` binary as a
 * child process of the test (its own configuration and TSDB in a temporary
 * directory, on 127.0.0.1) scraping the agent and both controller replicas
 * every 5 s. Debian builds Prometheus without Kubernetes service discovery,
 * so the test lists the running pods of mbcas-system every 2 s and writes
 * them as file_sd targets (pod IP and metrics port; the host reaches pods
 * over the CNI bridge), which follows replaced pods. The targets are labelled
 * as the ServiceMonitors of deploy/components/servicemonitor label them: jobs
 * named after the Services, `namespace` and `pod`, the agent's `node`, and
 * honor_labels on the agent. Prometheus loads the shipped
 * deploy/components/monitoring/mbcas-rules.yaml unchanged, evaluated every 5 s.
 *
 * - both jobs are up, the agent's series carry the node's name, every rule
 *   is loaded and evaluates without error, and every expression of the
 *   Grafana dashboard runs;
 * - MBCASAgentNotPublishing is inactive while the agent runs;
 * - with the agent stopped (the DaemonSet's nodeSelector pointed at a label no
 *   node has), MBCASAgentNotPublishing goes pending for the real node, then
 *   firing after its `for` of 1 minute, within 4 minutes of the stop; the
 *   times are printed.
 *
 * Prometheus is stopped and its directory removed in every case; the cluster
 * goes with withLocalCluster.
 */
import assert from "node:assert/strict";
import { api, type LocalCluster } from "../../src/cluster/mod.ts";
import { deployMbcas } from "../../src/lab/run.ts";
import { freePort } from "../../src/testbed/mod.ts";
import { requireOrSkip } from "../_support/requirements.ts";
import { realNodeMissing, withLocalCluster } from "../_support/real_node.ts";
import {
  alertRules,
  collectExpressions,
  DASHBOARD_FILE,
  prometheusMissing,
  readRuleGroups,
  RULES_FILE,
  substituteVariables,
} from "../_support/prometheus.ts";

const AGENT_JOB = "mbcas-agent-metrics";
const CONTROLLER_JOB = "mbcas-controller-metrics";
const ALERT = "MBCASAgentNotPublishing";
/** From the agent's stop until the alert fires: heartbeat age > 60 s, then `for: 1m`, plus scrapes. */
const FIRING_WITHIN_MS = 240_000;

/** A scrape job of the targets in `file`, as the ServiceMonitor of its Service makes it. */
function fileJob(job: string, file: string, honorLabels: boolean) {
  return {
    job_name: job,
    honor_labels: honorLabels,
    file_sd_configs: [{ files: [file], refresh_interval: "5s" }],
  };
}

/** The file_sd target groups of the running agent and controller pods. */
async function podTargets(
  cluster: LocalCluster,
): Promise<
  Record<"agent" | "controller", { targets: string[]; labels: Record<string, string> }[]>
> {
  const list = await api(
    cluster.testbed,
    "GET",
    `/api/v1/namespaces/mbcas-system/pods?labelSelector=${
      encodeURIComponent("app.kubernetes.io/name=mbcas")
    }`,
  );
  const out = { agent: [] as any[], controller: [] as any[] };
  for (const pod of list.items as any[]) {
    const component = pod.metadata.labels?.["app.kubernetes.io/component"];
    if (component !== "agent" && component !== "controller") continue;
    if (pod.status?.phase !== "Running" || !pod.status.podIP || pod.metadata.deletionTimestamp) {
      continue;
    }
    const port = pod.spec.containers.flatMap((c: any) => c.ports ?? [])
      .find((p: any) => p.name === "metrics")?.containerPort;
    if (port === undefined) continue;
    out[component as "agent" | "controller"].push({
      targets: [`${pod.status.podIP}:${port}`],
      labels: {
        namespace: pod.metadata.namespace,
        pod: pod.metadata.name,
        ...(component === "agent" ? { node: pod.spec.nodeName } : {}),
      },
    });
  }
  return out;
}

/**
 * Keeps `dir`/agent.json and `dir`/controller.json up to date with the
 * running pods (every 2 s, written whole through a rename). Resolves once
 * both files exist; `stop` ends the refreshing.
 */
async function refreshTargets(
  cluster: LocalCluster,
  dir: string,
): Promise<{ agent: string; controller: string; stop: () => Promise<void> }> {
  const files = { agent: `${dir}/agent.json`, controller: `${dir}/controller.json` };
  const write = async () => {
    const targets = await podTargets(cluster);
    for (const component of ["agent", "controller"] as const) {
      const text = JSON.stringify(targets[component]);
      const current = await Deno.readTextFile(files[component]).catch(() => null);
      if (current === text) continue;
      await Deno.writeTextFile(`${files[component]}.tmp`, text);
      await Deno.rename(`${files[component]}.tmp`, files[component]);
    }
  };
  await write();
  let running = true;
  const loop = (async () => {
    while (running) {
      await new Promise((r) => setTimeout(r, 2000));
      if (running) await write().catch(() => {}); // the next round retries
    }
  })();
  return {
    ...files,
    stop: async () => {
      running = false;
      await loop;
    },
  };
}

/** Prometheus as a child process on 127.0.0.1:port. */
class Prometheus {
  readonly #child: Deno.ChildProcess;
  readonly #log: Promise<string>;
  #exited = false;
  private constructor(readonly url: string, child: Deno.ChildProcess) {
    this.#child = child;
    this.#log = Promise.all([
      new Response(child.stdout).text(),
      new Response(child.stderr).text(),
    ]).then(([a, b]) => a + b);
    child.status.then(() => this.#exited = true);
  }

  /** Throws, with its log, once prometheus has exited. */
  async assertRunning(): Promise<void> {
    if (this.#exited) throw new Error(`prometheus exited:\n${(await this.#log).slice(-3000)}`);
  }

  /** Starts prometheus with `config` in `dir` (configuration and TSDB). */
  static async start(dir: string, config: unknown): Promise<Prometheus> {
    const file = `${dir}/prometheus.yml`;
    await Deno.writeTextFile(file, JSON.stringify(config, null, 2)); // JSON is YAML
    const port = freePort();
    const child = new Deno.Command("prometheus", {
      args: [
        `--config.file=${file}`,
        `--storage.tsdb.path=${dir}/data`,
        `--web.listen-address=127.0.0.1:${port}`,
        "--log.level=warn",
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    return new Prometheus(`http://127.0.0.1:${port}`, child);
  }

  /** GET of an HTTP API path; resolves to `data`. */
  async get(path: string): Promise<any> {
    const r = await fetch(`${this.url}${path}`, { signal: AbortSignal.timeout(10_000) });
    const body = await r.json();
    if (body.status !== "success") throw new Error(`${path}: ${JSON.stringify(body)}`);
    return body.data;
  }

  /** An instant query's result vector. */
  query(expr: string): Promise<any[]> {
    return this.get(`/api/v1/query?query=${encodeURIComponent(expr)}`).then((d) => d.result);
  }

  /** Stops it (SIGTERM, then SIGKILL after 15 s); resolves to its log. */
  async stop(): Promise<string> {
    try {
      this.#child.kill("SIGTERM");
    } catch {
      // exited already
    }
    const timer = setTimeout(() => {
      try {
        this.#child.kill("SIGKILL");
      } catch {
        // exited
      }
    }, 15_000);
    await this.#child.status;
    clearTimeout(timer);
    return await this.#log;
  }
}

/**
 * Polls `probe` every second until it returns a value; fails with `what` after
 * `timeoutMs`, or at once when `alive` throws.
 */
async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  timeoutMs: number,
  alive: () => Promise<void> = () => Promise.resolve(),
): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  let last: unknown = null;
  while (performance.now() < deadline) {
    await alive();
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${last}` : ""}`);
}

requireOrSkip(
  "Prometheus on the real node: scrapes MBCAS, loads the shipped rules, fires MBCASAgentNotPublishing once the agent stops",
  realNodeMissing() ?? prometheusMissing(),
  async () => {
    await withLocalCluster(async (cluster: LocalCluster) => {
      const log = (line: string) => console.error(`  ${line}`);
      await deployMbcas(cluster, {}, log, "deploy/overlays/local");
      const node = cluster.plan.nodeName;
      const dir = await Deno.makeTempDir({ prefix: "mbcas-prometheus-" });
      let prometheus: Prometheus | null = null;
      let targets: Awaited<ReturnType<typeof refreshTargets>> | null = null;
      try {
        targets = await refreshTargets(cluster, dir);
        prometheus = await Prometheus.start(dir, {
          global: { scrape_interval: "5s", scrape_timeout: "4s", evaluation_interval: "5s" },
          rule_files: [RULES_FILE],
          scrape_configs: [
            fileJob(AGENT_JOB, targets.agent, true),
            fileJob(CONTROLLER_JOB, targets.controller, false),
          ],
        });
        const p = prometheus;
        const started = performance.now();
        const alive = () => p.assertRunning();
        await waitFor(
          "Prometheus ready",
          async () => {
            const r = await fetch(`${p.url}/-/ready`).catch(() => null);
            await r?.body?.cancel();
            return r?.status === 200 ? true : undefined;
          },
          60_000,
          alive,
        );

        // Both jobs up: the agent of the node and both controller replicas.
        await waitFor(
          "both jobs up",
          async () => {
            const up = await p.query(`up{job=~"${AGENT_JOB}|${CONTROLLER_JOB}"} == 1`);
            const agents = up.filter((s) => s.metric.job === AGENT_JOB);
            const controllers = up.filter((s) => s.metric.job === CONTROLLER_JOB);
            return agents.length === 1 && agents[0].metric.node === node && controllers.length === 2
              ? true
              : undefined;
          },
          120_000,
          alive,
        );
        log(`both jobs up ${((performance.now() - started) / 1000).toFixed(0)} s after start`);
        // The agent's series carry the node's name; the controller sees the heartbeat; one leader.
        await waitFor(
          "the agent's series and the heartbeat age of the node",
          async () => {
            const price = await p.query(`mbcas_agent_node_price{node="${node}"}`);
            const age = await p.query(
              `max by (node) (mbcas_controller_agent_heartbeat_age_seconds{node="${node}"}) < 60`,
            );
            const leaders = await p.query("sum(mbcas_controller_leader) == 1");
            return price.length === 1 && age.length === 1 && leaders.length === 1
              ? true
              : undefined;
          },
          60_000,
          alive,
        );

        // Every shipped rule is loaded and evaluates cleanly.
        const expected = readRuleGroups();
        await waitFor(
          "every rule evaluated",
          async () => {
            const { groups } = await p.get("/api/v1/rules");
            const rules = groups.flatMap((g: any) => g.rules);
            return rules.length === expected.reduce((n, g) => n + g.rules.length, 0) &&
                rules.every((r: any) => r.lastEvaluation && !r.lastEvaluation.startsWith("0001"))
              ? true
              : undefined;
          },
          30_000,
          alive,
        );
        const { groups } = await p.get("/api/v1/rules");
        assert.deepEqual(groups.map((g: any) => g.name), expected.map((g) => g.name));
        for (const g of groups) {
          for (const r of g.rules) {
            assert.equal(r.health, "ok", `${r.name}: ${r.lastError}`);
            assert.equal(r.type, "alerting");
          }
        }
        assert.deepEqual(
          groups.flatMap((g: any) => g.rules.map((r: any) => r.name)),
          alertRules(expected).map((r) => r.alert),
        );
        // The dashboard's expressions run here (with the real node as $node).
        const dashboard = JSON.parse(Deno.readTextFileSync(DASHBOARD_FILE));
        for (const e of collectExpressions([], dashboard)) {
          const expr = substituteVariables(e.expr.replaceAll("$node", node))
            .replaceAll('"some-pod"', '".+"');
          await p.query(expr).catch((error) => {
            throw new Error(`${e.origin}: ${expr}: ${error}`);
          });
        }
        const market = await p.query(
          `sum(mbcas_agent_container_usage_millicores{node="${node}"}) >= 0 or vector(0)`,
        );
        assert.equal(market.length, 1);

        // While the agent runs, the alert is inactive (neither pending nor firing).
        const alerts = async () =>
          ((await p.get("/api/v1/alerts")).alerts as any[]).filter((a) =>
            a.labels.alertname === ALERT
          );
        assert.deepEqual(await alerts(), [], `${ALERT} is inactive while the agent runs`);

        // Stop the agent: no node has the label the DaemonSet now asks for.
        await api(
          cluster.testbed,
          "PATCH",
          "/apis/apps/v1/namespaces/mbcas-system/daemonsets/mbcas-agent",
          { spec: { template: { spec: { nodeSelector: { "mbcas.io/no-such-node": "true" } } } } },
          "application/merge-patch+json",
        );
        const stoppedAt = performance.now();
        log(`agent DaemonSet pointed at no node; watching ${ALERT} for ${node}`);
        let pendingMs: number | null = null;
        let seenActiveAt: string | null = null;
        const firing = await waitFor(
          `${ALERT} firing for ${node}`,
          async () => {
            const now = (await alerts()).filter((a) => a.labels.node === node);
            const pending = now.find((a) => a.state === "pending");
            if (pending !== undefined && pendingMs === null) {
              pendingMs = performance.now() - stoppedAt;
              seenActiveAt = pending.activeAt;
              log(`${ALERT} pending ${(pendingMs / 1000).toFixed(0)} s after the stop`);
            }
            return now.find((a) => a.state === "firing");
          },
          FIRING_WITHIN_MS,
          alive,
        );
        const firingMs = performance.now() - stoppedAt;
        log(
          `${ALERT} firing ${(firingMs / 1000).toFixed(0)} s after the stop ` +
            `(active since ${firing.activeAt}, heartbeat age ${Number(firing.value).toFixed(0)} s)`,
        );
        assert.ok(pendingMs !== null, `${ALERT} was pending before it fired`);
        assert.equal(firing.activeAt, seenActiveAt, "the pending alert is the one that fired");
        assert.deepEqual(
          { alertname: firing.labels.alertname, node: firing.labels.node },
          { alertname: ALERT, node },
        );
        assert.equal(firing.labels.severity, "warning");
        assert.ok(Number(firing.value) > 60, `heartbeat age ${firing.value} s`);
        // `for: 1m`, read on Prometheus's own clock: the first evaluation that wrote the
        // alert as firing is at least a minute after the one that made it pending. (When the
        // test saw each state depends on its polling and on this machine's load; a stalled
        // poll once saw pending 11 s late.)
        const [firingSeries] = await p.query(
          `ALERTS{alertname="${ALERT}",alertstate="firing",node="${node}"}[10m]`,
        );
        assert.ok(firingSeries?.values?.length > 0, `${ALERT} has firing samples in ALERTS`);
        const heldMs = Number(firingSeries.values[0][0]) * 1000 - Date.parse(firing.activeAt);
        assert.ok(
          heldMs >= 60_000 && heldMs <= 90_000,
          `first firing evaluation ${(heldMs / 1000).toFixed(1)} s after it became active ` +
            `(for: 1m, evaluation every 5 s)`,
        );
        assert.ok(
          Date.now() - Date.parse(firing.activeAt) >= 60_000,
          "firing at least 1 minute after it became active",
        );
        assert.match(firing.annotations.runbook_url, /alerts\.md#mbcasagentnotpublishing$/);
      } finally {
        await targets?.stop();
        const output = await prometheus?.stop();
        if (output && /level=error/.test(output)) console.error(output.slice(-3000));
        await Deno.remove(dir, { recursive: true }).catch(() => {});
      }
    });
  },
);
