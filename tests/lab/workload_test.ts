import assert from "node:assert/strict";
import fc from "fast-check";
import {
  arrivalSeconds,
  type BurstyPlan,
  isOnPhase,
  latenciesMs,
  type LatencyPlan,
  mulberry32,
  nextPhaseChangeS,
  nextTickMs,
  type ParseOutcome,
  parseRateSchedule,
  parseWorkloadArgs,
  type PhasePlan,
  poissonArrivals,
  queueLength,
  rateAt,
  summarize,
  summaryText,
  type WorkloadPlan,
} from "../../src/lab/_workload_plan.ts";

const WORKLOAD = new URL("../../src/lab/workload.ts", import.meta.url).pathname;
const NOW = 1_767_225_600_000;

function plan(args: string[]): WorkloadPlan {
  const outcome = parseWorkloadArgs(args, NOW);
  assert.equal(outcome.status, "plan", JSON.stringify(outcome));
  return (outcome as Extract<ParseOutcome, { status: "plan" }>).plan;
}

function parseError(args: string[]): string {
  const outcome = parseWorkloadArgs(args, NOW);
  assert.equal(outcome.status, "error", JSON.stringify(outcome));
  return (outcome as Extract<ParseOutcome, { status: "error" }>).message;
}

// ---------------------------------------------------------------- options

Deno.test("options: defaults of every kind", () => {
  assert.deepEqual(plan(["--kind", "idle", "--out", "o.jsonl"]), {
    kind: "idle",
    out: "o.jsonl",
    epochMs: NOW,
    seed: 1,
    durationS: null,
  });
  assert.deepEqual(plan(["--kind", "batch", "--out", "o"]), {
    kind: "batch",
    out: "o",
    epochMs: NOW,
    seed: 1,
    durationS: null,
    parallelism: 1,
  });
  const latency = plan(["--kind", "latency", "--out", "o"]) as LatencyPlan;
  assert.deepEqual(latency.schedule, [{ fromS: 0, rate: 20 }]);
  assert.equal(latency.costMs, 5);
  const bursty = plan(["--kind", "bursty", "--out", "o"]) as BurstyPlan;
  assert.deepEqual(bursty.phases, { onS: 10, offS: 10, offsetS: 0 });
  assert.equal(bursty.parallelism, 1);
});

Deno.test("options: every option of every kind is read", () => {
  assert.deepEqual(
    plan([
      "--kind=latency",
      "--out=/tmp/x",
      "--epoch-ms=1700000000000",
      "--seed=42",
      "--duration-s=2.5",
      "--rate-schedule",
      "0:20, 60:40,120:0",
      "--cost-ms=0.5",
    ]),
    {
      kind: "latency",
      out: "/tmp/x",
      epochMs: 1_700_000_000_000,
      seed: 42,
      durationS: 2.5,
      schedule: [{ fromS: 0, rate: 20 }, { fromS: 60, rate: 40 }, { fromS: 120, rate: 0 }],
      costMs: 0.5,
    },
  );
  assert.deepEqual(
    (plan(["--kind", "latency", "--out", "o", "--rate", "7.5"]) as LatencyPlan)
      .schedule,
    [{ fromS: 0, rate: 7.5 }],
  );
  const bursty = plan([
    "--kind",
    "bursty",
    "--out",
    "o",
    "--on-s",
    "2",
    "--off-s",
    "0",
    "--phase-offset-s=-1.5",
    "--parallelism",
    "3",
  ]) as BurstyPlan;
  assert.deepEqual(bursty.phases, { onS: 2, offS: 0, offsetS: -1.5 });
  assert.equal(bursty.parallelism, 3);
  assert.deepEqual(parseWorkloadArgs(["--help"], NOW), { status: "help" });
});

