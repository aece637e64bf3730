import assert from "node:assert/strict";
import fc from "fast-check";
import {
  type BenchRow,
  percentile,
  renderComparisonSvg,
  renderReport,
} from "../../src/lab/report.ts";
import type { LabRun } from "../../src/lab/types.ts";
import {
  expectedChartCount,
  labBenchRow,
  SYNTHETIC_CHART_IDS,
  syntheticBenchRows,
  syntheticRun,
} from "./_synthetic_run.ts";

const VOID = new Set(["meta", "br", "hr", "img", "input", "link"]);

/**
 * Checks that `markup` is well-formed enough: every element closed in order
 * (void and self-closed elements aside), no stray `<` in text, every `&` the
 * start of an entity.
 */
function assertWellFormed(markup: string): void {
  const body = markup.replace(/^<\?xml[^>]*\?>/, "").replace(/<!DOCTYPE html>/i, "");
  const tag = /<(\/?)([a-zA-Z][a-zA-Z0-9]*)((?:"[^"]*"|'[^']*'|[^'">])*)>/g;
  const stack: string[] = [];
  let text = "";
  let last = 0;
  for (const m of body.matchAll(tag)) {
    text += body.slice(last, m.index);
    last = m.index + m[0].length;
    const [, closing, name, attrs] = m;
    assert.ok(!/[<]/.test(attrs), `"<" inside the tag ${m[0]}`);
    if (closing) {
      const open = stack.pop();
      assert.equal(open, name, `</${name}> closes <${open}> at ${m.index}`);
    } else if (!attrs.endsWith("/") && !VOID.has(name.toLowerCase())) {
      stack.push(name);
    }
    for (const a of attrs.matchAll(/&[^;\s"]*;?/g)) {
      assert.match(a[0], /^&(amp|lt|gt|quot|#39);$/, `unescaped & in ${m[0]}`);
    }
  }
  text += body.slice(last);
  assert.deepEqual(stack, [], "unclosed elements");
  assert.ok(!text.includes("<"), `stray "<" in text`);
  assert.ok(!text.includes(">"), `stray ">" in text`);
  for (const a of text.matchAll(/&[^;\s]*;?/g)) {
    assert.match(a[0], /^&(amp|lt|gt|quot|#39);$/, `unescaped & in text: ${a[0]}`);
  }
}

interface ChartInfo {
  id: string;
  declaredSeries: number;
  series: Array<{ points: number; d: string; label: string }>;
}

/** The charts of a page, with their series as written. */
function charts(html: string): ChartInfo[] {
  const out: ChartInfo[] = [];
  for (const m of html.matchAll(/<svg ([^>]*)>([\s\S]*?)<\/svg>/g)) {
    const chart = /data-chart="([^"]*)"/.exec(m[1]);
    const declared = /data-series="(\d+)"/.exec(m[1]);
    assert.ok(chart && declared, `svg without data-chart/data-series: ${m[1]}`);
    const series = [...m[2].matchAll(/<(?:path|polyline) class="series"([^>]*)\/>/g)].map((s) => ({
      points: Number(/data-points="(\d+)"/.exec(s[1])?.[1] ?? "0"),
      d: /\s(?:d|points)="([^"]*)"/.exec(s[1])?.[1] ?? "",
      label: /data-label="([^"]*)"/.exec(s[1])?.[1] ?? "",
    }));
    out.push({ id: chart[1], declaredSeries: Number(declared[1]), series });
  }
  return out;
}

function assertChartsHaveData(html: string): ChartInfo[] {
  const found = charts(html);
  for (const chart of found) {
    assert.ok(chart.declaredSeries > 0, `${chart.id}: no series`);
    assert.equal(chart.series.length, chart.declaredSeries, `${chart.id}: data-series`);
    for (const s of chart.series) {
      assert.ok(s.points > 0, `${chart.id}/${s.label}: data-points ${s.points}`);
      assert.match(s.d, /^M-?[\d.]+ -?[\d.]+/, `${chart.id}/${s.label}: empty path`);
    }
  }
  return found;
}

