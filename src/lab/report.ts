/**
 * The lab's report: one self-contained HTML page per {@link LabRun} (inline
 * CSS and inline SVG, no scripts, no external resources) and a standalone SVG
 * bar chart comparing policies for the lab bench.
 *
 * Every chart is an `<svg data-chart="ID" data-series="N">` where N counts the
 * series drawn, and every series is a `<path class="series" data-points="n">`
 * with n > 0, so a test can check that each chart has data. Rendering is pure
 * and deterministic: the same input gives the same bytes.
 *
 * @module
 */

import type { LabPod, LabPolicy, LabRun, LabSample } from "./types.ts";

/** One policy's results in the lab bench: a row of {@link renderComparisonSvg}. */
export interface BenchRow {
  /** The policy. */
  policy: LabPolicy;
  /** Median request latency of the latency pod, milliseconds; null without requests. */
  latencyP50Ms: number | null;
  /** 99th percentile request latency of the latency pod, milliseconds; null without requests. */
  latencyP99Ms: number | null;
  /** Throttled CPU-seconds by pod or workload (e.g. `{ latency: 1.2, bursty: 4.5 }`). */
  throttledSeconds: Record<string, number>;
  /** CPU-seconds the batch pods got. */
  batchCpuSeconds: number;
  /** Node utilisation, a fraction 0..1 (drawn as a percentage). */
  utilisation: number;
  /** Fairness index 0..1 (higher is fairer, e.g. Jain's index); null when undefined. */
  fairness: number | null;
  /** Limit changes applied in the kernel. */
  resizes: number;
  /** Median seconds from a demand spike to the limit following it; null when none. */
  spikeToLimitP50S: number | null;
  /** 99th percentile seconds from a demand spike to the limit following it; null when none. */
  spikeToLimitP99S: number | null;
}

/**
 * The `p`-th percentile (0..100) of `values` by the nearest-rank method: the
 * smallest value such that at least p % of the values are at most it, i.e.
 * the value of rank ⌈p/100 · n⌉ (at least 1) in ascending order. It is always
 * one of the values (no interpolation); p = 0 gives the minimum, p = 100 the
 * maximum. Non-finite values (NaN, ±Infinity) are ignored; null when no finite
 * value is left. Throws a RangeError when p is not within 0..100.
 */
export function percentile(values: number[], p: number): number | null {
  if (!(p >= 0 && p <= 100)) throw new RangeError(`percentile: p must be within 0..100, got ${p}`);
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return null;
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[Math.min(rank, sorted.length) - 1];
}

// ---------------------------------------------------------------------------
// Text and numbers

const ESCAPES: Record<string, string> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
  "'": "&#39;",
};

