/**
 * `deno task bench`: time per clearing of the exact solver and of the naive
 * iterative baseline, measured side by side (interleaved rounds, same markets),
 * for 10, 110, 1,000 and 10,000 bids. Prints a table; absolute times are noisy
 * on a shared machine, the ratio is the figure to trust.
 */
import { clearMarket } from "../../src/solver/mod.ts";
import type { Bid, Market } from "../../src/solver/mod.ts";
import { naiveClearing } from "./_naive_clearing.ts";

const SIZES = [10, 110, 1_000, 10_000];
const TARGETS: Record<number, string> = {
  110: "≤ 25 µs, ≤ 2.5× naive",
  1_000: "≤ 2.5× naive",
  10_000: "≤ 5 ms",
};

/** A contended node: requests fill ~40% of capacity, demand ~150%. Deterministic. */
function market(n: number, seed: number): Market {
  let s = seed;
  const random = () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s / 2147483648;
  };
  const bids: Bid[] = [];
  let floors = 0;
  let demand = 0;
  for (let i = 0; i < n; i++) {
    const floor = 50 + Math.floor(random() * 950);
    const d = Math.floor(floor * (0.2 + random() * 6));
    floors += floor;
    demand += Math.max(floor, d);
    bids.push({ id: `ns-${i % 13}/pod-${i}/app`, weight: floor, floor, demand: d, cap: floor * 8 });
  }
  return { capacity: Math.round(Math.max(floors / 0.4, demand / 1.5)), bids };
}

function timePerCall(fn: (m: Market) => unknown, markets: Market[], minMillis: number): number {
  let calls = 0;
  const start = performance.now();
  let elapsed = 0;
  while (elapsed < minMillis) {
    for (const m of markets) fn(m);
    calls += markets.length;
    elapsed = performance.now() - start;
  }
  return (elapsed * 1000) / calls; // µs per call
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function format(us: number): string {
  return us >= 1000 ? `${(us / 1000).toFixed(2)} ms` : `${us.toFixed(2)} µs`;
}

const rows: string[][] = [];
for (const n of SIZES) {
  const markets = Array.from({ length: n >= 10_000 ? 4 : 32 }, (_, k) => market(n, 1000 + k));
  // Warm up both, then interleave rounds so drift hits both alike.
  timePerCall(clearMarket, markets, 200);
  timePerCall(naiveClearing, markets, 200);
  const exact: number[] = [];
  const naive: number[] = [];
  for (let round = 0; round < 7; round++) {
    if (round % 2 === 0) {
      exact.push(timePerCall(clearMarket, markets, 100));
      naive.push(timePerCall(naiveClearing, markets, 100));
    } else {
      naive.push(timePerCall(naiveClearing, markets, 100));
      exact.push(timePerCall(clearMarket, markets, 100));
    }
  }
  const e = median(exact);
  const b = median(naive);
  rows.push([
    n.toLocaleString("en"),
    format(e),
    format(b),
    `${(e / b).toFixed(2)}×`,
    TARGETS[n] ?? "",
  ]);
}

const header = ["bids", "exact (clearMarket)", "naive baseline", "exact / naive", "target"];
const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i])).join("  ");
console.log(
  `time per clearing, median of 7 interleaved rounds (Deno ${Deno.version.deno}, ${navigator.hardwareConcurrency} cores)`,
);
console.log(line(header));
console.log(widths.map((w) => "-".repeat(w)).join("  "));
for (const r of rows) console.log(line(r));
