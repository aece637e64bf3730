/**
 * A short lab run through the whole chain on the local real node (the real
 * kubelet, containerd and runc; MBCAS deployed from the shipped manifests):
 * a latency service (protected, 150m limit) is idle for the first 40% of the
 * run, then needs 500m until 75%, then nothing; next to it an elastic batch
 * job of two threads (150m declared) wants more than the node has.
 *
 * - While the service is idle, the batch job's limit rises in the kernel
 *   into the idle CPU, far beyond its declared 150m.
 * - The batch job yields in the kernel: MBCAS lowered its pod's CPU weight
 *   to the lowest, so when the service's load steps up the kernel serves the
 *   service first and the batch job's CPU comes down, with no resize of the
 *   batch job needed.
 * - The service's limit is open (the lab deploys components/elastic-yield,
 *   which sets --protected-limit cap): it rose to its cap, the node's CPU, at
 *   the first clearing, long before its load stepped up, so the step finds
 *   it unthrottled, and it is never lowered. Its guarantee follows its need
 *   up and, after the load stops, down again.
 *
 * Nothing is left behind: no node component, workload, cgroup or mount.
 */
import assert from "node:assert/strict";
import { cpuWeightFile } from "../../src/cgroup/mod.ts";
import { labAllocatable, runLab } from "../../src/lab/run.ts";
import { buildScenario } from "../../src/lab/scenario.ts";
import { renderReport } from "../../src/lab/report.ts";
import { requireOrSkip } from "../_support/requirements.ts";
import { realNodeMissing, runningNodeProcesses } from "../_support/real_node.ts";

function leftovers(): string[] {
  const found: string[] = [];
  for (const h of ["cpu", "cpuacct", "unified", ""]) {
    try {
      for (const e of Deno.readDirSync(`/sys/fs/cgroup/${h}`)) {
        if (e.isDirectory && e.name === "kubepods") found.push(`cgroup ${h}/${e.name}`);
      }
    } catch {
      // hierarchy not mounted
    }
  }
  for (const line of Deno.readTextFileSync("/proc/mounts").split("\n")) {
    if (line.includes("mbcas-cluster-")) found.push(`mount ${line.split(" ")[1]}`);
  }
  found.push(...runningNodeProcesses());
  return found;
}

