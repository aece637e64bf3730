/**
 * Progress of named loops, so readiness reflects that work is still being
 * done, not merely that the process is alive. Each loop is registered with a
 * bound; every successful iteration calls {@link ProgressTracker.beat}; a loop
 * whose last beat (or registration, if it never beat) is older than its bound
 * is stalled. Pure bookkeeping on an injected clock, plus an optional gauge
 * `<prefix>_last_progress_timestamp_seconds{loop=...}` and a watchdog that
 * logs each stall episode once.
 *
 * @module
 */
import { Gauge, type Registry } from "../metrics/mod.ts";

/** A loop that has not progressed within its bound. */
export interface ProgressStall {
  /** The loop's name. */
  loop: string;
  /** When it last progressed (its registration time if it never beat), clock ms. */
  lastProgressMs: number;
  /** How long ago that was, ms. */
  sinceMs: number;
  /** Its bound, ms. */
  boundMs: number;
  /** Whether it ever beat. */
  everBeat: boolean;
}

/** Options of {@link ProgressTracker}. */
export interface ProgressTrackerOptions {
  /** Wall clock, ms since the epoch (default Date.now); the gauge is in these units / 1000. */
  now?: () => number;
}

/** Log sink of {@link ProgressTracker.watchdog} (what `logSink` returns fits). */
export type ProgressLog = (
  level: "info" | "warn",
  message: string,
  fields?: Record<string, unknown>,
) => void;

interface LoopState {
  boundMs: number;
  registeredAtMs: number;
  lastBeatMs: number | null;
}

/** Tracks the last successful iteration of named loops. */
export class ProgressTracker {
  readonly #now: () => number;
  readonly #loops = new Map<string, LoopState>();
  readonly #stalled = new Set<string>();
  #gauge: Gauge | null = null;

  /** Creates an empty tracker. */
  constructor(options: ProgressTrackerOptions = {}) {
    this.#now = options.now ?? Date.now;
  }

  /**
   * Registers (or re-registers with a new bound) the loop `name`: it is
   * stalled once `boundMs` pass without a beat, counted from `atMs` (default
   * now) if it never beat. A beat recorded before registration is kept.
   */
  register(name: string, boundMs: number, atMs: number = this.#now()): void {
    if (!(boundMs > 0)) throw new RangeError(`progress bound of ${name} must be above 0`);
    const state = this.#loops.get(name);
    if (state === undefined) {
      this.#loops.set(name, { boundMs, registeredAtMs: atMs, lastBeatMs: null });
    } else {
      state.boundMs = boundMs;
      state.registeredAtMs = atMs;
    }
  }

  /** Forgets the loop `name` (it stopped on purpose); its gauge series goes too. */
  unregister(name: string): void {
    this.#loops.delete(name);
    this.#stalled.delete(name);
    this.#gauge?.remove({ loop: name });
  }

  /**
   * Records a successful iteration of `name` at `atMs` (default now). A loop
   * that was never registered is tracked too but has no bound: it never stalls.
   */
  beat(name: string, atMs: number = this.#now()): void {
    let state = this.#loops.get(name);
    if (state === undefined) {
      state = { boundMs: Number.POSITIVE_INFINITY, registeredAtMs: atMs, lastBeatMs: null };
      this.#loops.set(name, state);
    }
    if (state.lastBeatMs === null || atMs > state.lastBeatMs) state.lastBeatMs = atMs;
    this.#gauge?.set(state.lastBeatMs / 1000, { loop: name });
  }

  /** The last beat of `name` (clock ms), or null if it never beat or is unknown. */
  lastBeat(name: string): number | null {
    return this.#loops.get(name)?.lastBeatMs ?? null;
  }

  /** The registered loops' names. */
  loops(): string[] {
    return [...this.#loops.keys()];
  }

  /** The loops whose last progress is older than their bound at `nowMs` (default now). */
  stalled(nowMs: number = this.#now()): ProgressStall[] {
    const stalls: ProgressStall[] = [];
    for (const [loop, state] of this.#loops) {
      const lastProgressMs = state.lastBeatMs ?? state.registeredAtMs;
      const sinceMs = nowMs - lastProgressMs;
      if (sinceMs > state.boundMs) {
        stalls.push({
          loop,
          lastProgressMs,
          sinceMs,
          boundMs: state.boundMs,
          everBeat: state.lastBeatMs !== null,
        });
      }
    }
    return stalls;
  }

  /**
   * A one-line description of the stalled loops for `/readyz`, e.g. `loop
   * market last progressed 42 s ago (bound 25 s)`, or null when none is stalled.
   */
  stallMessage(nowMs: number = this.#now()): string | null {
    const stalls = this.stalled(nowMs);
    if (stalls.length === 0) return null;
    return stalls.map(describeStall).join("; ");
  }

  /**
   * Exports `<prefix>_last_progress_timestamp_seconds{loop=...}` (Unix time of
   * each loop's last beat; a loop appears once it beat) through `registry`.
   */
  exportMetrics(registry: Registry, prefix: string): Gauge {
    if (this.#gauge === null) {
      this.#gauge = registry.add(
        new Gauge(
          `${prefix}_last_progress_timestamp_seconds`,
          "Unix time of the last successful iteration of each loop.",
        ),
      );
      for (const [loop, state] of this.#loops) {
        if (state.lastBeatMs !== null) this.#gauge.set(state.lastBeatMs / 1000, { loop });
      }
    }
    return this.#gauge;
  }

  /**
   * One watchdog pass at `nowMs`: logs a warning for each loop that became
   * stalled since the last pass and an info for each that recovered (or was
   * unregistered). Returns what changed.
   */
  check(
    log: ProgressLog,
    nowMs: number = this.#now(),
  ): { stalled: ProgressStall[]; recovered: string[] } {
    const stalls = this.stalled(nowMs);
    const current = new Set(stalls.map((s) => s.loop));
    const started = stalls.filter((s) => !this.#stalled.has(s.loop));
    const recovered = [...this.#stalled].filter((loop) => !current.has(loop));
    for (const s of started) {
      this.#stalled.add(s.loop);
      log("warn", `no progress: ${describeStall(s)}`, {
        loop: s.loop,
        sinceMs: Math.round(s.sinceMs),
        boundMs: s.boundMs,
        everBeat: s.everBeat,
      });
    }
    for (const loop of recovered) {
      this.#stalled.delete(loop);
      log("info", `loop ${loop} progressing again`, { loop });
    }
    return { stalled: started, recovered };
  }

  /**
   * Runs {@link ProgressTracker.check} every `everyMs` (a warning once per
   * stall episode, an info when it ends); returns the function that stops it.
   */
  watchdog(log: ProgressLog, everyMs: number): () => void {
    const timer = setInterval(() => this.check(log), everyMs);
    return () => clearInterval(timer);
  }
}

function describeStall(s: ProgressStall): string {
  const seconds = (ms: number) => `${Math.round(ms / 1000)} s`;
  return s.everBeat
    ? `loop ${s.loop} last progressed ${seconds(s.sinceMs)} ago (bound ${seconds(s.boundMs)})`
    : `loop ${s.loop} has not progressed in the ${seconds(s.sinceMs)} since it started (bound ${
      seconds(s.boundMs)
    })`;
}
