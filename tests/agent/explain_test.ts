/**
 * `explain`'s table (src/agent/explain.ts), pure: tiers, a yielding elastic
 * pod, an unmeasured container, the price and the elastic budget.
 */
import assert from "node:assert/strict";
import { formatMarketTable } from "../../src/agent/mod.ts";
import { API_VERSION, KIND, type PodAllocation } from "../../src/api/core.ts";

function allocation(
  name: string,
  tier: "protected" | "elastic",
  extra: Partial<PodAllocation["spec"]> = {},
): PodAllocation {
  return {
    apiVersion: API_VERSION,
    kind: KIND,
    metadata: { name, namespace: "shop" },
    spec: {
      podName: name,
      podUID: "00000000-0000-4000-8000-000000000001",
      nodeName: "node-a",
      tier,
      containers: [{
        name: "app",
        cpuLimit: "900m",
        cpuGuarantee: "300m",
        evidence: {
          demandMillicores: 900,
          weight: 100,
          floorMillicores: 100,
          capMillicores: 2000,
          usageMillicores: 700,
          throttledRatio: 0.25,
          measured: true,
        },
      }],
      market: {
        price: 0,
        capacityMillicores: 1800,
        contended: false,
        computedAt: "2026-12-02T15:00:00Z",
        elasticBudgetMillicores: 1710,
      },
      ...extra,
    },
  } as PodAllocation;
}

Deno.test("explain: an elastic pod whose kubelet weight is recorded shows as yielding; others show their tier", () => {
  const table = formatMarketTable("node-a", [
    allocation("batch", "elastic", { originalCpuWeight: 102 }),
    allocation("late", "elastic"),
    allocation("web", "protected"),
  ]);
  const rows = table.split("\n").slice(1).filter((l) => l !== "");
  const tierOf = (pod: string) =>
    rows.find((r) => r.startsWith(`shop/${pod} `))!.split(/\s{2,}/)[2];
  assert.equal(tierOf("batch"), "elastic, yields");
  assert.equal(tierOf("late"), "elastic");
  assert.equal(tierOf("web"), "protected");
  assert.match(table.split("\n")[0], /elastic pods may use 1710m/);
  assert.match(rows[0], /^POD\s+CONTAINER\s+TIER\s+FLOOR/);
});
