/**
 * The fault campaign's functional core: the invariants it checks on what it
 * observed of the pods, the order it injects faults in, and its figures.
 * Plain data in, plain data out; the campaign (campaign.ts) does the I/O.
 */

/** One pod as one poll of the API saw it. */
export interface PodSnapshot {
  /** When the poll's answer arrived, milliseconds. */
  atMs: number;
  /** When the poll was sent, milliseconds (default `atMs`): the state it shows is from between the two. */
  sentMs?: number;
  /** `namespace/name`. */
  key: string;
  /** The pod's uid: a new one means the pod was recreated. */
  uid: string;
  /** `metadata.generation` (every resize bumps it). */
  generation: number;
  /** `status.qosClass`. */
  qosClass: string;
  /** Restarts summed over the pod's containers. */
  restarts: number;
  /** Per container: CPU request, spec CPU limit, and the limit the kubelet reports (millicores; null when absent). */
  containers: Record<string, { request: number; limit: number | null; reported: number | null }>;
}

/** What a pod may be given, per container: never below `floor`, never above `cap` (millicores). */
export interface PodBounds {
  /** The pod's declared state at creation. */
  uid: string;
  qosClass: string;
  /** Per container: the declared CPU limit (what undeploy must give back), the floor and the cap. */
  containers: Record<string, { declared: number; floor: number; cap: number }>;
}

/** One broken invariant. */
export interface Violation {
  atMs: number;
  key: string;
  /** Which invariant: `bounds`, `qos`, `restart`, `recreated`, `budget`, `restore`. */
  invariant: string;
  detail: string;
}

/**
 * Invariants of one snapshot against the pod's bounds: every CPU limit in the
 * spec and as the kubelet reports it within [floor, cap]; the QoS class as
 * created; no container restart; the same pod (uid).
 */
export function snapshotViolations(snapshot: PodSnapshot, bounds: PodBounds): Violation[] {
  const found: Violation[] = [];
  const add = (invariant: string, detail: string) =>
    found.push({ atMs: snapshot.atMs, key: snapshot.key, invariant, detail });
  if (snapshot.uid !== bounds.uid) add("recreated", `uid ${bounds.uid} → ${snapshot.uid}`);
  if (snapshot.qosClass !== bounds.qosClass) {
    add("qos", `QoS class ${bounds.qosClass} → ${snapshot.qosClass}`);
  }
  if (snapshot.restarts > 0) add("restart", `${snapshot.restarts} container restart(s)`);
  for (const [name, b] of Object.entries(bounds.containers)) {
    const c = snapshot.containers[name];
    if (c === undefined) {
      add("bounds", `container ${name} gone from the spec`);
      continue;
    }
    for (const [what, value] of [["spec", c.limit], ["reported", c.reported]] as const) {
      if (what === "reported" && value === null) continue; // not reported yet
      if (value === null || value < b.floor || value > b.cap) {
        add(
          "bounds",
          `${name}: ${what} limit ${value ?? "none"}m outside [${b.floor}m, ${b.cap}m]`,
        );
      }
    }
  }
  return found;
}

/**
 * A resize as the polls saw it: it happened after `afterMs` (when the poll
 * before it was sent, which still showed the older generation) and by `atMs`
 * (when the answer that showed it arrived), milliseconds.
 */
export interface ResizeSighting {
  /** Earliest it can have happened. */
  afterMs: number;
  /** Latest it can have happened. */
  atMs: number;
}

/**
 * Resizes of one pod seen as generation increases between consecutive
 * snapshots (ordered by time), each placed between the two snapshots' polls.
 * Polls can miss intermediate generations: those resizes share the interval
 * of the snapshot that showed them.
 *
 * With `declared` (the pod's declared limits), a step that lands every
 * container on its declared limit is a restore (opt-out, undeploy): the
 * controller never holds those by the budget, so one resize of such a step is
 * left out (the others of a multi-generation step still count).
 */
export function resizeTimes(
  snapshots: readonly PodSnapshot[],
  declared?: Readonly<Record<string, number>>,
): ResizeSighting[] {
  const times: ResizeSighting[] = [];
  for (let i = 1; i < snapshots.length; i++) {
    const [before, after] = [snapshots[i - 1], snapshots[i]];
    if (before.uid !== after.uid) continue;
    const restore = declared !== undefined && after.generation > before.generation &&
      Object.entries(declared).every(([name, limit]) => after.containers[name]?.limit === limit);
    const steps = after.generation - before.generation - (restore ? 1 : 0);
    const afterMs = before.sentMs ?? before.atMs;
    for (let n = 0; n < steps; n++) times.push({ afterMs, atMs: after.atMs });
  }
  return times;
}

/**
 * The per-pod resize budget across failovers: at most `budget` resizes of one
 * pod in any `windowMs` window. A window overflows only when it must, wherever
 * in its interval each resize happened: `budget + 1` resizes of which the last
 * was seen less than `windowMs` after the first could have happened. (The
 * controller times its budget on its own clock to the millisecond; a poll that
 * saw one resize late must not turn that into a violation.) One violation per
 * window that overflows (reported at its last resize). Sightings are
 * consecutive intervals of one pod's polls: ordered by `atMs`, they are ordered
 * by `afterMs` too.
 */
