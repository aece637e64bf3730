/**
 * The local real node (src/cluster), on this machine's kernel: a pod runs
 * from an imported image under the real kubelet and containerd, the kubelet
 * writes its CFS quota and rewrites it on a `pods/resize`, the pod reaches
 * the API server through cluster DNS and the `kubernetes` Service, no route
 * leads off the machine, and after the stop nothing is left and nothing
 * changed: processes, cgroups, mounts, network namespaces and links, routes,
 * nftables, sysctls and well-known directories are as before.
 */
import assert from "node:assert/strict";
import { api, diffHost, foreignCgroupPatterns, snapshotHost } from "../../src/cluster/mod.ts";
import { bareContainerID, detectLayout, discover } from "../../src/cgroup/mod.ts";
import { requireOrSkip } from "../_support/requirements.ts";
import {
  cgroupPids,
  containerCgroup,
  inNetns,
  kernelLimitMillicores,
  labPod,
  realNodeMissing,
  runningNodeProcesses,
  runPod,
  waitForPod,
  withLocalCluster,
} from "../_support/real_node.ts";

requireOrSkip(
  "local cluster (real node): a pod runs, the real kubelet resizes its quota, DNS and Services work, no route leaves, and the stop restores the machine",
  realNodeMissing(),
  async () => {
    assert.deepEqual(runningNodeProcesses(), [], "no node component runs before the test");
    const before = await snapshotHost();
    await withLocalCluster(async (cluster) => {
      const plan = cluster.plan;
      const node = await api(cluster.testbed, "GET", `/api/v1/nodes/${plan.nodeName}`);
      assert.equal(node.status.nodeInfo.kubeletVersion, "v1.35.4");
      assert.match(node.status.nodeInfo.containerRuntimeVersion, /^containerd:\/\/2\./);

      // A Burstable pod: request 100m, limit 200m, busy: the kubelet writes the quota.
      const pod = await runPod(
        cluster,
        labPod("burner", "default", { request: "100m", limit: "200m" }, [
          "--kind",
          "batch",
          "--parallelism",
          "1",
          "--out",
          "/results/out.jsonl",
        ]),
      );
      const cgroup = containerCgroup(pod);
      assert.equal(kernelLimitMillicores(cgroup), 200, "the kubelet wrote a 200m quota");

      // The agent's cgroup module finds the real kubelet's tree: the pod, its QoS,
      // its container by the id the status reports, and the sandbox apart (by
      // its minimal CPU weight, without being told the ids).
      const found = discover(detectLayout("/sys/fs/cgroup")).pods.find((p) =>
        p.podUID === pod.metadata.uid
      );
      assert.ok(found !== undefined, "discovery finds the pod's cgroup");
      assert.equal(found.qos, "burstable");
      assert.equal(found.driver, "cgroupfs");
      const app = found.containers.find((c) =>
        c.id === bareContainerID(pod.status.containerStatuses[0].containerID)
      );
      assert.ok(app !== undefined, "and its container, by the id in the pod's status");
      assert.equal(app.sandbox, false);
      assert.equal(found.containers.filter((c) => c.sandbox === true).length, 1, "one sandbox");

      // pods/resize: the real kubelet rewrites the quota in place, no restart.
      const patchedAt = performance.now();
      await api(
        cluster.testbed,
        "PATCH",
        "/api/v1/namespaces/default/pods/burner/resize",
        { spec: { containers: [{ name: "main", resources: { limits: { cpu: "500m" } } }] } },
        "application/strategic-merge-patch+json",
      );
      let quotaMs = -1;
      while (performance.now() - patchedAt < 30_000) {
        if (kernelLimitMillicores(cgroup) === 500) {
          quotaMs = performance.now() - patchedAt;
          break;
        }
        await new Promise((r) => setTimeout(r, 10));
      }
      assert.ok(quotaMs >= 0, "the kernel quota became 500m within 30 s of the resize");
      console.error(`  resize PATCH → kernel quota 500m: ${quotaMs.toFixed(0)} ms`);
      const resized = await waitForPod(
        cluster,
        "default",
        "burner",
        (p) => p.status?.containerStatuses?.[0]?.resources?.limits?.cpu === "500m",
      );
      assert.equal(resized.status.containerStatuses[0].restartCount, 0, "resized in place");

      // The pod's network: routes into the cluster's range only, no default route.
      const pid = cgroupPids(cgroup)[0];
      const routes = await inNetns(pid, ["ip", "-4", "route"]);
      assert.equal(routes.code, 0, routes.stderr);
      assert.doesNotMatch(routes.stdout, /^default/m, "a pod has no default route");
      for (const line of routes.stdout.trim().split("\n")) {
        assert.match(line, /^10\.213\./, `every pod route stays in 10.213.0.0/16: ${line}`);
      }
      // A routing lookup (no packet is sent) for an address off the machine fails.
      const off = await inNetns(pid, ["ip", "-4", "route", "get", "192.0.2.1"]);
      assert.notEqual(off.code, 0, `no route off the machine: ${off.stdout}`);
      assert.match(off.stderr, /unreachable/i);
      // The host forwards nothing from the bridge elsewhere.
      const guard = await new Deno.Command("nft", {
        args: ["list", "table", "inet", plan.guardTable],
        stdout: "piped",
      }).output();
      assert.match(
        new TextDecoder().decode(guard.stdout),
        new RegExp(`iifname "${plan.bridge}" oifname != "${plan.bridge}" drop`),
      );

      // Cluster DNS and the kubernetes Service, from a pod, as the agent will use them.
      await runPod(
        cluster,
        labPod("dns", "default", { request: "50m", limit: "500m" }, [
          "eval",
          `const c = await Deno.connect({ hostname: "kubernetes.default.svc", port: 443 });
           console.log("connected to", c.remoteAddr.hostname); c.close();
           await new Promise((r) => setTimeout(r, 60000));`,
        ], { command: ["/deno"] }),
      );
      let logs = "";
      const deadline = performance.now() + 30_000;
      while (performance.now() < deadline && !logs.includes("connected")) {
        logs = await api(
          cluster.testbed,
          "GET",
          "/api/v1/namespaces/default/pods/dns/log",
        ).catch(() => "");
        await new Promise((r) => setTimeout(r, 250));
      }
      assert.match(
        logs,
        new RegExp(`connected to ${plan.apiServiceIp.replaceAll(".", "\\.")}`),
        "kubernetes.default.svc resolved and the Service led to the API server",
      );
    });
    const after = await snapshotHost();
    const ignoreCgroups = await foreignCgroupPatterns(before);
    assert.deepEqual(diffHost(before, after, { ignoreCgroups }), [], "the machine is as before");
    assert.deepEqual(runningNodeProcesses(), [], "no node component or workload is left");
  },
);