/** Text safe in HTML/XML content and quoted attributes (control characters replaced). */
function esc(text: string): string {
  return text
    // deno-lint-ignore no-control-regex -- characters XML does not allow
    .replace(/[\u0000-\u0008\u000B\u000C\u000E-\u001F]/g, "\uFFFD")
    .replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

/** A coordinate with one decimal, never `-0`. */
function px(v: number): string {
  const r = Math.round(v * 10) / 10;
  return (r === 0 ? 0 : r).toString();
}

/** `v` with `digits` decimals, never `-0`; an en dash when not finite. */
function fixed(v: number, digits: number): string {
  if (!Number.isFinite(v)) return "–";
  const s = v.toFixed(digits);
  return Number(s) === 0 ? (0).toFixed(digits) : s;
}

/**
 * Three significant digits (whole numbers from 1000), no trailing zeros, no
 * exponent from 0.001; an en dash when not finite.
 */
function sig(v: number): string {
  if (!Number.isFinite(v)) return "–";
  const a = Math.abs(v);
  if (a >= 999.5) return fixed(v, 0);
  if (a >= 0.001) return Number(v.toPrecision(3)).toString();
  if (a === 0) return "0";
  return Number(v.toPrecision(3)).toExponential();
}

/** A value or an en dash for null. */
function orDash(v: number | null, format: (v: number) => string): string {
  return v === null ? "–" : format(v);
}

/** Stable ascending sort by time (ties keep input order). */
function byTime<T extends { t: number }>(items: T[]): T[] {
  return items.map((item, i) => ({ item, i }))
    .sort((a, b) => a.item.t - b.item.t || a.i - b.i)
    .map((x) => x.item);
}

function sum(values: number[]): number {
  let total = 0;
  for (const v of values) total += v;
  return total;
}

// ---------------------------------------------------------------------------
// Scales

interface Scale {
  /** Value at the bottom of the axis. */
  lo: number;
  /** Value at the top of the axis. */
  hi: number;
  ticks: number[];
  /** Fraction 0..1 of the axis for value v (clamped). */
  frac(v: number): number;
  label(v: number): string;
}

function niceStep(raw: number): number {
  if (!(raw > 0) || !Number.isFinite(raw)) return 1;
  const exp = Math.floor(Math.log10(raw));
  const base = Math.pow(10, exp);
  const f = raw / base;
  const nice = f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10;
  return nice * base;
}

function linearScale(lo: number, hi: number, target: number, unit = ""): Scale {
  if (!Number.isFinite(lo)) lo = 0;
  if (!Number.isFinite(hi) || !(hi > lo)) hi = lo + 1;
  const step = niceStep((hi - lo) / target);
  const decimals = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
  const a = Math.floor(lo / step + 1e-9) * step;
  const b = Math.ceil(hi / step - 1e-9) * step;
  const n = Math.max(1, Math.round((b - a) / step));
  const ticks: number[] = [];
  for (let i = 0; i <= n; i++) ticks.push(Number((a + i * step).toFixed(decimals)));
  const top = ticks[ticks.length - 1];
  return {
    lo: ticks[0],
    hi: top,
    ticks,
    frac: (v) => Math.min(1, Math.max(0, (v - ticks[0]) / (top - ticks[0]))),
    label: (v) => fixed(v, decimals) + unit,
  };
}

/** The nearest 1, 2 or 5 × 10^k at or above (`up`) or at or below `v` (> 0). */
function niceLog(v: number, up: boolean): number {
  const base = Math.pow(10, Math.floor(Math.log10(v) + 1e-12));
  const candidates = up ? [1, 2, 5, 10] : [10, 5, 2, 1];
  for (const m of candidates) {
    const c = Number((m * base).toPrecision(6));
    if (up ? c >= v * (1 - 1e-9) : c <= v * (1 + 1e-9)) return c;
  }
  return up ? 10 * base : base;
}

function logScale(lo: number, hi: number): Scale {
  const a = niceLog(lo, false);
  let b = niceLog(hi, true);
  if (b <= a) b = a * 10;
  const la = Math.log10(a);
  const lb = Math.log10(b);
  const multipliers = lb - la <= 3.5 ? [1, 2, 5] : [1];
  const ticks: number[] = [];
  for (let k = Math.floor(la + 1e-9); k <= Math.ceil(lb - 1e-9); k++) {
    for (const m of multipliers) {
      const v = Number((m * Math.pow(10, k)).toPrecision(6));
      if (v >= a * (1 - 1e-9) && v <= b * (1 + 1e-9)) ticks.push(v);
    }
  }
  if (ticks[0] !== a) ticks.unshift(a);
  if (ticks[ticks.length - 1] !== b) ticks.push(b);
  return {
    lo: a,
    hi: b,
    ticks,
    frac: (v) => Math.min(1, Math.max(0, (Math.log10(Math.max(v, a)) - la) / (lb - la))),
    label: (v) => String(v),
  };
}

// ---------------------------------------------------------------------------
// Line charts

/** Okabe–Ito colours (colour-blind safe), without the yellow that is faint on white. */
const PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"];
const DASHES = ["", "7 4", "2 3", "9 3 2 3"];

/** Colour and dash of the i-th of several pods. */
function podStyle(i: number): { color: string; dash: string } {
  return {
    color: PALETTE[i % PALETTE.length],
    dash: DASHES[Math.floor(i / PALETTE.length) % DASHES.length],
  };
}

interface Point {
  t: number;
  v: number | null;
}

interface Series {
  label: string;
  color: string;
  dash?: string;
  width?: number;
  opacity?: number;
  /** Drawn as a step function (the value holds until the next sample). */
  step?: boolean;
  points: Point[];
  /** Legend text when the series has no value at all (it is not drawn). */
  absent: string;
}

interface RefLine {
  value: number;
  label: string;
  color: string;
  dash: string;
  /** Above the value axis: named in the legend, not drawn. */
  offScale?: boolean;
}

interface LineChartSpec {
  id: string;
  title: string;
  xMax: number;
  y: Scale;
  yLabel: string;
  series: Series[];
  refs: RefLine[];
}

const CHART_W = 920;
const M_LEFT = 70;
const M_RIGHT = 24;
const PLOT_H = 220;
const M_BOTTOM = 44;
const LEGEND_ROW = 20;
const CHAR_W = 6.6;
const FONT =
  `font-family="system-ui, -apple-system, 'Segoe UI', Roboto, 'Liberation Sans', sans-serif"`;

/** `d` of a polyline through the points, broken at nulls and at gaps over twice the usual step. */
function seriesPath(
  points: Point[],
  x: (t: number) => number,
  y: (v: number) => number,
  step: boolean,
): { d: string; n: number } {
  const sorted = byTime(points.filter((p) => Number.isFinite(p.t)));
  const steps: number[] = [];
  for (let i = 1; i < sorted.length; i++) {
    const dt = sorted[i].t - sorted[i - 1].t;
    if (dt > 0) steps.push(dt);
  }
  const usual = percentile(steps, 50);
  const maxGap = usual === null ? Infinity : 2 * usual + 1e-9;
  const parts: string[] = [];
  let n = 0;
  let segment = 0;
  let prevT = -Infinity;
  let prevY = 0;
  const close = () => {
    if (step && segment > 0 && usual !== null) {
      parts.push(`H${px(x(prevT + usual))}`); // the last value holds for one step
    } else if (segment === 1) parts.push("h0"); // a lone point: a dot with round caps
    segment = 0;
  };
  for (const p of sorted) {
    if (p.v === null || !Number.isFinite(p.v)) {
      close();
      continue;
    }
    if (segment > 0 && p.t - prevT > maxGap) close();
    const xs = px(x(p.t));
    const ys = px(y(p.v));
    if (segment === 0) parts.push(`M${xs} ${ys}`);
    else if (step) parts.push(`H${xs}${ys === px(prevY) ? "" : ` V${ys}`}`);
    else parts.push(`L${xs} ${ys}`);
    segment++;
    n++;
    prevT = p.t;
    prevY = y(p.v);
  }
  close();
  return { d: parts.join(" "), n };
}

function hasValue(series: Series): boolean {
  return series.points.some((p) => p.v !== null && Number.isFinite(p.v) && Number.isFinite(p.t));
}

interface LegendItem {
  label: string;
  color: string;
  dash: string;
  width: number;
  opacity: number;
  muted: boolean;
}

/** Legend rows laid out left to right, wrapping at the chart's width. */
function layoutLegend(items: LegendItem[]): { svg: string; height: number } {
  const out: string[] = [];
  let x = M_LEFT;
  let row = 0;
  for (const item of items) {
    const w = 30 + item.label.length * CHAR_W + 22;
    if (x > M_LEFT && x + w > CHART_W - M_RIGHT) {
      x = M_LEFT;
      row++;
    }
    const y = 14 + row * LEGEND_ROW;
    const dash = item.dash ? ` stroke-dasharray="${item.dash}"` : "";
    out.push(
      `<line x1="${px(x)}" y1="${y}" x2="${
        px(x + 24)
      }" y2="${y}" stroke="${item.color}" stroke-width="${item.width}" stroke-opacity="${item.opacity}" stroke-linecap="round"${dash}/>`,
      `<text x="${px(x + 30)}" y="${y + 4}"${item.muted ? ` fill="#8c959f"` : ""}>${
        esc(item.label)
      }</text>`,
    );
    x += w;
  }
  return {
    svg: `<g class="legend" font-size="12" fill="#24292f">${out.join("")}</g>`,
    height: 14 + row * LEGEND_ROW + 14,
  };
}

function renderLineChart(spec: LineChartSpec): string {
  const drawn = spec.series.filter(hasValue);
  const legend = layoutLegend([
    ...spec.series.map((s) => ({
      label: hasValue(s) ? s.label : `${s.label} (${s.absent})`,
      color: s.color,
      dash: s.dash ?? "",
      width: Math.max(2, s.width ?? 2),
      opacity: hasValue(s) ? s.opacity ?? 1 : 0.35,
      muted: !hasValue(s),
    })),
    ...spec.refs.map((r) => ({
      label: r.offScale ? `${r.label} (above the chart)` : r.label,
      color: r.color,
      dash: r.dash,
      width: 1.5,
      opacity: r.offScale ? 0.35 : 1,
      muted: r.offScale ?? false,
    })),
  ]);
  const top = legend.height + 8;
  const left = M_LEFT;
  const right = CHART_W - M_RIGHT;
  const bottom = top + PLOT_H;
  const height = bottom + M_BOTTOM;
  const xs = linearScale(0, spec.xMax, 8);
  const x = (t: number) => left + xs.frac(t) * (right - left);
  const y = (v: number) => bottom - spec.y.frac(v) * PLOT_H;

  const grid: string[] = [];
  const axes: string[] = [];
  for (const t of spec.y.ticks) {
    const yy = px(y(t));
    grid.push(`<line x1="${left}" y1="${yy}" x2="${right}" y2="${yy}"/>`);
    axes.push(`<text x="${left - 8}" y="${yy}" dy="4" text-anchor="end">${spec.y.label(t)}</text>`);
  }
  for (const t of xs.ticks) {
    const xx = px(x(t));
    grid.push(`<line x1="${xx}" y1="${top}" x2="${xx}" y2="${bottom}"/>`);
    axes.push(`<text x="${xx}" y="${bottom + 18}" text-anchor="middle">${xs.label(t)}</text>`);
  }
  axes.push(
    `<line x1="${left}" y1="${bottom}" x2="${right}" y2="${bottom}" stroke="#57606a"/>`,
    `<line x1="${left}" y1="${top}" x2="${left}" y2="${bottom}" stroke="#57606a"/>`,
    `<text x="${px((left + right) / 2)}" y="${
      bottom + 36
    }" text-anchor="middle" fill="#57606a">time since start (s)</text>`,
    `<text transform="translate(16 ${
      px((top + bottom) / 2)
    }) rotate(-90)" text-anchor="middle" fill="#57606a">${esc(spec.yLabel)}</text>`,
  );

  const refs = spec.refs.filter((r) => !r.offScale).map((r) => {
    const yy = px(y(r.value));
    return `<line class="ref" x1="${left}" y1="${yy}" x2="${right}" y2="${yy}" stroke="${r.color}" stroke-width="1.5" stroke-dasharray="${r.dash}"/>`;
  });

  const paths = drawn.map((s) => {
    const { d, n } = seriesPath(s.points, x, y, s.step ?? false);
    const dash = s.dash ? ` stroke-dasharray="${s.dash}"` : "";
    const opacity = (s.opacity ?? 1) < 1 ? ` stroke-opacity="${s.opacity}"` : "";
    return `<path class="series" data-label="${
      esc(s.label)
    }" data-points="${n}" d="${d}" fill="none" stroke="${s.color}" stroke-width="${
      s.width ?? 2
    }" stroke-linejoin="round" stroke-linecap="round"${opacity}${dash}/>`;
  });

  const clip = `clip-${spec.id}`;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" class="chart" data-chart="${
      esc(spec.id)
    }" data-series="${drawn.length}" width="${CHART_W}" height="${height}" viewBox="0 0 ${CHART_W} ${height}" role="img" aria-label="${
      esc(spec.title)
    }" ${FONT} font-size="12">`,
    `<title>${esc(spec.title)}</title>`,
    `<defs><clipPath id="${esc(clip)}"><rect x="${left}" y="${top - 4}" width="${
      right - left
    }" height="${PLOT_H + 8}"/></clipPath></defs>`,
    legend.svg,
    `<g class="grid" stroke="#eaeef2" stroke-width="1">${grid.join("")}</g>`,
    `<g class="axes" fill="#57606a">${axes.join("")}</g>`,
    `<g class="refs">${refs.join("")}</g>`,
    `<g class="plot" clip-path="url(#${esc(clip)})">${paths.join("")}</g>`,
    `</svg>`,
  ].join("\n");
}

