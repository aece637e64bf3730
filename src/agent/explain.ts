/**
 * The node's market as a table an operator can read: for each container its
 * pod's tier (and whether it yields in the kernel), floor, usage, throttling, demand (or that it was not measured,
 * so its limit is kept), weight, cap, the market's two outputs (the
 * guarantee under contention and the limit it runs under) and the declared
 * limit (the baseline every restore goes back to); and the node's price and
 * elastic budget. Built from the PodAllocations of the node (their evidence is
 * the market's input), so it needs only read access to the API. Pure.
 *
 * @module
 */
import type { PodAllocation } from "../api/core.ts";

/**
 * The pod's tier; `elastic, yields` when the agent has recorded the pod's
 * kubelet CPU weight to lower it (the pod yields in the kernel).
 */
function tierLabel(pa: PodAllocation): string {
  const tier = pa.spec.tier ?? "protected";
  return tier === "elastic" && pa.spec.originalCpuWeight !== undefined ? "elastic, yields" : tier;
}

/** Formats the PodAllocations of one node as a market table. */
export function formatMarketTable(node: string, allocations: PodAllocation[]): string {
  if (allocations.length === 0) {
    return `node ${node}: no PodAllocations (no managed pods, or the agent is not running there)\n`;
  }
  const rows = [[
    "POD",
    "CONTAINER",
    "TIER",
    "FLOOR",
    "USAGE",
    "THROTTLED",
    "DEMAND",
    "WEIGHT",
    "CAP",
    "GUARANTEE",
    "LIMIT",
    "DECLARED",
  ]];
  const sorted = [...allocations].sort((a, b) =>
    `${a.metadata.namespace}/${a.metadata.name}` < `${b.metadata.namespace}/${b.metadata.name}`
      ? -1
      : 1
  );
  for (const pa of sorted) {
    for (const c of pa.spec.containers) {
      const e = c.evidence;
      rows.push([
        `${pa.metadata.namespace}/${pa.metadata.name}`,
        c.name,
        tierLabel(pa),
        e ? `${e.floorMillicores}m` : "?",
        e?.usageMillicores !== undefined ? `${e.usageMillicores}m` : "?",
        e?.throttledRatio !== undefined ? `${Math.round(e.throttledRatio * 100)}%` : "?",
        e?.measured === false ? "unmeasured" : e ? `${e.demandMillicores}m` : "?",
        e ? String(Math.round(e.weight * 100) / 100) : "?",
        e ? `${e.capMillicores}m` : "?",
        c.cpuGuarantee ?? "-",
        c.cpuLimit,
        pa.status?.baseline?.containers.find((b) => b.name === c.name)?.cpuLimit ?? "-",
      ]);
    }
  }
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  const table = rows.map((r) => r.map((cell, i) => cell.padEnd(widths[i])).join("  ").trimEnd())
    .join("\n");
  const latest =
    sorted.reduce((a, b) => (a.spec.market.computedAt > b.spec.market.computedAt ? a : b)).spec
      .market;
  const price = latest.price === null || latest.price === undefined
    ? "unbounded (floors exhaust capacity)"
    : latest.price === 0
    ? "0 (uncontended: every pod is guaranteed its target)"
    : `${latest.price.toPrecision(3)} weight per millicore`;
  const budget = latest.elasticBudgetMillicores === undefined
    ? ""
    : `, elastic pods may use ${latest.elasticBudgetMillicores}m`;
  return `node ${node}: capacity ${latest.capacityMillicores}m for managed pods, ${
    latest.contended ? "contended" : "not contended"
  }, price ${price}${budget}, cleared ${latest.computedAt}\n${table}\n`;
}