Deno.test("options: each error is one line naming the option and the value", () => {
  const cases: [string[], RegExp][] = [
    [["--out", "o"], /^--kind is required/],
    [["--kind", "nope", "--out", "o"], /^--kind .*"nope"/],
    [["--kind", "idle"], /^--out /],
    [["--kind", "batch", "--out", "o", "--parallelism", "0"], /^--parallelism .*"0"/],
    [["--kind", "batch", "--out", "o", "--parallelism", "1.5"], /^--parallelism .*"1.5"/],
    [["--kind", "batch", "--out", "o", "--parallelism", "65"], /^--parallelism .*"65"/],
    [["--kind", "latency", "--out", "o", "--rate", "abc"], /^--rate .*"abc"/],
    [["--kind", "latency", "--out", "o", "--rate", ""], /^--rate .*""/],
    [["--kind", "latency", "--out", "o", "--rate=-3"], /^--rate .*"-3"/],
    [["--kind", "latency", "--out", "o", "--rate", "20001"], /^--rate .*"20001"/],
    [["--kind", "latency", "--out", "o", "--cost-ms", "0"], /^--cost-ms .*"0"/],
    [["--kind", "latency", "--out", "o", "--rate", "5", "--rate-schedule", "0:5"], /--rate/],
    [["--kind", "batch", "--out", "o", "--rate", "5"], /^--rate does not apply .*"5"/],
    [["--kind", "idle", "--out", "o", "--parallelism", "2"], /^--parallelism .*"2"/],
    [["--kind", "latency", "--out", "o", "--on-s", "2"], /^--on-s .*"2"/],
    [["--kind", "bursty", "--out", "o", "--on-s", "0"], /^--on-s .*"0"/],
    [["--kind", "bursty", "--out", "o", "--off-s=-1"], /^--off-s .*"-1"/],
    [["--kind", "idle", "--out", "o", "--seed=-1"], /^--seed .*"-1"/],
    [["--kind", "idle", "--out", "o", "--seed", "-1"], /--seed/],
    [["--kind", "idle", "--out", "o", "--seed", "2.5"], /^--seed .*"2.5"/],
    [["--kind", "idle", "--out", "o", "--seed", "1e16"], /^--seed .*"1e16"/],
    [["--kind", "idle", "--out", "o", "--epoch-ms", "yesterday"], /^--epoch-ms .*"yesterday"/],
    [["--kind", "idle", "--out", "o", "--duration-s", "0"], /^--duration-s .*"0"/],
    [["--kind", "idle", "--out", "o", "--bogus", "1"], /--bogus/],
    [["--kind", "idle", "--out", "o", "--seed"], /--seed/],
    [["--kind", "idle", "--out", "o", "stray"], /stray/],
  ];
  for (const [args, pattern] of cases) {
    const message = parseError(args);
    assert.match(message, pattern, `${args.join(" ")} → ${message}`);
    assert.ok(!message.includes("\n"), message);
  }
});

Deno.test("rate schedule: parsed, and malformed ones rejected by name", () => {
  assert.deepEqual(parseRateSchedule("0:20,60:40,120:10"), [
    { fromS: 0, rate: 20 },
    { fromS: 60, rate: 40 },
    { fromS: 120, rate: 10 },
  ]);
  for (const text of ["", "5:20", "0:20,0:30", "0:20,60:40,30:5", "0:20,60", "0:x", "0:-1"]) {
    assert.throws(() => parseRateSchedule(text), (e: Error) => {
      assert.match(e.message, /^--rate-schedule /);
      assert.ok(e.message.includes(JSON.stringify(text)), e.message);
      return true;
    });
  }
  const schedule = parseRateSchedule("0:20,60:40");
  assert.equal(rateAt(schedule, -1), 0);
  assert.equal(rateAt(schedule, 0), 20);
  assert.equal(rateAt(schedule, 59.9), 20);
  assert.equal(rateAt(schedule, 60), 40);
});

// ---------------------------------------------------------------- arrivals

Deno.test("mulberry32: deterministic, in [0, 1), seeds differ", () => {
  const a = mulberry32(7);
  const b = mulberry32(7);
  const c = mulberry32(8);
  const xs = Array.from({ length: 1000 }, () => a());
  assert.deepEqual(xs, Array.from({ length: 1000 }, () => b()));
  assert.notDeepEqual(xs, Array.from({ length: 1000 }, () => c()));
  assert.ok(xs.every((x) => x >= 0 && x < 1));
  const wrapped = mulberry32(7 + 2 ** 32);
  assert.equal(wrapped(), mulberry32(7)());
  const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
  assert.ok(Math.abs(mean - 0.5) < 0.05, String(mean));
});

const scheduleArb = fc
  .array(
    fc.record({ gap: fc.integer({ min: 1, max: 40 }), rate: fc.integer({ min: 0, max: 80 }) }),
    { minLength: 1, maxLength: 5 },
  )
  .map((steps) => {
    let fromS = 0;
    return steps.map(({ gap, rate }, i) => {
      if (i > 0) fromS += gap;
      return { fromS, rate };
    });
  });