// ---------------------------------------------------------------------------
// The run's data

interface PodStats {
  pod: LabPod;
  index: number;
  samples: LabSample[];
  meanUsage: number | null;
  throttledCpuSeconds: number;
  resizes: number;
  latencies: number[];
  isLatency: boolean;
}

function podStats(run: LabRun): PodStats[] {
  const samplesByPod = new Map<string, LabSample[]>();
  for (const s of run.samples) {
    const list = samplesByPod.get(s.pod) ?? [];
    list.push(s);
    samplesByPod.set(s.pod, list);
  }
  const latenciesByPod = new Map<string, number[]>();
  for (const l of run.latencies) {
    const list = latenciesByPod.get(l.pod) ?? [];
    for (const v of l.latenciesMs) list.push(v);
    latenciesByPod.set(l.pod, list);
  }
  return run.pods.map((pod, index) => {
    const samples = byTime(samplesByPod.get(pod.name) ?? []);
    const usage = samples.map((s) => s.usageMillicores).filter(Number.isFinite);
    return {
      pod,
      index,
      samples,
      meanUsage: usage.length === 0 ? null : sum(usage) / usage.length,
      // Each sample covers one second: millicores summed over seconds / 1000 = CPU-seconds.
      throttledCpuSeconds: sum(samples.map((s) => s.throttledMillicores).filter(Number.isFinite)) /
        1000,
      resizes: run.resizes.filter((r) => r.pod === pod.name).length,
      latencies: latenciesByPod.get(pod.name) ?? [],
      isLatency: pod.workload === "latency" || latenciesByPod.has(pod.name),
    };
  });
}

