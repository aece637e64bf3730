import assert from "node:assert/strict";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { renderComparisonSvg, renderReport } from "../../src/lab/report.ts";
import {
  type Browser,
  CdpPage,
  chromiumMissing,
  launchChromium,
  processesMentioning,
  processGroupMembers,
} from "../_support/cdp.ts";
import { requireOrSkip } from "../_support/requirements.ts";
import {
  expectedChartCount,
  SYNTHETIC_CHART_IDS,
  syntheticBenchRows,
  syntheticRun,
} from "./_synthetic_run.ts";

interface RenderedSeries {
  tag: string;
  label: string | null;
  geometry: string;
  points: number;
  length: number;
  box: number;
}

interface RenderedChart {
  id: string;
  width: number;
  height: number;
  declared: number;
  series: RenderedSeries[];
}

interface RenderedPage {
  title: string;
  charts: RenderedChart[];
  noData: number;
  podCells: string[];
  overflow: number;
}

/** What the page drew: every svg[data-chart], its box, and its series as laid out. */
const INSPECT = `(() => {
  const charts = [...document.querySelectorAll("svg[data-chart]")].map((svg) => {
    const r = svg.getBoundingClientRect();
    const series = [...svg.querySelectorAll("path.series, polyline.series")].map((el) => {
      const b = el.getBBox();
      return {
        tag: el.tagName,
        label: el.getAttribute("data-label"),
        geometry: el.getAttribute("d") ?? el.getAttribute("points") ?? "",
        points: Number(el.getAttribute("data-points")),
        length: el.getTotalLength(),
        box: b.width + b.height,
      };
    });
    return { id: svg.dataset.chart, width: r.width, height: r.height,
      declared: Number(svg.dataset.series), series };
  });
  return {
    title: document.title,
    charts,
    noData: document.querySelectorAll(".nodata").length,
    podCells: [...document.querySelectorAll("table.summary tbody tr td:first-child")]
      .map((td) => td.textContent),
    overflow: document.documentElement.scrollWidth - document.documentElement.clientWidth,
  };
})()`;

requireOrSkip(
  "report.html in headless Chromium: every chart laid out with data, no console errors",
  chromiumMissing(),
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "mbcas-report-" });
    let browser: Browser | undefined;
    try {
      const evil = `bursty <b>&"'`;
      const run = syntheticRun({ names: { bursty: evil } });
      run.pods.push({
        name: "ghost",
        workload: "batch",
        requestMillicores: 100,
        limitMillicores: null,
      });
      const reportPath = join(dir, "report.html");
      await Deno.writeTextFile(reportPath, renderReport(run));
      const svgPath = join(dir, "comparison.svg");
      await Deno.writeTextFile(
        svgPath,
        renderComparisonSvg(syntheticBenchRows()),
      );

      browser = await launchChromium();
      const page = await CdpPage.open(browser.connection);
      await page.send("Emulation.setDeviceMetricsOverride", {
        width: 1000,
        height: 800,
        deviceScaleFactor: 1,
        mobile: false,
      });
      await page.navigate(pathToFileURL(reportPath).href);
      const drawn = await page.evaluate<RenderedPage>(INSPECT);

      assert.equal(drawn.title, "MBCAS lab report: mixed-bursts (mbcas)");
      // 5 CPU charts less the ghost's, throttling, latency, price.
      assert.equal(drawn.charts.length, expectedChartCount(run));
      assert.equal(drawn.charts.length, 7);
      assert.deepEqual(drawn.charts.map((c) => c.id), SYNTHETIC_CHART_IDS);
      assert.equal(drawn.noData, 1, "the ghost pod says no data");
      assert.deepEqual(drawn.podCells, run.pods.map((p) => p.name), "names as text, unharmed");
      assert.ok(drawn.overflow <= 0, `page ${drawn.overflow} px wider than a 1000 px window`);
      for (const chart of drawn.charts) {
        assert.ok(chart.width > 100 && chart.height > 100, `${chart.id}: ${JSON.stringify(chart)}`);
        assert.ok(chart.declared > 0, `${chart.id}: data-series ${chart.declared}`);
        assert.equal(chart.series.length, chart.declared, `${chart.id}: series drawn`);
        for (const s of chart.series) {
          const what = `${chart.id}/${s.label}`;
          assert.ok(s.geometry.length > 0, `${what}: empty geometry`);
          assert.ok(s.points > 0, `${what}: data-points ${s.points}`);
          assert.ok(s.length > 0 && s.box > 0, `${what}: nothing laid out`);
        }
      }
      assert.deepEqual(page.errors(), [], "console errors or exceptions on the report");

      // The bench's comparison, opened as a standalone SVG document.
      await page.navigate(pathToFileURL(svgPath).href);
      const bars = await page.evaluate<{ chart: string | null; bars: number; empty: number }>(
        `(() => {
          const rects = [...document.querySelectorAll("rect.bar")];
          return {
            chart: document.documentElement.getAttribute("data-chart"),
            bars: rects.length,
            empty: rects.filter((r) => { const b = r.getBBox(); return !(b.width > 0 && b.height > 0); }).length,
          };
        })()`,
      );
      // Per policy: latency 2, throttled 2, batch, utilisation, fairness, resizes (0 draws a
      // sliver), spike 2 (n/a for static).
      assert.deepEqual(bars, { chart: "comparison", bars: 10 + 8, empty: 0 });
      assert.deepEqual(page.errors(), [], "console errors or exceptions on the comparison");

      // The error check itself sees errors.
      await page.navigate(
        "data:text/html,<script>console.error('probe');throw new Error('boom')</script>",
      );
      const seen = page.errors().join("\n");
      assert.match(seen, /console\.error: probe/);
      assert.match(seen, /boom/);
    } finally {
      await browser?.close();
      await Deno.remove(dir, { recursive: true });
    }
    assert.deepEqual(processesMentioning(browser.userDataDir), [], "chromium processes left");
    assert.deepEqual(processGroupMembers(browser.pid), [], "processes left in chromium's group");
    await assert.rejects(Deno.stat(browser.userDataDir), Deno.errors.NotFound);
  },
);