function emptyRun(): LabRun {
  return {
    scenario: "empty",
    policy: "none",
    seed: 0,
    startedAt: "2025-01-01T00:00:00.000Z",
    durationSeconds: 0,
    nodeCapacityMillicores: 2000,
    pods: [],
    samples: [],
    prices: [],
    latencies: [],
    resizes: [],
  };
}

// --- percentile ---

Deno.test("percentile: nearest rank (the textbook example), edges and empty input", () => {
  const values = [35, 20, 50, 15, 40];
  assert.equal(percentile(values, 5), 15);
  assert.equal(percentile(values, 30), 20);
  assert.equal(percentile(values, 40), 20);
  assert.equal(percentile(values, 50), 35);
  assert.equal(percentile(values, 100), 50);
  assert.equal(percentile(values, 0), 15);
  assert.deepEqual(values, [35, 20, 50, 15, 40], "input not sorted in place");
  assert.equal(percentile([], 50), null);
  assert.equal(percentile([7], 0), 7);
  assert.equal(percentile([7], 99.9), 7);
  assert.equal(percentile([1, 2], 50), 1);
  assert.equal(percentile([1, 2], 50.0001), 2);
  assert.equal(percentile([NaN, 3, Infinity, -Infinity, 1], 100), 3, "non-finite ignored");
  assert.equal(percentile([NaN], 50), null);
  assert.equal(percentile([-5, -1, -3], 50), -3);
  assert.throws(() => percentile([1], -1), RangeError);
  assert.throws(() => percentile([1], 101), RangeError);
  assert.throws(() => percentile([1], NaN), RangeError);
});

Deno.test("percentile: a value of the input, at least p % at or below it, monotone in p", () => {
  fc.assert(
    fc.property(
      fc.array(fc.double({ min: -1e6, max: 1e6, noNaN: true }), { minLength: 1, maxLength: 60 }),
      fc.double({ min: 0, max: 100, noNaN: true }),
      fc.double({ min: 0, max: 100, noNaN: true }),
      (values, p, q) => {
        const v = percentile(values, p)!;
        assert.ok(values.includes(v));
        const atOrBelow = values.filter((x) => x <= v).length;
        assert.ok(atOrBelow >= (p / 100) * values.length - 1e-9);
        const below = values.filter((x) => x < v).length;
        assert.ok(below < Math.max(1, (p / 100) * values.length) + 1e-9);
        const [lo, hi] = p <= q ? [p, q] : [q, p];
        assert.ok(percentile(values, lo)! <= percentile(values, hi)!);
      },
    ),
  );
});

// --- renderReport ---