/** The time axis' end: the run's length or the last recorded time, at least 1 s. */
function timeExtent(run: LabRun): number {
  let end = Number.isFinite(run.durationSeconds) ? run.durationSeconds : 0;
  for (const list of [run.samples, run.prices, run.latencies]) {
    for (const item of list) if (Number.isFinite(item.t) && item.t > end) end = item.t;
  }
  return Math.max(1, end);
}

function maxOf(values: Array<number | null>, floor: number): number {
  let m = floor;
  for (const v of values) if (v !== null && Number.isFinite(v) && v > m) m = v;
  return m;
}

// ---------------------------------------------------------------------------
// Sections

function cpuChart(run: LabRun, stats: PodStats, xMax: number): string {
  const s = stats.samples;
  const values = s.flatMap((x) => [
    x.usageMillicores,
    x.demandMillicores,
    x.allocationMillicores,
    x.guaranteeMillicores ?? null,
    x.limitMillicores,
  ]);
  const capacity = run.nodeCapacityMillicores;
  const dataTop = maxOf([...values, stats.pod.requestMillicores], 1);
  // The capacity line sets the scale unless it would flatten the pod's data to a quarter.
  const capacityOnScale = capacity <= 4 * dataTop;
  const top = capacityOnScale ? Math.max(dataTop, capacity) : dataTop;
  const neverLimited = s.every((x) => x.limitMillicores === null);
  return renderLineChart({
    id: `cpu-${stats.index}`,
    title:
      `CPU of pod ${stats.pod.name}: demand, market limit and guarantee, kernel limit and usage (millicores)`,
    xMax,
    y: linearScale(0, top * 1.04, 10),
    yLabel: "CPU (millicores)",
    series: [
      {
        label: neverLimited ? "kernel limit" : "kernel limit (gap = unlimited)",
        color: "#D55E00",
        width: 5,
        opacity: 0.4,
        step: true,
        points: s.map((x) => ({ t: x.t, v: x.limitMillicores })),
        absent: "unlimited throughout",
      },
      {
        label: "market limit",
        color: "#0072B2",
        width: 2,
        step: true,
        points: s.map((x) => ({ t: x.t, v: x.allocationMillicores })),
        absent: "not recorded",
      },
      {
        label: "guarantee",
        color: "#CC79A7",
        width: 2,
        dash: "4 3",
        step: true,
        // Runs recorded before guarantees have no such field: not recorded.
        points: s.map((x) => ({ t: x.t, v: x.guaranteeMillicores ?? null })),
        absent: "not recorded",
      },
      {
        label: "demand estimate",
        color: "#E69F00",
        width: 2,
        dash: "7 4",
        points: s.map((x) => ({ t: x.t, v: x.demandMillicores })),
        absent: "not recorded",
      },
      {
        label: "usage",
        color: "#009E73",
        width: 1.6,
        points: s.map((x) => ({ t: x.t, v: x.usageMillicores })),
        absent: "not recorded",
      },
    ],
    refs: [
      {
        value: capacity,
        label: `node capacity ${fixed(capacity, 0)}m`,
        color: "#57606a",
        dash: "8 4",
        offScale: !capacityOnScale,
      },
      {
        value: stats.pod.requestMillicores,
        label: `request ${fixed(stats.pod.requestMillicores, 0)}m`,
        color: "#8c959f",
        dash: "2 3",
      },
    ],
  });
}