requireOrSkip(
  "lab (real CPU): an elastic pod's limit rises into idle CPU, it yields in the kernel, and its CPU comes down when a protected pod's load steps up",
  realNodeMissing(),
  async () => {
    assert.deepEqual(leftovers(), [], "nothing of an earlier lab run is around");
    const duration = 60;
    const scenario = buildScenario("spike", duration, labAllocatable());
    const stepAt = scenario.spikes[0].atS;
    const stopAt = Math.round(duration * 0.75);
    const run = await runLab({
      scenario,
      policy: "mbcas",
      seed: 3,
      // A short memory and cooldown, and a resize budget for a minute this
      // busy, so that a 60 s run shows the way down too: the service's step
      // up and its settling took six resizes from 25 s to 42 s in a run, and a
      // budget of 8 (6 for changes that are not protective) then held its way
      // down until 85 s, past the end. 16, as the other tests that step a pod often.
      mbcasFlags: {
        agent: ["--release-half-life-seconds", "4", "--market-interval-ms", "1000"],
        controller: ["--cooldown-seconds", "5", "--max-resizes-per-pod-per-minute", "16"],
      },
    });
    assert.deepEqual(leftovers(), [], "no process, cgroup or mount left");
    assert.equal(run.durationSeconds, duration);
    assert.equal(run.pods.find((p) => p.name === "batch")?.tier, "elastic");
    const web = run.samples.filter((s) => s.pod === "web");
    const batch = run.samples.filter((s) => s.pod === "batch");
    assert.ok(web.length >= duration - 2, `a sample a second (${web.length})`);
    assert.ok(batch.length >= duration - 2, `a sample a second (${batch.length})`);
    const declared = 150;

    // 1. The elastic batch job's limit rose into the idle CPU before the step.
    const idle = batch.filter((s) => s.t < stepAt);
    const risen = Math.max(...idle.map((s) => s.limitMillicores ?? 0));
    assert.ok(
      risen >= 600,
      `the batch job's kernel limit rose from ${declared}m to ${risen}m while the service idled`,
    );
    assert.ok(
      idle.some((s) => (s.usageMillicores ?? 0) >= 500),
      `the batch job used the idle CPU (${idle.map((s) => s.usageMillicores)})`,
    );
    const published = batch.filter((s) =>
      s.guaranteeMillicores != null && s.allocationMillicores != null
    );
    assert.ok(published.length > 0, "the batch job's guarantee and limit were published");
    for (const s of published) {
      assert.ok(
        s.allocationMillicores! >= s.guaranteeMillicores!,
        `t=${s.t}: limit ${s.allocationMillicores}m ≥ guarantee ${s.guaranteeMillicores}m`,
      );
    }

    // 2. The batch job yields in the kernel: its pod's CPU weight is the
    // lowest (MBCAS lowered it) while the service's is the kubelet's, so when
    // the service's load steps up the kernel serves it first, at once, and
    // the batch job's limit need not come down for that.
    const lowest = cpuWeightFile(1).lowest; // cpu.shares on cgroup v1, this machine's hierarchy
    const around = (list: typeof batch) => list.filter((s) => s.t >= stepAt - 5 && s.t <= stopAt);
    // The kubelet rewrites a pod's weight when it resizes the pod; the agent
    // lowers it again at its next sample (1 s), so a sample may catch it.
    const weights = around(batch).map((s) => s.cpuWeight);
    const above = weights.flatMap((w, i) => (w === lowest ? [] : [i]));
    assert.ok(
      above.length <= 3 &&
        above.every((i) =>
          i === weights.length - 1 || weights.slice(i + 1, i + 3).includes(lowest)
        ),
      `the batch job's pod weight was ${lowest} around the load, but for a sample after a resize (${weights})`,
    );
    assert.ok(
      around(web).every((s) => (s.cpuWeight ?? 0) > lowest),
      `the service's pod weight stayed the kubelet's (${around(web).map((s) => s.cpuWeight)})`,
    );
    const median = (values: number[]) =>
      [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
    const before = median(idle.filter((s) => s.t >= stepAt - 10).map((s) => s.usageMillicores));
    const during = median(
      batch.filter((s) => s.t > stepAt + 5 && s.t <= stopAt).map((s) => s.usageMillicores),
    );
    console.log(
      `lab run: batch usage ${before}m before the step, ${during}m during; ` +
        `batch around the step ${
          batch.filter((s) => s.t >= stepAt - 3 && s.t <= stepAt + 8).map((s) =>
            `${s.t}:${s.usageMillicores}/${s.limitMillicores}`
          )
        }; web ${
          web.filter((s) => s.t >= stepAt - 3 && s.t <= stepAt + 8).map((s) =>
            `${s.t}:${s.usageMillicores}/${s.limitMillicores}`
          )
        }`,
    );
    assert.ok(
      during <= before - 200,
      `the batch job's CPU came down while the service ran: median ${before}m → ${during}m`,
    );

    // 3. The service's limit was open before its load stepped up, and it ran
    // near its need, unthrottled.
    const loaded = web.filter((s) => s.t > stepAt && s.t <= stopAt);
    const atStep = web.filter((s) => s.t >= stepAt - 3 && s.t <= stopAt);
    assert.ok(
      atStep.every((s) => (s.limitMillicores ?? 0) >= 1000),
      `the service's kernel limit was open (declared ${declared}m) from before the step: ${
        atStep.map((s) => s.limitMillicores)
      }`,
    );
    const usage = loaded.slice(5).map((s) => s.usageMillicores).sort((a, b) => a - b);
    assert.ok(
      usage[Math.floor(usage.length / 2)] >= 350,
      `median usage ${usage} near the 500m need`,
    );
    const throttled = loaded.reduce((sum, s) => sum + s.throttledMillicores, 0) / 1000;
    assert.ok(throttled <= 0.5, `the service was throttled ${throttled} CPU-s under its load`);
    assert.ok(run.latencies.some((l) => l.latenciesMs.length > 0), "the service served requests");
    assert.ok(
      run.resizes.every((r) =>
        r.pod !== "web" || (r.toMillicores ?? 0) >= (r.fromMillicores ?? Infinity)
      ),
      `no resize lowered the service's open limit (${
        run.resizes.filter((r) => r.pod === "web").map((r) =>
          `${r.fromMillicores}→${r.toMillicores}`
        )
      })`,
    );

    // 4. After the load stopped, the service's demand estimate decayed (4 s
    // half-life), and with it its guarantee.
    const tail = web.filter((s) => s.t > duration - 5);
    const peakDemand = Math.max(...loaded.map((s) => s.demandMillicores ?? 0));
    const endDemand = tail[tail.length - 1].demandMillicores ?? Infinity;
    assert.ok(
      endDemand <= peakDemand * 0.5,
      `the demand estimate came down after the load stopped: ${peakDemand}m → ${endDemand}m`,
    );
    const peakGuarantee = Math.max(...loaded.map((s) => s.guaranteeMillicores ?? 0));
    const endGuarantee = tail[tail.length - 1].guaranteeMillicores ?? Infinity;
    assert.ok(
      peakGuarantee >= 400 && endGuarantee <= peakGuarantee * 0.5,
      `the service's guarantee rose with its need and came down after: ${peakGuarantee}m → ${endGuarantee}m`,
    );
    assert.match(renderReport(run), /data-chart="cpu-0"/);

    // 5. The CPU account: MBCAS's pods used some CPU, and the parts measured
    // separately fit in what the machine used (a tick of /proc is 10 ms).
    const account = run.cpuAccount;
    assert.ok(account !== undefined, "the run recorded where the machine's CPU went");
    assert.equal(account.seconds, duration - 1);
    assert.ok(account.mbcasPodsCpuSeconds > 0, `MBCAS's pods: ${JSON.stringify(account)}`);
    assert.ok(account.harnessCpuSeconds > 0, `the lab's process: ${JSON.stringify(account)}`);
    assert.ok(
      (account.restByCommand?.["kube-apiserver"] ?? 0) > 0,
      `the API server is among the rest: ${JSON.stringify(account.restByCommand)}`,
    );
    const parts = account.scenarioPodsCpuSeconds + account.mbcasPodsCpuSeconds +
      account.harnessCpuSeconds;
    assert.ok(
      parts <= account.machineCpuSeconds + 0.1 &&
        account.machineCpuSeconds <= navigator.hardwareConcurrency * duration,
      `the parts fit in the machine's CPU: ${JSON.stringify(account)}`,
    );
  },
);