export function budgetViolations(
  key: string,
  times: readonly ResizeSighting[],
  budget: number,
  windowMs = 60_000,
): Violation[] {
  const found: Violation[] = [];
  const sorted = [...times].sort((a, b) => a.atMs - b.atMs || a.afterMs - b.afterMs);
  let start = 0;
  let reportedUntil = -Infinity;
  for (let end = 0; end < sorted.length; end++) {
    while (sorted[end].atMs - sorted[start].afterMs >= windowMs) start++;
    const count = end - start + 1;
    if (count > budget && sorted[start].afterMs > reportedUntil) {
      found.push({
        atMs: sorted[end].atMs,
        key,
        invariant: "budget",
        detail: `${count} resizes within ${windowMs / 1000} s (budget ${budget})`,
      });
      reportedUntil = sorted[end].atMs;
    }
  }
  return found;
}

/** After MBCAS left: every container back at its declared limit, in the spec and as reported. */
export function restoreViolations(snapshot: PodSnapshot, bounds: PodBounds): Violation[] {
  const found: Violation[] = [];
  for (const [name, b] of Object.entries(bounds.containers)) {
    const c = snapshot.containers[name];
    if (c?.limit !== b.declared || c?.reported !== b.declared) {
      found.push({
        atMs: snapshot.atMs,
        key: snapshot.key,
        invariant: "restore",
        detail: `${name}: spec ${c?.limit ?? "none"}m, reported ${
          c?.reported ?? "none"
        }m after undeploy; declared ${b.declared}m`,
      });
    }
  }
  return found;
}

/** A seeded pseudo-random source in [0, 1) (a 32-bit LCG: the same seed, the same campaign). */
export function seededRandom(seed: number): () => number {
  let state = (Math.floor(seed) >>> 0) || 1;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

/**
 * The order of the faults: `rounds` rounds, each every fault once in an order
 * shuffled by `random` (Fisher–Yates); faults listed in `last` end every round
 * in their given order (undeploy ends the campaign: nothing runs after it).
 */
export function faultOrder<T extends string>(
  faults: readonly T[],
  rounds: number,
  random: () => number,
  last: readonly T[] = [],
): T[] {
  const order: T[] = [];
  const shuffled = faults.filter((f) => !last.includes(f));
  for (let round = 0; round < rounds; round++) {
    for (let i = shuffled.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [shuffled[i], shuffled[j]] = [shuffled[j], shuffled[i]];
    }
    order.push(...shuffled);
  }
  return [...order, ...last.filter((f) => faults.includes(f))];
}

/** The `p`-quantile (0–1) of `values` by the nearest-rank method; null for none. */
export function quantile(values: readonly number[], p: number): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))];
}

/** One fault as the campaign injected it. */
export interface FaultResult {
  fault: string;
  /** What exactly was done. */
  detail: string;
  /** From the end of the fault to every invariant of recovery holding again, ms; null if it never did. */
  recoveryMs: number | null;
  violations: number;
  /** The control measure (no fault injected): its own row, outside the totals. */
  control?: boolean;
}

/**
 * The campaign's table: one row per fault kind (control rows first, 0
 * injected), then the totals over the faults.
 */
export function campaignTable(results: readonly FaultResult[], violations: number): string {
  const kinds = [
    ...new Set([...results.filter((r) => r.control), ...results.filter((r) => !r.control)]
      .map((r) => r.fault)),
  ];
  const ms = (v: number | null) => (v === null ? "never" : `${(v / 1000).toFixed(1)} s`);
  const rows = kinds.map((fault) => {
    const of = results.filter((r) => r.fault === fault);
    const recovered = of.flatMap((r) => (r.recoveryMs === null ? [] : [r.recoveryMs]));
    return [
      fault,
      String(of.filter((r) => !r.control).length),
      String(of.reduce((s, r) => s + r.violations, 0)),
      `${recovered.length}/${of.length}`,
      ms(quantile(recovered, 0.5)),
      ms(quantile(recovered, 0.99)),
    ];
  });
  const faults = results.filter((r) => !r.control);
  const all = faults.flatMap((r) => (r.recoveryMs === null ? [] : [r.recoveryMs]));
  rows.push([
    "all faults",
    String(faults.length),
    String(violations),
    `${all.length}/${faults.length}`,
    ms(quantile(all, 0.5)),
    ms(quantile(all, 0.99)),
  ]);
  const header = ["fault", "injected", "violations", "recovered", "recovery p50", "recovery p99"];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) =>
    `| ${
      cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join(" | ")
    } |`;
  return [
    line(header),
    `|${widths.map((w, i) => (i === 0 ? "-".repeat(w + 2) : "-".repeat(w + 1) + ":")).join("|")}|`,
    ...rows.map(line),
  ].join("\n");
}