function throttlingChart(stats: PodStats[], xMax: number): string {
  const withData = stats.filter((s) => s.samples.length > 0);
  return renderLineChart({
    id: "throttling",
    title: "Throttled CFS periods per pod (% of periods in each second)",
    xMax,
    y: linearScale(0, 100, 5, "%"),
    yLabel: "throttled periods (%)",
    series: withData.map((s, i) => ({
      label: s.pod.name,
      ...podStyle(i),
      width: 1.8,
      points: s.samples.map((x) => ({ t: x.t, v: x.throttledRatio * 100 })),
      absent: "no data",
    })),
    refs: [],
  });
}

interface LatencyPoint {
  t: number;
  values: number[];
}

/** Latencies per pod and second (records of the same second merged), in time order. */
function latencySeconds(run: LabRun, pod: string): LatencyPoint[] {
  const byT = new Map<number, number[]>();
  for (const l of run.latencies) {
    if (l.pod !== pod || !Number.isFinite(l.t)) continue;
    const list = byT.get(l.t) ?? [];
    for (const v of l.latenciesMs) list.push(v);
    byT.set(l.t, list);
  }
  return [...byT.entries()].sort((a, b) => a[0] - b[0]).map(([t, values]) => ({ t, values }));
}

function latencyChart(run: LabRun, pods: PodStats[], xMax: number): string {
  const series: Series[] = [];
  const single = pods.length === 1;
  pods.forEach((s, i) => {
    const seconds = latencySeconds(run, s.pod.name);
    const style = podStyle(i);
    const name = single ? "" : `${s.pod.name} `;
    series.push(
      {
        label: `${name}p50`,
        color: single ? "#0072B2" : style.color,
        width: 2,
        points: seconds.map((x) => ({ t: x.t, v: percentile(x.values, 50) })),
        absent: "no requests",
      },
      {
        label: `${name}p99`,
        color: single ? "#D55E00" : style.color,
        dash: single ? "" : "7 4",
        width: 2,
        points: seconds.map((x) => ({ t: x.t, v: percentile(x.values, 99) })),
        absent: "no requests",
      },
    );
  });
  const values = series.flatMap((s) => s.points.map((p) => p.v)).filter((v): v is number =>
    v !== null && Number.isFinite(v)
  );
  const positive = values.filter((v) => v > 0);
  const lo = positive.length === 0 ? 0 : Math.min(...positive);
  const hi = maxOf(values, 0);
  const useLog = lo > 0 && hi / lo > 20;
  return renderLineChart({
    id: "latency",
    title: "Request latency per second, p50 and p99 (ms)",
    xMax,
    y: useLog ? logScale(lo, hi) : linearScale(0, Math.max(hi * 1.05, 1), 6),
    yLabel: useLog ? "latency (ms, log scale)" : "latency (ms)",
    series,
    refs: [],
  });
}

function priceChart(run: LabRun, xMax: number): string {
  const prices = run.prices.map((p) => p.price);
  return renderLineChart({
    id: "price",
    title: "Market price over time",
    xMax,
    y: linearScale(0, maxOf(prices, 0) * 1.05 || 1, 5),
    yLabel: "price (weight per millicore)",
    series: [{
      label: "price (gap = not contended or unbounded)",
      color: "#CC79A7",
      width: 2,
      step: true,
      points: run.prices.map((p) => ({ t: p.t, v: p.price })),
      absent: "no data",
    }],
    refs: [],
  });
}

function noData(what: string): string {
  return `<p class="nodata">no data${what ? ` (${esc(what)})` : ""}</p>`;
}

function summaryTable(stats: PodStats[]): string {
  const rows = stats.map((s) => {
    const lat = (p: number) => s.isLatency ? orDash(percentile(s.latencies, p), sig) : "–";
    return `<tr><td>${esc(s.pod.name)}</td><td>${esc(s.pod.workload)}</td><td>${
      fixed(s.pod.requestMillicores, 0)
    }</td><td>${
      orDash(s.pod.limitMillicores, (v) => fixed(v, 0))
    }</td><td>${s.samples.length}</td><td>${orDash(s.meanUsage, (v) => fixed(v, 0))}</td><td>${
      fixed(s.throttledCpuSeconds, 2)
    }</td><td>${s.resizes}</td><td>${lat(50)}</td><td>${lat(95)}</td><td>${lat(99)}</td></tr>`;
  });
  return [
    `<table class="summary">`,
    `<thead><tr><th>pod</th><th>workload</th><th>request (m)</th><th>declared limit (m)</th><th>samples</th><th>mean usage (m)</th><th>throttled CPU-s</th><th>resizes</th><th>p50 (ms)</th><th>p95 (ms)</th><th>p99 (ms)</th></tr></thead>`,
    `<tbody>`,
    rows.length === 0 ? `<tr><td colspan="11">no pods</td></tr>` : rows.join("\n"),
    `</tbody>`,
    `</table>`,
  ].join("\n");
}

