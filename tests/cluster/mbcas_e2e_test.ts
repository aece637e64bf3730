/**
 * MBCAS end to end on the local real node (src/cluster): `deno task deploy`
 * with the shipped manifests (deploy/overlays/local changes only image names
 * and pull policy) onto a real kubelet and containerd, then:
 *
 * - both rollouts complete; the agent runs as uid 65532 with a read-only root
 *   and reads the real kubelet's cgroups through the read-only hostPath;
 * - Pod Security is enforced by admission: the workloads run in a namespace
 *   enforcing `restricted`, where a pod with the agent's hostPath is refused;
 * - MBCAS's admission policies hold with the real kubelet's tokens: the
 *   agent's projected token writes its node's PodAllocations and is denied
 *   another node's;
 * - an opted-in Burstable pod whose load exceeds its limit has its limit
 *   raised by MBCAS, and the new quota appears in its container's cgroup as
 *   written by the real kubelet; after the load stops it comes down again;
 *   the time from the load step to the new quota in the kernel is printed
 *   for every step;
 * - deleting the leader pod hands the Lease to the other replica, and the
 *   new leader does not resize again what the old one applied;
 * - `deno task undeploy` gives the pod MBCAS raised its declared limit back (spec and kernel
 *   quota), then removes everything.
 *
 * The agent's release half-life and the controller's cooldown are shortened
 * through their environment variables (`kubectl set env`, a rolling update
 * of both), so the way down fits a test; everything else is as shipped.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { parseMillicores } from "../../src/api/mod.ts";
import { api, type LocalCluster } from "../../src/cluster/mod.ts";
import { deployMbcas } from "../../src/lab/run.ts";
import { requireOrSkip } from "../_support/requirements.ts";
import {
  cgroupPids,
  containerCgroup,
  kernelLimitMillicores,
  labPod,
  measureLoadSteps,
  realNodeMissing,
  startLoadPods,
  withLocalCluster,
} from "../_support/real_node.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const NS = "mbcas-e2e";

async function task(
  cluster: LocalCluster,
  name: string,
  args: string[],
): Promise<{ code: number; output: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["task", name, ...args],
    cwd: ROOT,
    env: { PATH: `${cluster.bin}:${Deno.env.get("PATH")}`, NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const d = new TextDecoder();
  return { code: out.code, output: d.decode(out.stdout) + d.decode(out.stderr) };
}

/** kubectl as the bearer of `token`, with `input` on stdin: its exit code and output. */
async function kubectlAs(
  cluster: LocalCluster,
  token: string,
  args: string[],
  input: string,
): Promise<{ code: number; output: string }> {
  const child = new Deno.Command(join(cluster.bin, "kubectl"), {
    args: ["--kubeconfig", cluster.kubeconfig, "--token", token, ...args],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(input));
  await writer.close();
  const out = await child.output();
  const d = new TextDecoder();
  return { code: out.code, output: d.decode(out.stdout) + d.decode(out.stderr) };
}

/** The agent's heartbeat Lease is held by its node and was renewed within the last 30 s. */
async function heartbeatRenewed(cluster: LocalCluster): Promise<void> {
  const node = cluster.plan.nodeName;
  const lease = await api(
    cluster.testbed,
    "GET",
    `/apis/coordination.k8s.io/v1/namespaces/mbcas-system/leases/mbcas-agent-${node}`,
  );
  assert.equal(lease.spec.holderIdentity, node);
  const age = Date.now() - Date.parse(lease.spec.renewTime);
  assert.ok(age < 30_000, `the heartbeat was renewed ${age} ms ago (every 10 s)`);
}

async function kubectl(cluster: LocalCluster, args: string[]): Promise<string> {
  const out = await new Deno.Command(join(cluster.bin, "kubectl"), {
    args: ["--kubeconfig", cluster.kubeconfig, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const d = new TextDecoder();
  if (!out.success) throw new Error(`kubectl ${args.join(" ")}: ${d.decode(out.stderr)}`);
  return d.decode(out.stdout);
}

// deno-lint-ignore no-explicit-any
async function pods(cluster: LocalCluster, selector: string): Promise<any[]> {
  const list = await api(
    cluster.testbed,
    "GET",
    `/api/v1/namespaces/mbcas-system/pods?labelSelector=${encodeURIComponent(selector)}`,
  );
  return list.items;
}

async function leaseHolder(cluster: LocalCluster): Promise<string | null> {
  const lease = await api(
    cluster.testbed,
    "GET",
    "/apis/coordination.k8s.io/v1/namespaces/mbcas-system/leases/mbcas-controller",
  ).catch(() => null);
  return lease?.spec?.holderIdentity ?? null;
}

requireOrSkip(
  "MBCAS on the real node: deployed from images, raises and lowers a throttled pod's kernel quota, hands leadership over, undeploys",
  realNodeMissing(),
  async () => {
    await withLocalCluster(async (cluster) => {
      const kubeconfig = cluster.kubeconfig;
      // deno task deploy with the local overlay (the shipped defaults), then a faster release and
      // cooldown for the way down (a rolling update of both, waited for).
      await deployMbcas(
        cluster,
        {
          agent: ["--release-half-life-seconds", "4"],
          // Several load steps a minute, each up and back down: more resizes than the
          // default per-pod budget (4 a minute) allows.
          controller: ["--cooldown-seconds", "4", "--max-resizes-per-pod-per-minute", "16"],
        },
        (line) => console.error(`  ${line}`),
        "deploy/overlays/local",
      );

      // The agent: uid 65532, read-only root, reading the real kubelet's cgroups.
      const [agentPod] = (await pods(cluster, "app.kubernetes.io/component=agent"))
        .filter((p) => p.metadata.deletionTimestamp === undefined);
      const agentCgroup = containerCgroup(agentPod, "agent");
      const agentPid = cgroupPids(agentCgroup)[0];
      const status = Deno.readTextFileSync(`/proc/${agentPid}/status`);
      assert.match(status, /^Uid:\s+65532\s+65532\s+65532\s+65532$/m, "the agent runs as 65532");
      const rootMount = Deno.readTextFileSync(`/proc/${agentPid}/mountinfo`).split("\n")
        .find((l) => l.split(" ")[4] === "/");
      assert.match(rootMount ?? "", /\sro[,\s]/, `the agent's root is read-only: ${rootMount}`);
      const cgroupMount = Deno.readTextFileSync(`/proc/${agentPid}/mountinfo`).split("\n")
        .find((l) => l.split(" ")[4] === "/host/cgroup");
      assert.match(cgroupMount ?? "", /\sro[,\s]/, `/host/cgroup is read-only: ${cgroupMount}`);

      // An opted-in namespace with a batch job that wants more than the node
      // has and a service of priority 4, on for 20 s and off for 40 s; its
      // first on phase starts 30 s from now.
      const phases = { epochMs: Date.now() + 30_000, onS: 20, offS: 40, steps: 3 };
      const { web, batch } = await startLoadPods(cluster, NS, phases);
      // Pod Security is enforced at admission: the namespace is `restricted`, its
      // pods meet it, and a pod with the agent's hostPath is refused there.
      const hostPathPod = labPod("hostpath", NS, { request: "10m", limit: "100m" }, []);
      (hostPathPod.spec as { volumes: unknown[] }).volumes.push({
        name: "cgroup",
        hostPath: { path: "/sys/fs/cgroup" },
      });
      const refused = await api(
        cluster.testbed,
        "POST",
        `/api/v1/namespaces/${NS}/pods`,
        hostPathPod,
      ).then(() => "admitted", (error: Error) => error.message);
      assert.match(
        refused,
        /403 .*violates PodSecurity .*restricted:latest.*: restricted volume types \(volume .*cgroup.* uses restricted volume type .*hostPath.*\)"/,
      );
      const cgroup = containerCgroup(web);
      const declared = 200;
      assert.equal(kernelLimitMillicores(cgroup), declared);
      // The agent publishes a PodAllocation for it, computed from the kernel's signals.
      const pa = await waitForAllocation(
        cluster,
        "web",
        (p) => (p.spec?.containers?.length ?? 0) > 0,
      );
      assert.equal(pa.spec.nodeName, cluster.plan.nodeName);
      // The admission policies (deploy/policy) hold with the real kubelet's tokens: the
      // agent's own projected token, read from its container, wrote that allocation and is
      // denied one for another node, with the policy's message.
      // Its heartbeat Lease is renewed under mbcas-agent-own-heartbeat: held by its node.
      await heartbeatRenewed(cluster);
      const agentToken = Deno.readTextFileSync(
        `/proc/${agentPid}/root/var/run/secrets/kubernetes.io/serviceaccount/token`,
      ).trim();
      const forged = await kubectlAs(
        cluster,
        agentToken,
        ["create", "-f", "-"],
        JSON.stringify({
          apiVersion: pa.apiVersion,
          kind: pa.kind,
          metadata: { name: "forged", namespace: NS },
          spec: { ...pa.spec, podName: "forged", nodeName: "another-node" },
        }),
      );
      assert.notEqual(forged.code, 0, forged.output);
      assert.match(
        forged.output,
        new RegExp(
          `mbcas-agent-own-node.*the mbcas-agent of node ${cluster.plan.nodeName} may not write a PodAllocation for node another-node`,
        ),
      );

      // Three load steps: the time from the start of each on phase to the
      // raised quota in the kernel, the peak, and the way back down while idle.
      const steps = await measureLoadSteps(cgroup, phases, (k, step) =>
        console.error(
          `  step ${k + 1}: limit ${step.limitBefore}m, on phase → raised quota in ${
            step.spikeToQuotaMs ?? "never"
          } ms, peak ${step.peak}m, lowest while idle ${step.lowestAfter}m`,
        ));
      for (const [k, step] of steps.entries()) {
        assert.ok(step.spikeToQuotaMs !== null, `step ${k + 1}: the kernel quota was raised`);
        assert.ok(step.peak >= 2 * declared, `step ${k + 1}: the limit rose to ${step.peak}m`);
        assert.ok(
          step.lowestAfter <= declared,
          `step ${k + 1}: the limit came back to ≤ ${declared}m while idle (${step.lowestAfter}m)`,
        );
      }

      // Leadership: with the service gone, the batch job's allocation settles;
      // delete the leader pod: the other replica takes over, and resizes the
      // batch pod no more often than its allocation changes (no double resize
      // of what the old leader applied).
      await api(
        cluster.testbed,
        "DELETE",
        `/api/v1/namespaces/${NS}/pods/web?gracePeriodSeconds=0`,
      );
      await new Promise((r) => setTimeout(r, 10_000));
      const holder = await leaseHolder(cluster);
      assert.ok(holder !== null, "a controller replica holds the Lease");
      const generations = async () => {
        const pod = await api(cluster.testbed, "GET", `/api/v1/namespaces/${NS}/pods/batch`);
        const allocation = await waitForAllocation(cluster, "batch", () => true);
        // Settled: the pod runs under its allocation, so no resize is still owed to
        // an earlier change (one held by the cooldown or the budget would land later).
        // deno-lint-ignore no-explicit-any
        const settled = allocation.spec.containers.every((c: any) =>
          parseMillicores(c.cpuLimit) ===
            parseMillicores(
              // deno-lint-ignore no-explicit-any
              pod.spec.containers.find((p: any) => p.name === c.name)?.resources?.limits?.cpu ??
                "",
            )
        );
        return {
          pod: pod.metadata.generation as number,
          allocation: allocation.metadata.generation as number,
          settled,
        };
      };
      let before = await generations();
      const settledIn = await waitUntilMs(
        async () => (before = await generations()).settled,
        30_000,
      );
      console.error(
        settledIn === null
          ? "  the batch pod did not settle at its allocation within 30 s; measuring from here"
          : `  the batch pod runs under its allocation (${settledIn.toFixed(0)} ms)`,
      );
      await api(
        cluster.testbed,
        "DELETE",
        `/api/v1/namespaces/mbcas-system/pods/${holder}?gracePeriodSeconds=1`,
      );
      const taken = await waitUntilMs(async () => {
        const h = await leaseHolder(cluster);
        return h !== null && h !== holder;
      }, 60_000);
      assert.ok(taken !== null, "another replica took the Lease over");
      await new Promise((r) => setTimeout(r, 8_000));
      const after = await generations();
      const resizes = after.pod - before.pod;
      const changes = after.allocation - before.allocation;
      console.error(
        `  handover in ${taken.toFixed(0)} ms; then ${resizes} resize(s) of the batch pod ` +
          `for ${changes} allocation change(s)`,
      );
      assert.ok(
        resizes <= changes,
        `the new leader resized ${resizes} times for ${changes} allocation changes`,
      );

      // Undeploy gives the batch job, which MBCAS raised, its declared 200m back:
      // the controller restores it before it is removed, in the kernel too.
      const batchCgroup = containerCgroup(batch);
      assert.ok(
        kernelLimitMillicores(batchCgroup)! > declared,
        `MBCAS raised the batch job (${kernelLimitMillicores(batchCgroup)}m)`,
      );
      // Minutes later, the heartbeat is still renewed (every 10 s) under the policy.
      await heartbeatRenewed(cluster);
      const undeploy = await task(cluster, "undeploy", [
        "--kubeconfig",
        kubeconfig,
        "--overlay",
        "deploy/overlays/local",
      ]);
      assert.equal(undeploy.code, 0, `deno task undeploy succeeded:\n${undeploy.output}`);
      assert.match(
        undeploy.output,
        /restored the declared CPU limits of 1 pod: 1 by the controller, 0 by undeploy; 0 could not be restored/,
      );
      const restored = await api(cluster.testbed, "GET", `/api/v1/namespaces/${NS}/pods/batch`);
      assert.equal(restored.spec.containers[0].resources.limits.cpu, "200m");
      const kernelBack = await waitUntilMs(
        () => Promise.resolve(kernelLimitMillicores(batchCgroup) === declared),
        30_000,
      );
      assert.ok(kernelBack !== null, `the kernel quota is back at ${declared}m`);
      const left = await kubectl(cluster, [
        "get",
        "crd,clusterrole,clusterrolebinding,namespace,validatingadmissionpolicy,validatingadmissionpolicybinding",
        "-o",
        "name",
      ]);
      assert.doesNotMatch(left, /mbcas-system|mbcas\.io|mbcas-agent|mbcas-controller/, left);
    });
  },
);

/** The pod's PodAllocation once `ok` holds; fails after 60 s. */
async function waitForAllocation(
  cluster: LocalCluster,
  pod: string,
  // deno-lint-ignore no-explicit-any
  ok: (pa: any) => boolean,
  // deno-lint-ignore no-explicit-any
): Promise<any> {
  // deno-lint-ignore no-explicit-any
  let found: any = null;
  const waited = await waitUntilMs(async () => {
    found = await api(
      cluster.testbed,
      "GET",
      `/apis/allocation.mbcas.io/v1alpha1/namespaces/${NS}/podallocations/${pod}`,
    ).catch(() => null);
    return found !== null && ok(found);
  }, 60_000);
  assert.ok(waited !== null, `the agent published the PodAllocation ${NS}/${pod} as expected`);
  return found;
}

async function waitUntilMs(
  probe: () => boolean | Promise<boolean>,
  timeoutMs: number,
): Promise<number | null> {
  const start = performance.now();
  while (performance.now() - start < timeoutMs) {
    try {
      if (await probe()) return performance.now() - start;
    } catch {
      // not yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return null;
}
