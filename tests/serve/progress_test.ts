/** ProgressTracker: stalls, messages, the gauge and the watchdog, on a fake clock. */
import assert from "node:assert/strict";
import { Registry } from "../../src/metrics/mod.ts";
import { ProgressTracker } from "../../src/serve/mod.ts";

function tracker(start = 1_000_000) {
  const clock = { now: start };
  return { clock, progress: new ProgressTracker({ now: () => clock.now }) };
}

Deno.test("progress: a loop stalls once its bound passes without a beat, counted from registration if it never beat", () => {
  const { clock, progress } = tracker();
  progress.register("market", 25_000);
  progress.register("sampling", 20_000);
  assert.deepEqual(progress.stalled(), []);
  clock.now += 20_001;
  assert.deepEqual(progress.stalled().map((s) => s.loop), ["sampling"]);
  assert.equal(progress.stalled()[0].everBeat, false);
  progress.beat("sampling");
  progress.beat("market", clock.now - 1_000);
  assert.deepEqual(progress.stalled(), []);
  assert.equal(progress.lastBeat("market"), clock.now - 1_000);
  clock.now += 24_000;
  assert.deepEqual(progress.stalled().map((s) => s.loop), ["sampling"]);
  const [s] = progress.stalled();
  assert.deepEqual(s, {
    loop: "sampling",
    lastProgressMs: clock.now - 24_000,
    sinceMs: 24_000,
    boundMs: 20_000,
    everBeat: true,
  });
  // Exactly at the bound is not stalled yet; the explicit nowMs wins over the clock.
  assert.deepEqual(progress.stalled(clock.now - 4_000), []);
  clock.now += 1_001;
  assert.deepEqual(progress.stalled().map((s) => s.loop), ["market", "sampling"]);
});

Deno.test("progress: an older beat does not move the last progress back; unregistered loops never stall", () => {
  const { clock, progress } = tracker();
  progress.register("a", 1_000);
  progress.beat("a", clock.now);
  progress.beat("a", clock.now - 5_000);
  assert.equal(progress.lastBeat("a"), clock.now);
  progress.beat("free");
  clock.now += 1e9;
  assert.deepEqual(progress.stalled().map((s) => s.loop), ["a"]);
  progress.unregister("a");
  assert.deepEqual(progress.stalled(), []);
  assert.deepEqual(progress.loops(), ["free"]);
  assert.throws(() => progress.register("b", 0), RangeError);
});

Deno.test("progress: re-registering keeps the last beat and restarts the never-beat clock", () => {
  const { clock, progress } = tracker();
  progress.register("x", 1_000);
  clock.now += 5_000;
  assert.equal(progress.stalled().length, 1);
  progress.register("x", 1_000); // e.g. the loop was restarted
  assert.equal(progress.stalled().length, 0);
  progress.beat("y", clock.now); // a beat before registration is kept
  progress.register("y", 1_000, clock.now + 10_000);
  assert.equal(progress.lastBeat("y"), clock.now);
});

Deno.test("progress: the readiness message names the loop and how long ago it progressed", () => {
  const { clock, progress } = tracker();
  progress.register("market", 25_000);
  progress.register("informers", 90_000);
  progress.beat("market");
  assert.equal(progress.stallMessage(), null);
  clock.now += 42_000;
  assert.equal(progress.stallMessage(), "loop market last progressed 42 s ago (bound 25 s)");
  clock.now += 50_000;
  assert.equal(
    progress.stallMessage(),
    "loop market last progressed 92 s ago (bound 25 s); " +
      "loop informers has not progressed in the 92 s since it started (bound 90 s)",
  );
});

Deno.test("progress: exports the last-progress gauge in Unix seconds", () => {
  const { clock, progress } = tracker(1_700_000_000_000);
  progress.beat("early");
  const registry = new Registry();
  const gauge = progress.exportMetrics(registry, "mbcas_agent");
  assert.equal(progress.exportMetrics(registry, "mbcas_agent"), gauge, "exported once");
  progress.register("market", 1_000);
  clock.now += 1_500;
  progress.beat("market");
  const text = registry.render();
  assert.match(text, /# TYPE mbcas_agent_last_progress_timestamp_seconds gauge/);
  assert.match(text, /^mbcas_agent_last_progress_timestamp_seconds\{loop="early"\} 1700000000$/m);
  assert.match(
    text,
    /^mbcas_agent_last_progress_timestamp_seconds\{loop="market"\} 1700000001\.5$/m,
  );
  progress.unregister("early");
  assert.doesNotMatch(registry.render(), /loop="early"/);
});

Deno.test("progress: the watchdog warns once per stall episode and says when the loop recovers", async () => {
  const { clock, progress } = tracker();
  const logs: string[] = [];
  const log = (level: string, message: string) => logs.push(`${level}: ${message}`);
  progress.register("market", 10_000);
  progress.check(log);
  clock.now += 11_000;
  assert.deepEqual(progress.check(log).stalled.map((s) => s.loop), ["market"]);
  clock.now += 5_000;
  progress.check(log); // still stalled: no second warning
  progress.beat("market");
  assert.deepEqual(progress.check(log).recovered, ["market"]);
  progress.check(log);
  clock.now += 20_000;
  progress.check(log); // a new episode
  assert.deepEqual(logs, [
    "warn: no progress: loop market has not progressed in the 11 s since it started (bound 10 s)",
    "info: loop market progressing again",
    "warn: no progress: loop market last progressed 20 s ago (bound 10 s)",
  ]);

  // The timer-driven form runs the same check until stopped.
  const timed: string[] = [];
  progress.beat("market");
  const stop = progress.watchdog((level, message) => timed.push(`${level}: ${message}`), 10);
  try {
    await new Promise((r) => setTimeout(r, 30));
    assert.deepEqual(timed, ["info: loop market progressing again"]);
    clock.now += 60_000;
    const deadline = Date.now() + 2_000;
    while (timed.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.match(timed[1], /^warn: no progress: loop market last progressed 60 s ago/);
  } finally {
    stop();
  }
});