function percentileTable(pods: PodStats[]): string {
  const ps = [50, 90, 95, 99, 99.9];
  const rows = pods.map((s) => {
    const finite = s.latencies.filter(Number.isFinite);
    const mean = finite.length === 0 ? null : sum(finite) / finite.length;
    return `<tr><td>${esc(s.pod.name)}</td><td>${finite.length}</td><td>${orDash(mean, sig)}</td>${
      ps.map((p) => `<td>${orDash(percentile(finite, p), sig)}</td>`).join("")
    }<td>${orDash(percentile(finite, 100), sig)}</td></tr>`;
  });
  return [
    `<table class="percentiles">`,
    `<thead><tr><th>pod</th><th>requests</th><th>mean (ms)</th>${
      ps.map((p) => `<th>p${p} (ms)</th>`).join("")
    }<th>max (ms)</th></tr></thead>`,
    `<tbody>`,
    rows.join("\n"),
    `</tbody>`,
    `</table>`,
  ].join("\n");
}

const CSS = `
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Liberation Sans",sans-serif;color:#1f2328;background:#fff;margin:0 auto;padding:16px 24px 48px;max-width:980px}
h1{font-size:22px;margin:8px 0 12px}
h2{font-size:18px;margin:32px 0 10px;padding-bottom:4px;border-bottom:1px solid #d0d7de}
dl.meta{display:grid;grid-template-columns:max-content auto max-content auto;gap:4px 16px;margin:0}
dl.meta dt{color:#57606a}
dl.meta dd{margin:0;font-variant-numeric:tabular-nums}
table{border-collapse:collapse;font-variant-numeric:tabular-nums;margin:4px 0}
th,td{padding:4px 8px;border-bottom:1px solid #eaeef2;text-align:right;white-space:nowrap}
th{font-weight:600;border-bottom:2px solid #d0d7de;white-space:normal;vertical-align:bottom}
th:first-child,td:first-child,th:nth-child(2),td:nth-child(2){text-align:left}
table.percentiles th:nth-child(2),table.percentiles td:nth-child(2){text-align:right}
figure{margin:12px 0 24px}
figcaption{font-weight:600;margin-bottom:4px}
figcaption .workload{font-weight:400;color:#57606a}
svg.chart{display:block;max-width:100%;height:auto}
.nodata{color:#6e7781;font-style:italic;border:1px dashed #d0d7de;border-radius:4px;padding:18px;text-align:center;margin:4px 0}
.note{color:#57606a;font-size:13px}
`.trim();

/**
 * The report of one lab run: a self-contained HTML page (inline CSS and SVG,
 * no scripts, no external resources) with the run's header, a summary table
 * per pod, a CPU chart per pod (demand; the market's two outputs, the limit
 * it published and the CPU it guarantees under contention, labelled "market
 * limit" and "guarantee"; kernel limit; usage; with the node capacity and
 * the request as reference lines; the capacity is only named when the pod's
 * data stays under a quarter of it, so that an idle pod's chart is not flat;
 * a series a run did not record, such as the guarantee of runs recorded
 * before it existed, is named "not recorded" and not drawn), a throttling
 * chart, a latency chart with a percentile table (when there are latency pods) and a
 * price chart (when any price is not null). Charts are `svg[data-chart]`:
 * `cpu-<pod index>`, `throttling`, `latency` and `price`; a chart without
 * data is replaced by a "no data" note. Pure and deterministic.
 */
