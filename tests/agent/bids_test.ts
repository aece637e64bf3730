import assert from "node:assert/strict";
import {
  buildMarket,
  MAX_CPU_ANNOTATION,
  type PodView,
  PRIORITY_ANNOTATION,
  worthPublishing,
} from "../../src/agent/bids.ts";
import { clearMarket } from "../../src/solver/mod.ts";

const container = (
  name: string,
  request: number,
  limit: number | null,
  demand: number | null,
  usage: number | null = null,
) => ({
  name,
  requestMillicores: request,
  limitMillicores: limit,
  usageMillicores: usage,
  demandMillicores: demand,
});

Deno.test("bids: weight = request × priority, floor = request, cap = min(config, annotation, node), demand from the estimator", () => {
  const pods: PodView[] = [
    {
      key: "shop/web",
      managed: true,
      annotations: { [PRIORITY_ANNOTATION]: "2" },
      containers: [container("app", 500, 1000, 1500)],
    },
    {
      key: "shop/batch",
      managed: true,
      annotations: { [MAX_CPU_ANNOTATION]: "1500m" },
      containers: [container("worker", 250, 500, 3000)],
    },
    {
      key: "shop/new",
      managed: true,
      annotations: {},
      containers: [container("app", 0, 700, null)],
    },
  ];
  const { market, bidsByPod, warnings } = buildMarket(4000, pods, {
    maxPerContainerMillicores: 3000,
    reserveMillicores: 0,
  });
  assert.deepEqual(warnings, []);
  assert.deepEqual(market.bids, [
    { id: "shop/web/app", weight: 1000, floor: 500, demand: 1500, cap: 3000 },
    { id: "shop/batch/worker", weight: 250, floor: 250, demand: 3000, cap: 1500 },
    { id: "shop/new/app", weight: 1, floor: 0, demand: 700, cap: 3000 },
  ]);
  assert.equal(bidsByPod.get("shop/batch")?.length, 1);
  assert.equal(market.capacity, 4000);
});

Deno.test("bids: capacity = allocatable − unmanaged pods (limit, else max(request, usage)) − reserve", () => {
  const pods: PodView[] = [
    {
      key: "a/limited",
      managed: false,
      annotations: {},
      containers: [container("c", 100, 600, null, 50)],
    },
    {
      key: "a/unlimited",
      managed: false,
      annotations: {},
      containers: [container("c", 200, null, null, 350.4)],
    },
    {
      key: "a/idle",
      managed: false,
      annotations: {},
      containers: [container("c", 300, null, null, 10)],
    },
    {
      key: "a/managed",
      managed: true,
      annotations: {},
      containers: [container("c", 100, 200, 400)],
    },
  ];
  const { market, unmanagedMillicores } = buildMarket(4000, pods, {
    maxPerContainerMillicores: null,
    reserveMillicores: 100,
  });
  assert.equal(unmanagedMillicores, 600 + 351 + 300);
  assert.equal(market.capacity, 4000 - 1251 - 100);
  assert.deepEqual(market.bids.map((b) => b.id), ["a/managed/c"]);
});

Deno.test("bids: bad annotations fall back to defaults with a warning naming the pod, annotation and value", () => {
  const pods: PodView[] = [{
    key: "x/p",
    managed: true,
    annotations: { [PRIORITY_ANNOTATION]: "-3", [MAX_CPU_ANNOTATION]: "lots" },
    containers: [container("c", 100, 200, 300)],
  }];
  const { market, warnings } = buildMarket(2000, pods, {
    maxPerContainerMillicores: null,
    reserveMillicores: 0,
  });
  assert.equal(market.bids[0].weight, 100);
  assert.equal(market.bids[0].cap, 2000);
  assert.equal(warnings.length, 2);
  assert.match(warnings[0], /x\/p: annotation mbcas\.io\/priority="-3"/);
  assert.match(warnings[1], /x\/p: annotation mbcas\.io\/max-cpu="lots"/);
});

Deno.test("bids: the market built for a node clears within capacity and every floor holds", () => {
  const pods: PodView[] = Array.from({ length: 20 }, (_, i) => ({
    key: `ns/p${i}`,
    managed: i % 4 !== 0,
    annotations: {},
    containers: [container("c", 50 + 10 * i, 400 + i, 100 * (i % 7), 30 * i)],
  }));
  const { market } = buildMarket(4000, pods, {
    maxPerContainerMillicores: 2000,
    reserveMillicores: 200,
  });
  const clearing = clearMarket(market);
  const total = Object.values(clearing.allocations).reduce((a, b) => a + b, 0);
  assert.ok(total <= market.capacity || clearing.oversubscribed);
  for (const b of market.bids) assert.ok(clearing.allocations[b.id] >= b.floor);
});

Deno.test("publishing hysteresis: changes of at least 5% or 20m, whichever is larger, either way", () => {
  assert.equal(worthPublishing(null, 100), true);
  assert.equal(worthPublishing(1000, 1001), false);
  assert.equal(worthPublishing(1000, 1050), true);
  assert.equal(worthPublishing(100, 119), false);
  assert.equal(worthPublishing(100, 120), true);
  assert.equal(worthPublishing(1000, 950), true);
  assert.equal(worthPublishing(1000, 960), false);
  assert.equal(worthPublishing(200, 181), false);
  assert.equal(worthPublishing(200, 180), true);
});

Deno.test("README documents every agent flag and environment variable with its default", async () => {
  const { AGENT_OPTIONS } = await import("../../src/agent/config.ts");
  const whole = Deno.readTextFileSync(new URL("../../README.md", import.meta.url));
  const readme = whole.slice(
    whole.indexOf("### Agent configuration"),
    whole.indexOf("## The test bed"),
  );
  for (const [name, spec] of Object.entries(AGENT_OPTIONS)) {
    const row = readme.split("\n").find((l) =>
      new RegExp(`^\\|\\s*\`--${name}\`\\s*\\|`).test(l) && l.includes(spec.env)
    );
    assert.ok(row, `README lacks --${name} (${spec.env})`);
    assert.ok(
      spec.default === "" ? row.includes("(empty)") : row.includes(`\`${spec.default}\``),
      `README default of --${name}`,
    );
  }
});