const seedArb = fc.integer({ min: 0, max: 0xffff_ffff });

Deno.test("arrivals: same seed, same arrivals; sorted and inside the window", () => {
  fc.assert(
    fc.property(
      scheduleArb,
      seedArb,
      fc.integer({ min: 0, max: 100 }),
      fc.integer({ min: 0, max: 60 }),
      (schedule, seed, fromS, length) => {
        const arrivals = poissonArrivals(schedule, seed, fromS, fromS + length);
        assert.deepEqual(poissonArrivals(schedule, seed, fromS, fromS + length), arrivals);
        for (let i = 0; i < arrivals.length; i++) {
          assert.ok(arrivals[i] >= fromS && arrivals[i] < fromS + length);
          if (i > 0) assert.ok(arrivals[i] >= arrivals[i - 1]);
          // No arrival while the rate is 0.
          assert.ok(
            rateAt(schedule, arrivals[i]) > 0,
            JSON.stringify({ schedule, t: arrivals[i] }),
          );
        }
      },
    ),
    { numRuns: 200 },
  );
});

Deno.test("arrivals: independent of the window they are read through", () => {
  fc.assert(
    fc.property(
      scheduleArb,
      seedArb,
      fc.integer({ min: 0, max: 50 }),
      fc.integer({ min: 0, max: 50 }),
      fc.integer({ min: 0, max: 50 }),
      (schedule, seed, a, ab, bc) => {
        const whole = poissonArrivals(schedule, seed, a, a + ab + bc);
        const split = [
          ...poissonArrivals(schedule, seed, a, a + ab),
          ...poissonArrivals(schedule, seed, a + ab, a + ab + bc),
        ];
        assert.deepEqual(split, whole);
      },
    ),
    { numRuns: 200 },
  );
});

Deno.test("arrivals: the mean rate of each step matches within 5 standard deviations", () => {
  fc.assert(
    fc.property(
      fc.double({ min: 0.5, max: 60, noNaN: true }),
      fc.double({ min: 0.5, max: 60, noNaN: true }),
      seedArb,
      (r1, r2, seed) => {
        const schedule = [{ fromS: 0, rate: r1 }, { fromS: 300, rate: r2 }];
        const arrivals = poissonArrivals(schedule, seed, 0, 600);
        const first = arrivals.filter((t) => t < 300).length;
        const second = arrivals.length - first;
        for (const [count, rate] of [[first, r1], [second, r2]]) {
          const expected = rate * 300;
          assert.ok(
            Math.abs(count - expected) <= 5 * Math.sqrt(expected),
            JSON.stringify({ count, expected }),
          );
        }
      },
    ),
    { numRuns: 50 },
  );
  // Gaps are exponential: their coefficient of variation is 1.
  const arrivals = poissonArrivals([{ fromS: 0, rate: 20 }], 1, 0, 1000);
  const gaps = arrivals.slice(1).map((t, i) => t - arrivals[i]);
  const mean = gaps.reduce((s, g) => s + g, 0) / gaps.length;
  const sd = Math.sqrt(gaps.reduce((s, g) => s + (g - mean) ** 2, 0) / gaps.length);
  assert.ok(Math.abs(mean - 0.05) < 0.003, String(mean));
  assert.ok(Math.abs(sd / mean - 1) < 0.05, String(sd / mean));
});

Deno.test("arrivals: a schedule ending at rate 0 ends, one of rate 0 has none", () => {
  const arrivals = [...arrivalSeconds([{ fromS: 0, rate: 10 }, { fromS: 5, rate: 0 }], 3)];
  assert.ok(arrivals.length > 20 && arrivals.length < 90, String(arrivals.length));
  assert.ok(arrivals.every((t) => t < 5));
  assert.deepEqual([...arrivalSeconds([{ fromS: 0, rate: 0 }], 3)], []);
  assert.deepEqual(
    poissonArrivals([{ fromS: 0, rate: 0 }, { fromS: 10, rate: 5 }], 3, 0, 10),
    [],
  );
});

// ---------------------------------------------------------------- phases

/** Dyadic values (multiples of 1/4) keep the phase arithmetic exact. */
const quarter = (min: number, max: number) =>
  fc.integer({ min: min * 4, max: max * 4 }).map((n) => n / 4);
const phasesArb: fc.Arbitrary<PhasePlan> = fc.record({
  onS: quarter(0.25, 30),
  offS: quarter(0, 30),
  offsetS: quarter(-50, 50),
});