export function renderReport(run: LabRun): string {
  const stats = podStats(run);
  const xMax = timeExtent(run);
  const title = `MBCAS lab report: ${run.scenario} (${run.policy})`;
  const meta: Array<[string, string]> = [
    ["scenario", run.scenario],
    ["policy", run.policy],
    ["seed", String(run.seed)],
    ["started", run.startedAt],
    ["duration", `${sig(run.durationSeconds)} s`],
    ["node capacity", `${fixed(run.nodeCapacityMillicores, 0)} millicores`],
    ["pods", String(run.pods.length)],
    ["resizes", String(run.resizes.length)],
  ];

  const cpu = stats.length === 0 ? [noData("no pods")] : stats.map((s) =>
    [
      `<figure>`,
      `<figcaption>${esc(s.pod.name)} <span class="workload">(${esc(s.pod.workload)}, request ${
        fixed(s.pod.requestMillicores, 0)
      }m, declared limit ${
        s.pod.limitMillicores === null ? "none" : `${fixed(s.pod.limitMillicores, 0)}m`
      })</span></figcaption>`,
      s.samples.length === 0 ? noData("no samples for this pod") : cpuChart(run, s, xMax),
      `</figure>`,
    ].join("\n")
  );

  const anySamples = stats.some((s) => s.samples.length > 0);
  const latencyPods = stats.filter((s) => s.isLatency);
  const anyLatency = latencyPods.some((s) => s.latencies.some(Number.isFinite));
  const anyPrice = run.prices.some((p) => p.price !== null && Number.isFinite(p.price));

  const sections = [
    `<section id="summary">`,
    `<h2>Pods</h2>`,
    summaryTable(stats),
    `<p class="note">Usage and throttling come from each pod's cgroup, one sample a second; throttled CPU-s is the CPU time the kernel withheld (sum of throttled millicores over the samples ÷ 1000). Latency percentiles are nearest-rank over every request of the run.</p>`,
    `</section>`,
    `<section id="cpu">`,
    `<h2>CPU per pod</h2>`,
    `<p class="note">With MBCAS the market has two outputs per pod: the market limit it publishes (the CPU limit MBCAS resizes the pod to; the kernel limit shows it once the kubelet has applied it) and the guarantee, the CPU the pod keeps when every pod wants more than its share.</p>`,
    ...cpu,
    `</section>`,
    `<section id="throttling">`,
    `<h2>Throttling</h2>`,
    anySamples ? throttlingChart(stats, xMax) : noData("no samples"),
    `</section>`,
  ];
  if (latencyPods.length > 0) {
    sections.push(
      `<section id="latency">`,
      `<h2>Latency</h2>`,
      anyLatency ? latencyChart(run, latencyPods, xMax) : noData("no requests completed"),
      percentileTable(latencyPods),
      `</section>`,
    );
  }
  sections.push(
    `<section id="price">`,
    `<h2>Market price</h2>`,
    anyPrice ? priceChart(run, xMax) : noData("no price recorded"),
    `</section>`,
  );

  return [
    `<!DOCTYPE html>`,
    `<html lang="en">`,
    `<head>`,
    `<meta charset="utf-8">`,
    `<meta name="viewport" content="width=device-width, initial-scale=1">`,
    `<title>${esc(title)}</title>`,
    `<style>${CSS}</style>`,
    `</head>`,
    `<body>`,
    `<header>`,
    `<h1>${esc(title)}</h1>`,
    `<dl class="meta">${
      meta.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(v)}</dd>`).join("")
    }</dl>`,
    `</header>`,
    `<main>`,
    ...sections,
    `</main>`,
    `</body>`,
    `</html>`,
    ``,
  ].join("\n");
}

// ---------------------------------------------------------------------------
// Bench comparison

/** Fill colour of each policy in the comparison. */
const POLICY_COLOURS: Record<LabPolicy, string> = {
  static: "#8c959f",
  none: "#CC79A7",
  vpa: "#E69F00",
  mbcas: "#0072B2",
};

interface Panel {
  id: string;
  title: string;
  /** What reads as better, or null when neither does. */
  better: "lower" | "higher" | null;
  /** A fixed top of the value axis (e.g. 100 for a percentage). */
  max?: number;
  groups: string[];
  value(row: BenchRow, group: string): number | null;
  format(v: number): string;
}

function comparisonPanels(rows: BenchRow[]): Panel[] {
  const throttleKeys = [...new Set(rows.flatMap((r) => Object.keys(r.throttledSeconds)))].sort();
  return [
    {
      id: "latency",
      title: "Latency of the latency pod (ms)",
      better: "lower",
      groups: ["p50", "p99"],
      value: (r, g) => g === "p50" ? r.latencyP50Ms : r.latencyP99Ms,
      format: sig,
    },
    {
      id: "throttled",
      title: "Throttled CPU-seconds",
      better: "lower",
      groups: throttleKeys.length === 0 ? ["total"] : throttleKeys,
      value: (r, g) => r.throttledSeconds[g] ?? null,
      format: sig,
    },
    {
      id: "batch",
      title: "Batch CPU-seconds",
      better: "higher",
      groups: [""],
      value: (r) => r.batchCpuSeconds,
      format: sig,
    },
    {
      id: "utilisation",
      title: "Node utilisation (%)",
      better: "higher",
      max: 100,
      groups: [""],
      value: (r) => r.utilisation * 100,
      format: sig,
    },
    {
      id: "fairness",
      title: "Fairness index",
      better: "higher",
      max: 1,
      groups: [""],
      value: (r) => r.fairness,
      format: (v) => fixed(v, 2),
    },
    {
      id: "resizes",
      title: "Resizes (limit changes)",
      better: null,
      groups: [""],
      value: (r) => r.resizes,
      format: (v) => fixed(v, 0),
    },
    {
      id: "spike-to-limit",
      title: "Spike to limit (s)",
      better: "lower",
      groups: ["p50", "p99"],
      value: (r, g) => g === "p50" ? r.spikeToLimitP50S : r.spikeToLimitP99S,
      format: sig,
    },
  ];
}

const PANEL_W = 300;
const PANEL_H = 230;
const PANEL_COLS = 3;

function renderPanel(panel: Panel, rows: BenchRow[], x0: number, y0: number): string {
  const left = x0 + 48;
  const right = x0 + PANEL_W - 14;
  const top = y0 + 56;
  const bottom = y0 + PANEL_H - 36;
  const values = rows.flatMap((r) => panel.groups.map((g) => panel.value(r, g)));
  const finite = values.filter((v): v is number => v !== null && Number.isFinite(v));
  const lo = Math.min(0, ...finite);
  const hi = Math.max(0, ...finite);
  const fixedTop = panel.max !== undefined && hi <= panel.max;
  const scale = linearScale(lo, fixedTop ? panel.max! : hi === lo ? lo + 1 : hi * 1.08, 4);
  const y = (v: number) => bottom - scale.frac(v) * (bottom - top);
  const out: string[] = [
    `<g class="panel" data-panel="${esc(panel.id)}">`,
    `<text x="${x0 + 8}" y="${y0 + 18}" font-size="13" font-weight="600" fill="#1f2328">${
      esc(panel.title)
    }</text>`,
  ];
  if (panel.better !== null) {
    out.push(
      `<text x="${x0 + 8}" y="${
        y0 + 33
      }" font-size="11" fill="#57606a">${panel.better} is better</text>`,
    );
  }
  for (const t of scale.ticks) {
    const yy = px(y(t));
    out.push(
      `<line x1="${left}" y1="${yy}" x2="${right}" y2="${yy}" stroke="#eaeef2"/>`,
      `<text x="${left - 6}" y="${yy}" dy="4" text-anchor="end" font-size="11" fill="#57606a">${
        scale.label(t)
      }</text>`,
    );
  }
  out.push(
    `<line x1="${left}" y1="${px(y(0))}" x2="${right}" y2="${px(y(0))}" stroke="#57606a"/>`,
  );
  const groupW = (right - left) / panel.groups.length;
  const barW = Math.min(28, (groupW - 12) / Math.max(1, rows.length));
  panel.groups.forEach((g, gi) => {
    const gx = left + gi * groupW + (groupW - barW * rows.length) / 2;
    rows.forEach((r, ri) => {
      const v = panel.value(r, g);
      const bx = gx + ri * barW;
      const cx = px(bx + barW / 2);
      if (v === null || !Number.isFinite(v)) {
        out.push(
          `<text x="${cx}" y="${
            px(y(0) - 4)
          }" text-anchor="middle" font-size="10" fill="#8c959f">n/a</text>`,
        );
        return;
      }
      const y1 = Math.min(y(v), y(0));
      const h = Math.abs(y(v) - y(0));
      out.push(
        `<rect class="bar" data-policy="${esc(r.policy)}" data-group="${esc(g)}" data-value="${
          sig(v)
        }" x="${px(bx + 1)}" y="${px(y1)}" width="${px(Math.max(1, barW - 2))}" height="${
          px(Math.max(h, 0.5))
        }" fill="${POLICY_COLOURS[r.policy] ?? "#000000"}"/>`,
        `<text x="${cx}" y="${px(y1 - 4)}" text-anchor="middle" font-size="10" fill="#24292f">${
          esc(panel.format(v))
        }</text>`,
      );
    });
    if (g !== "") {
      out.push(
        `<text x="${px(left + gi * groupW + groupW / 2)}" y="${
          bottom + 16
        }" text-anchor="middle" font-size="11" fill="#57606a">${esc(g)}</text>`,
      );
    }
  });
  out.push(`</g>`);
  return out.join("\n");
}

