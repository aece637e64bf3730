/**
 * Lab workload program: what the lab's pods run (the entry point of the
 * `mbcas-lab:local` image on the local real node). It burns CPU in the pattern of its kind
 * until SIGTERM (or `--duration-s`) and appends one JSON line per second to
 * `--out`:
 *
 * ```
 * {"t": 1767225601000, "kind": "latency", "cpuMs": 101.2, "latenciesMs": [5.21, 6.03], "queue": 0}
 * ```
 *
 * - `t`: unix ms at the end of the interval. Lines fall on the grid of whole
 *   seconds after `--epoch-ms`; the first line covers startup to the first
 *   grid point and the last one (written on SIGTERM or at the end of
 *   `--duration-s`) the time since the line before, so both may be partial.
 * - `cpuMs`: CPU time of the whole process over the interval (`process.cpuUsage`;
 *   the first interval starts after Deno's own startup).
 * - `units` (batch, bursty): work units completed; one unit is a fixed
 *   xorshift loop of about 1 ms of CPU, so units fall when throttled.
 * - `latenciesMs` and `queue` (latency): latencies of the requests completed
 *   over the interval (completion minus scheduled arrival) and the requests
 *   waiting or in service at its end. Arrival times come from the seeded
 *   schedule alone (open loop); arrivals scheduled before the process
 *   started are dropped. A request burns CPU in chunks of about 40 µs until
 *   the process's CPU time has advanced by `--cost-ms`.
 *
 * Run it with:
 *
 * ```
 * deno run --no-prompt --allow-write=OUT src/lab/workload.ts --kind KIND --out OUT [options]
 * ```
 *
 * Write access to `--out` is the only permission it needs: the busy threads
 * are Workers started from an in-memory (blob:) module, which needs no read
 * permission (a Worker from a local file would need `--allow-read` of that
 * file). `--allow-read` of the output directory is harmless but unused.
 * `--help` prints every option.
 *
 * All the busy work runs in Workers; the main thread only keeps time, feeds
 * the latency server its arrivals, switches bursty phases and writes lines,
 * so it answers SIGTERM at once (it exits within tens of ms, even with every
 * thread busy or the cgroup throttled).
 *
 * @module
 */
import { cpuUsage } from "node:process";
import {
  arrivalSeconds,
  type BurstyPlan,
  isOnPhase,
  latenciesMs,
  type LatencyPlan,
  nextPhaseChangeS,
  nextTickMs,
  parseWorkloadArgs,
  queueLength,
  summaryText,
  UNIT_ITERATIONS,
  USAGE,
  type WorkloadPlan,
} from "./_workload_plan.ts";

/** Latency requests the server can be behind (or ahead of the clock) by: the shared rings' size. */
const RING = 1 << 16;
/** How far ahead of the clock the main thread hands arrivals to the server. */
const LOOKAHEAD_MS = 3000;
/** Xorshift iterations between two CPU-time checks of a latency request (about 40 µs). */
const CHUNK_ITERATIONS = 20_000;
/** Longest single timer (setTimeout overflows past 2^31 − 1 ms). */
const MAX_TIMER_MS = 3_600_000;

/**
 * Source of the busy Worker. Modes:
 * - "burn": while control[0] is 1, run work units and add each to control[1];
 *   while 0, sleep in Atomics.wait.
 * - "serve": the latency server. control[0] = arrivals published (their
 *   scheduled unix ms in `arrivals`, ring-indexed), control[1] = requests
 *   completed (completion unix ms in `completions`). Serves in order, each
 *   request not before its arrival, burning `costMicros` of process CPU time.
 */