Deno.test("phases: periodic, with the on share of each period", () => {
  fc.assert(
    fc.property(phasesArb, quarter(-200, 200), fc.integer({ min: -5, max: 5 }), (p, t, k) => {
      assert.equal(isOnPhase(t + k * (p.onS + p.offS), p), isOnPhase(t, p));
    }),
    { numRuns: 500 },
  );
  const p = { onS: 3, offS: 1, offsetS: 0.5 };
  const samples = Array.from({ length: 4000 }, (_, i) => isOnPhase(i / 1000, p));
  assert.equal(samples.filter((on) => on).length, 3000);
  assert.equal(isOnPhase(0.5, p), true);
  assert.equal(isOnPhase(0.49, p), false);
  assert.equal(isOnPhase(3.5, p), false);
  assert.equal(isOnPhase(4.5, p), true);
  assert.equal(isOnPhase(-0.5, p), false);
  assert.equal(isOnPhase(-1, p), true);
  assert.ok([0, 1.5, 1e6].every((t) => isOnPhase(t, { onS: 1, offS: 0, offsetS: 7 })));
  assert.equal(nextPhaseChangeS(12, { onS: 1, offS: 0, offsetS: 7 }), Infinity);
});

Deno.test("phases: the phase holds until the next change and flips there", () => {
  fc.assert(
    fc.property(
      phasesArb.filter((p) => p.offS > 0),
      quarter(-200, 200),
      // Not too close to 1: t + f·(next − t) would round to next itself.
      fc.double({ min: 0, max: 0.99, noNaN: true }),
      (p, t, f) => {
        const next = nextPhaseChangeS(t, p);
        assert.ok(next > t && next - t <= Math.max(p.onS, p.offS));
        assert.equal(isOnPhase(t + f * (next - t), p), isOnPhase(t, p));
        assert.notEqual(isOnPhase(next, p), isOnPhase(t, p));
      },
    ),
    { numRuns: 500 },
  );
});

// ---------------------------------------------------------------- lines

Deno.test("ticks fall on whole seconds after the epoch", () => {
  assert.equal(nextTickMs(NOW, NOW), NOW + 1000);
  assert.equal(nextTickMs(NOW + 999.9, NOW), NOW + 1000);
  assert.equal(nextTickMs(NOW + 1000, NOW), NOW + 2000);
  assert.equal(nextTickMs(NOW - 1500, NOW), NOW - 1000);
});

Deno.test("latencies and queue", () => {
  assert.deepEqual(latenciesMs([100, 150], [106, 170]), [6, 20]);
  assert.equal(queueLength([100, 150, 200], 99), 0);
  assert.equal(queueLength([100, 150, 200], 150), 2);
  assert.equal(queueLength([], 150), 0);
});

Deno.test("summary lines: the fields of the kind only, rounded, one JSON line", () => {
  const base = { t: NOW + 0.4, cpuMicros: 987_654, units: 12, latenciesMs: [5.123, 7], queue: 3 };
  assert.deepEqual(summarize({ ...base, kind: "idle" }), { t: NOW, kind: "idle", cpuMs: 987.7 });
  assert.deepEqual(summarize({ ...base, kind: "batch" }), {
    t: NOW,
    kind: "batch",
    cpuMs: 987.7,
    units: 12,
  });
  assert.deepEqual(summarize({ ...base, kind: "latency" }), {
    t: NOW,
    kind: "latency",
    cpuMs: 987.7,
    latenciesMs: [5.12, 7],
    queue: 3,
  });
  const text = summaryText({ ...base, kind: "bursty" });
  assert.ok(text.endsWith("}\n") && text.indexOf("\n") === text.length - 1);
  assert.deepEqual(JSON.parse(text), { t: NOW, kind: "bursty", cpuMs: 987.7, units: 12 });
});

// ---------------------------------------------------------------- real runs

interface Line {
  t: number;
  kind: string;
  cpuMs: number;
  units?: number;
  latenciesMs?: number[];
  queue?: number;
}

interface RunResult {
  code: number;
  stderr: string;
  lines: Line[];
  /** Milliseconds from SIGTERM to exit; null when the process ended on its own. */
  exitMs: number | null;
  epochMs: number;
}

