/**
 * `deno task bench:scale` at a tiny scale (5 KWOK nodes, 50 pods, 25 opted
 * in, short windows): the plumbing works end to end — KWOK makes every pod
 * Running (the benchmark fails otherwise), the controller reconciles every
 * PodAllocation and resizes every changed pod — and every printed figure
 * parses and is sane.
 */
import assert from "node:assert/strict";
import { requireOrSkip, testbedMissing } from "../_support/requirements.ts";

const BENCH = new URL("./scale_bench.ts", import.meta.url).pathname;

/** The first match of `pattern` in `text` (its groups as numbers), or a failure naming the line sought. */
function figures(text: string, pattern: RegExp): number[] {
  const m = pattern.exec(text);
  assert.ok(m !== null, `no line matching ${pattern} in:\n${text}`);
  return m.slice(1).map(Number);
}

requireOrSkip(
  "bench:scale at 5 nodes and 50 pods: runs, and its figures are sane",
  testbedMissing(),
  async () => {
    const run = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--no-prompt",
        "--allow-all",
        BENCH,
        "--nodes",
        "5",
        "--pods",
        "50",
        "--rest-seconds",
        "4",
        "--phase-seconds",
        "1",
      ],
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(300_000),
    }).output();
    const out = new TextDecoder().decode(run.stdout);
    const err = new TextDecoder().decode(run.stderr);
    assert.ok(run.success, `bench:scale failed (${run.code}):\n${out}\n${err.slice(-4000)}`);

    const [running, pods] = figures(out, /(\d+)\/(\d+) Running after [\d.]+ s/);
    assert.equal(pods, 50);
    assert.equal(running, 50, "KWOK must make every pod Running");
    assert.match(out, /a pod is [\d.]+ KB of JSON \(managedFields [\d.]+ KB\)/);
    const [podKb, managedKb] = figures(
      out,
      /a pod is ([\d.]+) KB of JSON \(managedFields ([\d.]+) KB\)/,
    );
    assert.ok(
      podKb > 8 && managedKb > 2,
      `pods are realistic: ${podKb} KB, managedFields ${managedKb} KB`,
    );

    const [cold] = figures(out, /every PodAllocation reconciled: ([\d.]+) s/);
    assert.ok(cold > 0 && cold < 60, `cold start ${cold} s`);
    const [rss] = figures(out, /controller peak RSS: (\d+) MB/);
    assert.ok(rss > 30 && rss < 2000, `peak RSS ${rss} MB`);

    const rest = [
      ...out.matchAll(
        /controller CPU ([\d.]+)% of a core; API requests beyond watches ([\d.]+)\/s/g,
      ),
    ];
    assert.equal(rest.length, 2, "two at-rest windows: before and after the API server restart");
    for (const [, cpu, perSecond] of rest) {
      assert.ok(Number(cpu) >= 0 && Number(cpu) < 100, `at-rest CPU ${cpu}%`);
      assert.ok(
        Number(perSecond) >= 0 && Number(perSecond) < 50,
        `at-rest requests ${perSecond}/s`,
      );
    }

    const phases = [
      ...out.matchAll(
        /at (\d+) changes\/s \((\d+) changes.*?: (\d+)\/(\d+) resized.*?p50 (-?\d+) ms, p99 (-?\d+) ms \((\d+) matched\); on a pod watch.*?p50 (\d+) ms, p99 (\d+) ms/g,
      ),
    ].map((m) => m.slice(1).map(Number));
    assert.deepEqual(phases.map((p) => p[0]), [50, 200]);
    for (const [, changes, resized, of, p50, p99, matched, w50, w99] of phases) {
      assert.ok(changes > 0 && changes <= 25);
      assert.equal(resized, of, "every changed pod resized");
      assert.equal(matched, changes, "every change matched to its resize in the audit log");
      // The resize may reach the API server a little before the change's own response is logged.
      assert.ok(p50 > -50 && p50 <= p99 && p99 < 60_000, `server-side p50 ${p50} p99 ${p99}`);
      assert.ok(w50 >= 0 && w50 <= w99 && w99 < 60_000, `watch p50 ${w50} p99 ${w99}`);
    }

    assert.match(
      out,
      /API server restart: back after [\d.]+ s; the controller re-listed \d+ times/,
    );
    const [reconciled, optedIn] = figures(
      out,
      /PodAllocations reconciled at the end: (\d+)\/(\d+)/,
    );
    assert.equal(optedIn, 25);
    assert.equal(reconciled, 25);

    const table = out.split("\n").filter((l) => /^\s{4}\S/.test(l) && !/^\s+phase/.test(l));
    assert.ok(table.length >= 7, `a CPU row per phase:\n${table.join("\n")}`);
    for (const row of table) {
      const values = row.trim().split(/\s{2,}/).slice(1).filter((v) => v !== "-").map(Number);
      assert.ok(values.every((v) => v >= 0 && v <= navigator.hardwareConcurrency + 0.5), row);
    }
  },
);