const WORKER_SOURCE = `
import { cpuUsage } from "node:process";
let sink = 1;
function spin(iterations) {
  let x = sink | 1;
  for (let i = 0; i < iterations; i++) { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; }
  sink = x;
}
function cpuMicros() {
  const usage = cpuUsage();
  return usage.user + usage.system;
}
function burn(control, unitIterations) {
  for (;;) {
    if (Atomics.load(control, 0) !== 1) { Atomics.wait(control, 0, 0); continue; }
    spin(unitIterations);
    Atomics.add(control, 1, 1);
  }
}
function serve(control, arrivals, completions, ring, costMicros, chunk) {
  const now = () => performance.timeOrigin + performance.now();
  for (let i = 0; ; ) {
    const published = Atomics.load(control, 0);
    if (i >= published) { Atomics.wait(control, 0, published, 1000); continue; }
    const wait = arrivals[i % ring] - now();
    if (wait > 0) { Atomics.wait(control, 2, 0, wait); continue; }
    const start = cpuMicros();
    do spin(chunk); while (cpuMicros() - start < costMicros);
    completions[i % ring] = now();
    i++;
    Atomics.store(control, 1, i);
  }
}
self.onmessage = (event) => {
  self.onmessage = null;
  const m = event.data;
  if (m.mode === "burn") burn(new Int32Array(m.control), m.unitIterations);
  else serve(new Int32Array(m.control), new Float64Array(m.arrivals),
    new Float64Array(m.completions), m.ring, m.costMicros, m.chunk);
};
`;

function cpuMicros(): number {
  const usage = cpuUsage();
  return usage.user + usage.system;
}

function startWorker(url: string, message: Record<string, unknown>): Worker {
  const worker = new Worker(url, { type: "module" });
  worker.onerror = (event) => {
    event.preventDefault();
    console.error(`workload: busy thread failed: ${event.message}`);
    Deno.exit(1);
  };
  worker.postMessage(message);
  return worker;
}

/** What the kind-specific part hands to the per-second writer. */
interface Probe {
  /** Work units completed since the last call. */
  units(): number;
  /** Latencies completed since the last call and the queue at `nowMs`. */
  requests(nowMs: number): { latencies: number[]; queue: number };
}

const NO_REQUESTS = { latencies: [], queue: 0 };

function startBusyThreads(url: string, parallelism: number, on: boolean) {
  const control = new Int32Array(new SharedArrayBuffer(2 * Int32Array.BYTES_PER_ELEMENT));
  control[0] = on ? 1 : 0;
  for (let i = 0; i < parallelism; i++) {
    startWorker(url, { mode: "burn", control: control.buffer, unitIterations: UNIT_ITERATIONS });
  }
  let counted = 0;
  const probe: Probe = {
    units() {
      const total = Atomics.load(control, 1);
      const units = (total - counted) | 0;
      counted = total;
      return units;
    },
    requests: () => NO_REQUESTS,
  };
  const set = (busy: boolean) => {
    Atomics.store(control, 0, busy ? 1 : 0);
    if (busy) Atomics.notify(control, 0);
  };
  return { probe, set };
}

function startBursty(url: string, plan: BurstyPlan): Probe {
  const sinceEpochS = () => (Date.now() - plan.epochMs) / 1000;
  const threads = startBusyThreads(url, plan.parallelism, isOnPhase(sinceEpochS(), plan.phases));
  const applyPhase = () => {
    const nowS = sinceEpochS();
    threads.set(isOnPhase(nowS, plan.phases));
    const next = nextPhaseChangeS(nowS, plan.phases);
    if (Number.isFinite(next)) {
      const delay = Math.min(MAX_TIMER_MS, Math.max(1, (next - nowS) * 1000));
      setTimeout(applyPhase, delay);
    }
  };
  applyPhase();
  return threads.probe;
}

function startLatency(url: string, plan: LatencyPlan, startMs: number): Probe {
  const control = new Int32Array(new SharedArrayBuffer(3 * Int32Array.BYTES_PER_ELEMENT));
  const arrivalsRing = new Float64Array(new SharedArrayBuffer(RING * 8));
  const completionsRing = new Float64Array(new SharedArrayBuffer(RING * 8));
  const schedule = arrivalSeconds(plan.schedule, plan.seed);
  // Arrivals scheduled before the process started are dropped, never queued.
  const pull = (): number => {
    for (;;) {
      const next = schedule.next();
      if (next.done) return Infinity;
      const ms = plan.epochMs + next.value * 1000;
      if (ms >= startMs) return ms;
    }
  };
  let nextArrival = pull();
  /** Scheduled arrival (unix ms) of every request not yet completed; pending[0] is request `served`. */
  const pending: number[] = [];
  let served = 0;
  let published = 0;
  const refill = (nowMs: number) => {
    while (nextArrival <= nowMs + LOOKAHEAD_MS) {
      pending.push(nextArrival);
      nextArrival = pull();
    }
    let p = published;
    while (p < served + pending.length && p - served < RING) {
      arrivalsRing[p % RING] = pending[p - served];
      p++;
    }
    if (p !== published) {
      published = p;
      Atomics.store(control, 0, p);
      Atomics.notify(control, 0);
    }
  };
  refill(startMs);
  startWorker(url, {
    mode: "serve",
    control: control.buffer,
    arrivals: arrivalsRing.buffer,
    completions: completionsRing.buffer,
    ring: RING,
    costMicros: plan.costMs * 1000,
    chunk: CHUNK_ITERATIONS,
  });
  return {
    units: () => 0,
    requests(nowMs) {
      const done = Atomics.load(control, 1);
      const count = done - served;
      const completions = Array.from(
        { length: count },
        (_, k) => completionsRing[(served + k) % RING],
      );
      const latencies = latenciesMs(pending.splice(0, count), completions);
      served = done;
      refill(nowMs);
      return { latencies, queue: queueLength(pending, nowMs) };
    },
  };
}