function readLines(file: string): Line[] {
  let text: string;
  try {
    text = Deno.readTextFileSync(file);
  } catch {
    return [];
  }
  assert.ok(text === "" || text.endsWith("\n"), `a partial line in ${JSON.stringify(text)}`);
  return text.split("\n").filter((l) => l !== "").map((l) => JSON.parse(l));
}

/**
 * Runs the workload with the permissions the lab image gives it (write and
 * read of its output only),
 * until its file holds a line for whole second `untilSecond` after the epoch
 * (then SIGTERM), or until it exits on its own when `untilSecond` is null.
 */
async function runWorkload(
  args: string[],
  untilSecond: number | null,
  options: { allowRead?: boolean } = {},
): Promise<RunResult> {
  const dir = Deno.makeTempDirSync({ prefix: "mbcas-workload-" });
  const out = `${dir}/out.jsonl`;
  const epochMs = Date.now();
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--no-prompt",
      `--allow-write=${out}`,
      ...(options.allowRead === false ? [] : [`--allow-read=${dir}`]),
      WORKLOAD,
      "--out",
      out,
      "--epoch-ms",
      String(epochMs),
      ...args,
    ],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const stderrText = new Response(child.stderr).text();
  let exited = false;
  const status = child.status.then((s) => {
    exited = true;
    return s;
  });
  try {
    let exitMs: number | null = null;
    if (untilSecond !== null) {
      const deadline = Date.now() + untilSecond * 1000 + 8000;
      while (
        !exited && Date.now() < deadline &&
        !readLines(out).some((l) => l.t >= epochMs + untilSecond * 1000 - 100)
      ) {
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.ok(!exited, "the workload exited before SIGTERM");
      const killedAt = Date.now();
      child.kill("SIGTERM");
      await status;
      exitMs = Date.now() - killedAt;
    }
    const { code } = await status;
    return { code, stderr: await stderrText, lines: readLines(out), exitMs, epochMs };
  } finally {
    if (!exited) {
      child.kill("SIGKILL");
      await status;
    }
    Deno.removeSync(dir, { recursive: true });
  }
}

function assertClean(run: RunResult, kind: string): void {
  assert.equal(run.code, 0, run.stderr);
  assert.equal(run.stderr, "");
  if (run.exitMs !== null) assert.ok(run.exitMs < 1500, `exited ${run.exitMs} ms after SIGTERM`);
  assert.ok(run.lines.length >= 2, JSON.stringify(run.lines));
  for (const line of run.lines) {
    assert.equal(line.kind, kind);
    assert.equal(typeof line.t, "number");
    assert.ok(line.cpuMs >= 0);
  }
  // Lines after the first fall on whole seconds after the epoch, bar the last.
  for (const line of run.lines.slice(1, -1)) {
    const off = (line.t - run.epochMs) % 1000;
    assert.ok(off < 100, `line ${line.t} is ${off} ms off the grid`);
  }
}

/** Lines covering a whole second: neither the first (startup) nor the last (SIGTERM). */
function wholeSeconds(run: RunResult): Line[] {
  return run.lines.slice(1, -1);
}

/** The line covering second `k` after the epoch (that is, (k − 1, k]). */
function second(run: RunResult, k: number): Line | undefined {
  return run.lines.slice(0, -1).find((l) => Math.round((l.t - run.epochMs) / 1000) === k);
}

Deno.test("real run: batch with one thread keeps a core busy and counts units", async () => {
  const run = await runWorkload(["--kind", "batch", "--parallelism", "1"], 4);
  assertClean(run, "batch");
  const whole = wholeSeconds(run);
  console.log(`batch cpuMs per second: ${whole.map((l) => l.cpuMs).join(", ")}`);
  assert.ok(whole.length >= 2, JSON.stringify(run.lines));
  assert.ok(Math.max(...whole.map((l) => l.cpuMs)) >= 600, JSON.stringify(whole));
  for (const line of whole) {
    assert.ok(line.cpuMs <= 1150, JSON.stringify(line));
    // A unit is about 1 ms of CPU: units follow cpuMs.
    assert.ok(line.units! > 0.3 * line.cpuMs && line.units! < 3 * line.cpuMs, JSON.stringify(line));
  }
});