Deno.test("renderReport: a synthetic MBCAS run gives well-formed HTML with every chart drawn", () => {
  const run = syntheticRun();
  const html = renderReport(run);
  assertWellFormed(html);
  assert.ok(html.startsWith("<!DOCTYPE html>"));
  assert.equal(html.match(/<svg\b/g)?.length, html.match(/<\/svg>/g)?.length);
  assert.ok(!/<script|<link|src="http|href="http|url\(http/i.test(html), "self-contained");
  const found = assertChartsHaveData(html);
  assert.deepEqual(found.map((c) => c.id), SYNTHETIC_CHART_IDS);
  assert.equal(found.length, expectedChartCount(run));
  const cpu = found.find((c) => c.id === "cpu-0")!;
  assert.deepEqual(cpu.series.map((s) => s.label), [
    "kernel limit (gap = unlimited)",
    "market limit",
    "guarantee",
    "demand estimate",
    "usage",
  ]);
  for (const s of cpu.series) assert.equal(s.points, 120);
  assert.equal(found.find((c) => c.id === "throttling")!.series.length, 4);
  const latency = found.find((c) => c.id === "latency")!;
  assert.deepEqual(latency.series.map((s) => s.label), ["p50", "p99"]);
  assert.equal(latency.series[0].points, 120 - 3, "three seconds without requests are gaps");
  // The capacity line is drawn on the busy pods' charts and only named on the idle pod's.
  assert.equal(html.match(/<line class="ref"[^>]*stroke="#57606a"/g)?.length, 3);
  assert.ok(html.includes("node capacity 4000m (above the chart)"));
  for (const text of ["mixed-bursts", "mbcas", "2025-01-02T03:04:05.000Z", "4000 millicores"]) {
    assert.ok(html.includes(text), text);
  }
  // The summary: throttled CPU-seconds and resizes of the latency pod.
  const pod = run.pods[0].name;
  const throttled = run.samples.filter((s) => s.pod === pod)
    .reduce((a, s) => a + s.throttledMillicores, 0) / 1000;
  const resizes = run.resizes.filter((r) => r.pod === pod).length;
  const row = new RegExp(`<tr><td>${pod}</td>.*</tr>`).exec(html)![0];
  const cells = [...row.matchAll(/<td[^>]*>([^<]*)<\/td>/g)].map((m) => m[1]);
  assert.deepEqual(cells.slice(0, 5), [pod, "latency", "500", "1000", "120"]);
  assert.equal(cells[6], throttled.toFixed(2));
  assert.equal(cells[7], String(resizes));
  const all = run.latencies.filter((l) => l.pod === pod).flatMap((l) => l.latenciesMs);
  assert.equal(Number(cells[10]), Number(percentile(all, 99)!.toPrecision(3)));
});

Deno.test("renderReport: a null limit is a gap, and unlimited throughout is said, not drawn", () => {
  const run = syntheticRun({ policy: "static", withoutIdle: true });
  // The latency pod loses its limit for seconds 50..59.
  for (const s of run.samples) {
    if (s.pod === run.pods[0].name && s.t >= 50 && s.t < 60) s.limitMillicores = null;
  }
  const html = renderReport(run);
  assertWellFormed(html);
  const found = assertChartsHaveData(html);
  assert.deepEqual(found.map((c) => c.id), ["cpu-0", "cpu-1", "cpu-2", "throttling", "latency"]);
  assert.equal(found.length, expectedChartCount(run));
  const limit = found[0].series.find((s) => s.label.startsWith("kernel limit"))!;
  assert.equal(limit.points, 110);
  assert.equal(limit.d.match(/M/g)?.length, 2, "two segments around the gap");
  // Without MBCAS: no demand or allocation drawn; batch has no limit at all.
  assert.deepEqual(found[0].series.map((s) => s.label), [
    "kernel limit (gap = unlimited)",
    "usage",
  ]);
  assert.deepEqual(found[2].series.map((s) => s.label), ["usage"]);
  assert.ok(html.includes("kernel limit (unlimited throughout)"));
  assert.ok(html.includes("market limit (not recorded)"));
  assert.ok(html.includes("guarantee (not recorded)"));
  assert.ok(html.includes("no data (no price recorded)"));
});

Deno.test("renderReport: the guarantee and the market limit are drawn from their own values", () => {
  // One pod: market limit 500m, guarantee 250m, no usage, over 10 s.
  const run: LabRun = {
    ...emptyRun(),
    policy: "mbcas",
    durationSeconds: 10,
    pods: [{ name: "p", workload: "batch", requestMillicores: 100, limitMillicores: 500 }],
    samples: Array.from({ length: 10 }, (_, i) => ({
      t: i + 1,
      pod: "p",
      usageMillicores: 0,
      throttledRatio: 0,
      throttledMillicores: 0,
      demandMillicores: null,
      allocationMillicores: 500,
      guaranteeMillicores: 250,
      limitMillicores: 500,
    })),
  };
  const [cpu] = assertChartsHaveData(renderReport(run));
  const y = (label: string) =>
    Number(/^M[\d.]+ ([\d.]+)/.exec(cpu.series.find((s) => s.label === label)!.d)![1]);
  const zero = y("usage");
  assert.ok(Math.abs((zero - y("guarantee")) * 2 - (zero - y("market limit"))) <= 0.2);
  assert.ok(y("guarantee") > y("market limit"), "the guarantee is drawn below the limit");
});

Deno.test("renderReport: a run recorded before guarantees still draws the market limit", () => {
  const run = syntheticRun();
  for (const s of run.samples) delete s.guaranteeMillicores;
  const html = renderReport(run);
  assertWellFormed(html);
  const found = assertChartsHaveData(html);
  assert.deepEqual(found.map((c) => c.id), SYNTHETIC_CHART_IDS);
  assert.deepEqual(found[0].series.map((s) => s.label), [
    "kernel limit (gap = unlimited)",
    "market limit",
    "demand estimate",
    "usage",
  ]);
  assert.ok(html.includes("guarantee (not recorded)"));
  // A guarantee recorded in part of the run is drawn where it was.
  const some = syntheticRun();
  for (const s of some.samples) if (s.t > 60) s.guaranteeMillicores = null;
  const partial = assertChartsHaveData(renderReport(some));
  assert.equal(partial[0].series.find((s) => s.label === "guarantee")?.points, 60);
});

Deno.test("renderReport: pod names are escaped everywhere", () => {
  const evil = `<b>&"'x`;
  const run = syntheticRun({ names: { latency: evil } });
  const html = renderReport(run);
  assertWellFormed(html);
  assert.ok(!html.includes("<b>"), "no raw tag");
  assert.ok(!html.includes(`&"`), "no raw ampersand and quote");
  assert.ok(html.includes("&lt;b&gt;&amp;&quot;&#39;x"));
  assertChartsHaveData(html);
  assert.equal(charts(html).length, expectedChartCount(run));
  // Also in the scenario and the start time.
  const odd = renderReport({ ...run, scenario: "a</title><script>", startedAt: "&x" });
  assertWellFormed(odd);
  assert.ok(!odd.includes("<script>"));
});

Deno.test("renderReport: an empty run and a pod without samples say no data", () => {
  const html = renderReport(emptyRun());
  assertWellFormed(html);
  assert.equal(charts(html).length, 0);
  assert.ok(html.includes("no data"));
  assert.ok(html.includes("no pods"));

  const run = syntheticRun({ withoutIdle: true });
  run.pods.push({
    name: "ghost",
    workload: "batch",
    requestMillicores: 100,
    limitMillicores: null,
  });
  const withGhost = renderReport(run);
  assertWellFormed(withGhost);
  const found = assertChartsHaveData(withGhost);
  assert.equal(found.length, expectedChartCount(run));
  assert.ok(!found.some((c) => c.id === "cpu-3"));
  assert.ok(withGhost.includes("no data (no samples for this pod)"));

  // A latency pod with no requests at all: a table, no chart; NaN and odd values survive.
  const quiet: LabRun = {
    ...emptyRun(),
    durationSeconds: NaN,
    pods: [{ name: "q", workload: "latency", requestMillicores: 100, limitMillicores: 100 }],
    samples: [1, 2, 3].map((t) => ({
      t,
      pod: "q",
      usageMillicores: t === 2 ? NaN : 50,
      throttledRatio: 0,
      throttledMillicores: 0,
      demandMillicores: null,
      allocationMillicores: null,
      limitMillicores: 100,
    })),
    latencies: [{ t: 1, pod: "q", latenciesMs: [] }],
    prices: [{ t: 1, price: null }],
  };
  const q = renderReport(quiet);
  assertWellFormed(q);
  assert.ok(!q.includes("NaN"));
  assertChartsHaveData(q);
  assert.deepEqual(charts(q).map((c) => c.id), ["cpu-0", "throttling"]);
  assert.equal(charts(q).length, expectedChartCount(quiet));
  assert.ok(q.includes("no data (no requests completed)"));
});

Deno.test("renderReport: one sample a pod, and samples out of order", () => {
  const run = syntheticRun({ seconds: 1 });
  const html = renderReport(run);
  assertWellFormed(html);
  for (const chart of assertChartsHaveData(html)) {
    for (const s of chart.series) assert.equal(s.points, 1);
  }
  const shuffled = syntheticRun({ seconds: 30 });
  const sorted = renderReport(shuffled);
  shuffled.samples.reverse();
  shuffled.latencies.reverse();
  shuffled.prices.reverse();
  assert.equal(renderReport(shuffled), sorted, "time order is the report's, not the input's");
});

Deno.test("renderReport: deterministic, and the data shows", () => {
  const a = renderReport(syntheticRun({ seed: 3 }));
  const b = renderReport(structuredClone(syntheticRun({ seed: 3 })));
  assert.equal(a, b);
  assert.notEqual(a, renderReport(syntheticRun({ seed: 4 })));
});

// --- renderComparisonSvg ---

/** The shared rows, with a null fairness and a key that needs escaping. */
function benchRows(): BenchRow[] {
  const rows = syntheticBenchRows();
  rows[1].fairness = null;
  rows[1].throttledSeconds["<x&>"] = 1;
  return rows;
}

Deno.test("renderComparisonSvg: one bar per policy and metric, n/a for nulls, escaped keys", () => {
  const svg = renderComparisonSvg(benchRows());
  assertWellFormed(svg);
  assert.ok(svg.startsWith(`<?xml version="1.0" encoding="UTF-8"?>\n<svg xmlns=`));
  assert.match(svg, /data-chart="comparison" data-series="2"/);
  const bars = [...svg.matchAll(/<rect class="bar" data-policy="(\w+)" data-group="([^"]*)"/g)];
  // latency 2 + throttled (3 keys; static has no "<x&>") + batch + utilisation + fairness
  // (mbcas null) + resizes + spike (static null).
  assert.equal(bars.filter((b) => b[1] === "mbcas").length, 2 + 3 + 1 + 1 + 0 + 1 + 2);
  assert.equal(bars.filter((b) => b[1] === "static").length, 2 + 2 + 1 + 1 + 1 + 1 + 0);
  assert.equal(svg.match(/>n\/a</g)?.length, 1 + 1 + 2);
  assert.ok(svg.includes("&lt;x&amp;&gt;"));
  assert.ok(!svg.includes("<x&>"));
  for (const m of svg.matchAll(/height="(-?[\d.]+)"/g)) assert.ok(Number(m[1]) > 0);
  assert.equal(svg, renderComparisonSvg(structuredClone(benchRows())), "deterministic");
});

Deno.test("renderComparisonSvg: lab-bench rows with their extra figures draw as their bench rows", () => {
  const rows = [labBenchRow("static"), labBenchRow("mbcas", { resizes: 12, fairness: null })];
  const plain: BenchRow[] = rows.map((r) => ({
    policy: r.policy,
    latencyP50Ms: r.latencyP50Ms,
    latencyP99Ms: r.latencyP99Ms,
    throttledSeconds: r.throttledSeconds,
    batchCpuSeconds: r.batchCpuSeconds,
    utilisation: r.utilisation,
    fairness: r.fairness,
    resizes: r.resizes,
    spikeToLimitP50S: r.spikeToLimitP50S,
    spikeToLimitP99S: r.spikeToLimitP99S,
  }));
  const svg = renderComparisonSvg(rows);
  assertWellFormed(svg);
  assert.equal(svg, renderComparisonSvg(plain));
  assert.match(svg, /data-policy="mbcas" data-group="" data-value="12"/);
});

Deno.test("renderComparisonSvg: no rows gives a well-formed SVG saying no data", () => {
  const svg = renderComparisonSvg([]);
  assertWellFormed(svg);
  assert.ok(svg.includes("no data"));
  assert.ok(!svg.includes(`class="bar"`));
});