function run(plan: WorkloadPlan): void {
  let file: Deno.FsFile;
  try {
    file = Deno.openSync(plan.out, { append: true, create: true });
  } catch (error) {
    console.error(`workload: cannot open --out ${plan.out}: ${(error as Error).message}`);
    Deno.exit(1);
  }
  const startMs = Date.now();
  const url = URL.createObjectURL(
    new Blob([WORKER_SOURCE], { type: "application/javascript" }),
  );
  let probe: Probe;
  switch (plan.kind) {
    case "latency":
      probe = startLatency(url, plan, startMs);
      break;
    case "bursty":
      probe = startBursty(url, plan);
      break;
    case "batch":
      probe = startBusyThreads(url, plan.parallelism, true).probe;
      break;
    case "idle":
      probe = { units: () => 0, requests: () => NO_REQUESTS };
      break;
  }
  const encoder = new TextEncoder();
  let lastCpu = cpuMicros();
  const emit = () => {
    const nowMs = Date.now();
    const cpu = cpuMicros();
    const { latencies, queue } = probe.requests(nowMs);
    const bytes = encoder.encode(summaryText({
      t: nowMs,
      kind: plan.kind,
      cpuMicros: cpu - lastCpu,
      units: probe.units(),
      latenciesMs: latencies,
      queue,
    }));
    lastCpu = cpu;
    try {
      // One write(2) on an O_APPEND file: readers never see half a line.
      let written = file.writeSync(bytes);
      while (written < bytes.length) written += file.writeSync(bytes.subarray(written));
    } catch (error) {
      console.error(`workload: cannot write --out ${plan.out}: ${(error as Error).message}`);
      Deno.exit(1);
    }
  };

  let boundary = startMs;
  let tickTimer: ReturnType<typeof setTimeout> | undefined;
  const scheduleTick = () => {
    boundary = nextTickMs(Math.max(Date.now(), boundary), plan.epochMs);
    tickTimer = setTimeout(() => {
      emit();
      scheduleTick();
    }, Math.max(0, boundary - Date.now()));
  };
  scheduleTick();

  let finished = false;
  const finish = () => {
    if (finished) return;
    finished = true;
    clearTimeout(tickTimer);
    emit();
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGTERM", finish);
  Deno.addSignalListener("SIGINT", finish);
  if (plan.durationS !== null) {
    const endMs = startMs + plan.durationS * 1000;
    const waitForEnd = () => {
      const left = endMs - Date.now();
      if (left <= 0) finish();
      else setTimeout(waitForEnd, Math.min(MAX_TIMER_MS, left));
    };
    waitForEnd();
  }
}

/**
 * Entry point: parses `args`, prints help (exit 0) or one error line naming
 * the bad option (exit 2), else runs the workload until SIGTERM, SIGINT or
 * `--duration-s`, then writes the last line and exits 0.
 */
export function main(args: readonly string[]): void {
  const outcome = parseWorkloadArgs(args, Date.now());
  if (outcome.status === "help") {
    console.log(USAGE);
    Deno.exit(0);
  }
  if (outcome.status === "error") {
    console.error(`workload: ${outcome.message}`);
    Deno.exit(2);
  }
  run(outcome.plan);
}

if (import.meta.main) main(Deno.args);