/**
 * A standalone SVG (bar charts, one panel per metric) comparing the bench's
 * policies: latency p50/p99 of the latency pod, throttled CPU-seconds per
 * key of {@link BenchRow.throttledSeconds}, batch CPU-seconds, utilisation,
 * fairness, resizes and spike-to-limit p50/p99. Bars keep the rows' order and
 * one colour per policy; null values show "n/a". The root element carries
 * `data-chart="comparison"` and `data-series` = number of rows. Pure and
 * deterministic.
 */
export function renderComparisonSvg(rows: BenchRow[]): string {
  const panels = comparisonPanels(rows);
  const headerH = 56;
  const width = PANEL_COLS * PANEL_W + 20;
  const panelRows = rows.length === 0 ? 0 : Math.ceil(panels.length / PANEL_COLS);
  const height = headerH + Math.max(panelRows * PANEL_H, 80) + 10;
  const out: string[] = [
    `<?xml version="1.0" encoding="UTF-8"?>`,
    `<svg xmlns="http://www.w3.org/2000/svg" class="comparison" data-chart="comparison" data-series="${rows.length}" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" ${FONT} font-size="12">`,
    `<title>MBCAS lab bench: policies compared</title>`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="18" y="26" font-size="16" font-weight="600" fill="#1f2328">Lab bench: policies compared</text>`,
  ];
  let lx = 18;
  for (const r of rows) {
    out.push(
      `<rect x="${lx}" y="38" width="12" height="12" fill="${
        POLICY_COLOURS[r.policy] ?? "#000000"
      }"/>`,
      `<text x="${lx + 17}" y="48" fill="#24292f">${esc(r.policy)}</text>`,
    );
    lx += 17 + r.policy.length * CHAR_W + 22;
  }
  if (rows.length === 0) {
    out.push(
      `<text x="${width / 2}" y="${
        headerH + 40
      }" text-anchor="middle" fill="#6e7781">no data</text>`,
    );
  } else {
    panels.forEach((panel, i) => {
      const x0 = 10 + (i % PANEL_COLS) * PANEL_W;
      const y0 = headerH + Math.floor(i / PANEL_COLS) * PANEL_H;
      out.push(renderPanel(panel, rows, x0, y0));
    });
  }
  out.push(`</svg>`, ``);
  return out.join("\n");
}