Deno.test("real run: idle uses next to no CPU and ends at --duration-s; no --allow-read needed", async () => {
  const started = Date.now();
  const run = await runWorkload(["--kind", "idle", "--duration-s", "3.3"], null, {
    allowRead: false,
  });
  const took = Date.now() - started;
  assertClean(run, "idle");
  assert.ok(took >= 3300 && took < 6000, `took ${took} ms`);
  const whole = wholeSeconds(run);
  console.log(`idle cpuMs per second: ${whole.map((l) => l.cpuMs).join(", ")}`);
  assert.ok(whole.length >= 2, JSON.stringify(run.lines));
  for (const line of whole) assert.ok(line.cpuMs < 50, JSON.stringify(line));
  assert.ok(run.lines.every((l) => !("units" in l) && !("latenciesMs" in l)));
});

Deno.test("real run: latency at 20 requests/s of 5 ms serves them all with small latencies", async () => {
  const run = await runWorkload(
    ["--kind", "latency", "--rate", "20", "--cost-ms", "5", "--seed", "7"],
    4,
  );
  assertClean(run, "latency");
  const whole = wholeSeconds(run);
  const latencies = whole.flatMap((l) => l.latenciesMs!);
  const perSecond = latencies.length / whole.length;
  const sorted = [...latencies].sort((a, b) => a - b);
  const p50 = sorted[Math.floor(sorted.length / 2)];
  const p90 = sorted[Math.floor(sorted.length * 0.9)];
  console.log(
    `latency: ${perSecond.toFixed(1)} requests/s, p50 ${p50} ms, p90 ${p90} ms, cpuMs ${
      whole.map((l) => l.cpuMs).join(", ")
    }`,
  );
  assert.ok(whole.length >= 2, JSON.stringify(run.lines));
  assert.ok(perSecond >= 10 && perSecond <= 32, String(perSecond));
  assert.ok(p50 >= 4.5 && p50 < 50, String(p50));
  for (const line of whole) {
    assert.ok(line.queue! <= 5, JSON.stringify(line));
    // 5 ms of CPU per request, and little besides.
    const requests = line.latenciesMs!.length;
    assert.ok(
      line.cpuMs >= requests * 5 - 10 && line.cpuMs <= requests * 5 + 150,
      JSON.stringify(line),
    );
  }
});

Deno.test("real run: bursty burns in on phases only, phases aligned to the epoch and offset", async () => {
  // on [2, 3), [5, 6), ... and off [3, 5), ...: second 3 is on, seconds 2 and 4 off.
  const run = await runWorkload(
    [
      "--kind",
      "bursty",
      "--on-s",
      "1",
      "--off-s",
      "2",
      "--phase-offset-s",
      "2",
      "--parallelism",
      "2",
    ],
    4,
  );
  assertClean(run, "bursty");
  const on = second(run, 3);
  const off = [second(run, 2), second(run, 4)].filter((l): l is Line =>
    l !== undefined && l !== run.lines[0]
  );
  console.log(`bursty: on ${JSON.stringify(on)}, off ${JSON.stringify(off)}`);
  assert.ok(on !== undefined && off.length >= 1, JSON.stringify(run.lines));
  // Two threads would give about 2000 ms; the bound allows for other load on the machine.
  assert.ok(on.cpuMs >= 300 && on.units! >= 100, JSON.stringify(on));
  for (const line of off) {
    assert.ok(line.cpuMs < 100 && line.units! < 60, JSON.stringify(line));
    assert.ok(on.cpuMs >= 5 * line.cpuMs, JSON.stringify({ on, line }));
  }
});

Deno.test("real run: a bad option exits 2 with one stderr line naming it", async () => {
  for (
    const [args, option, value] of [
      [["--kind", "batch", "--parallelism", "0"], "--parallelism", "0"],
      [["--kind", "sleepy"], "--kind", "sleepy"],
    ] as [string[], string, string][]
  ) {
    const dir = Deno.makeTempDirSync({ prefix: "mbcas-workload-" });
    try {
      const out = `${dir}/out.jsonl`;
      const output = await new Deno.Command(Deno.execPath(), {
        args: ["run", "--no-prompt", `--allow-write=${out}`, WORKLOAD, "--out", out, ...args],
        stdout: "null",
        stderr: "piped",
      }).output();
      const stderr = new TextDecoder().decode(output.stderr);
      assert.equal(output.code, 2, stderr);
      assert.equal(stderr.trimEnd().split("\n").length, 1, stderr);
      assert.ok(stderr.includes(option) && stderr.includes(`"${value}"`), stderr);
      assert.deepEqual([...Deno.readDirSync(dir)], [], "no output file on a bad option");
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  }
});
