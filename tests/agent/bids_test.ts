import assert from "node:assert/strict";
import fc from "fast-check";
import {
  buildMarket,
  type ContainerView,
  MAX_CPU_ANNOTATION,
  type PodView,
  PRIORITY_ANNOTATION,
  recentPercentile,
  worthPublishing,
} from "../../src/agent/bids.ts";
import { DEFAULT_MIN_LIMIT, type MinLimitRule } from "../../src/managed/mod.ts";
import { clearMarket } from "../../src/solver/mod.ts";

const container = (
  name: string,
  request: number,
  limit: number | null,
  demand: number | null,
  usage: number | null = null,
  over: Partial<ContainerView> = {},
): ContainerView => ({
  name,
  requestMillicores: request,
  limitMillicores: limit,
  declaredLimitMillicores: null,
  usageMillicores: usage,
  recentUsageMillicores: usage,
  demandMillicores: demand,
  managed: limit !== null,
  ...over,
});

const view = (
  key: string,
  managed: boolean,
  containers: ContainerView[],
  over: Partial<PodView> = {},
): PodView => ({
  key,
  managed,
  annotations: {},
  minLimit: DEFAULT_MIN_LIMIT,
  containers,
  others: [],
  ...over,
});

Deno.test("bids: weight = request × priority, floor = request, cap = min(config, annotation, node), demand from the estimator", () => {
  const pods: PodView[] = [
    view("shop/web", true, [container("app", 500, 1000, 1500)], {
      annotations: { [PRIORITY_ANNOTATION]: "2" },
    }),
    view("shop/batch", true, [container("worker", 250, 500, 3000)], {
      annotations: { [MAX_CPU_ANNOTATION]: "1500m" },
    }),
  ];
  const { market, bidsByPod, warnings, unmeasured } = buildMarket(4000, pods, {
    maxPerContainerMillicores: 3000,
    reserveMillicores: 0,
  });
  assert.deepEqual(warnings, []);
  assert.deepEqual(market.bids, [
    { id: "shop/web/app", weight: 1000, floor: 500, demand: 1500, cap: 3000, tier: "protected" },
    {
      id: "shop/batch/worker",
      weight: 250,
      floor: 250,
      demand: 3000,
      cap: 1500,
      tier: "protected",
    },
  ]);
  assert.equal(market.headroom, 200, "5% of the capacity by default");
  assert.equal(bidsByPod.get("shop/batch")?.length, 1);
  assert.equal(market.capacity, 4000);
  assert.equal(unmeasured.size, 0);
});

Deno.test("bids: no measurement, no resize: a container without a fresh estimate is pinned at its limit", () => {
  const { market, unmeasured } = buildMarket(
    4000,
    [view("shop/new", true, [container("app", 100, 700, null), container("b", 100, 300, 900)])],
    { maxPerContainerMillicores: null, reserveMillicores: 0 },
  );
  assert.deepEqual(market.bids[0], {
    id: "shop/new/app",
    weight: 100,
    floor: 700,
    demand: 700,
    cap: 700,
    tier: "protected",
    usage: 700,
  });
  assert.deepEqual([...unmeasured], ["shop/new/app"]);
  const clearing = clearMarket(market);
  assert.equal(clearing.allocations["shop/new/app"], 700, "it keeps exactly what it has");
  assert.ok(clearing.allocations["shop/new/b"] >= 900);
});

Deno.test("bids: capacity = allocatable − what other CPU users may take (max(request, recent usage)) − reserve", () => {
  const pods: PodView[] = [
    view("a/limited", false, [container("c", 100, 600, null, 50)]),
    view("a/unlimited", false, [container("c", 200, null, null, 350.4)]),
    view("a/idle", false, [container("c", 300, null, null, 10)]),
    view("a/managed", true, [container("c", 100, 200, 400)]),
  ];
  const { market, unmanagedMillicores } = buildMarket(4000, pods, {
    maxPerContainerMillicores: null,
    reserveMillicores: 100,
  });
  assert.equal(unmanagedMillicores, 100 + 351 + 300);
  assert.equal(market.capacity, 4000 - 751 - 100);
  assert.deepEqual(market.bids.map((b) => b.id), ["a/managed/c"]);
  // Yielding elastic limits may reach into what the unmanaged pods take, not into the reserve.
  assert.equal(market.yieldingCapacity, 4000 - 100);
  // Never below the capacity (a reserve larger than the allocatable leaves both at 0).
  const reserved = buildMarket(4000, pods, {
    maxPerContainerMillicores: null,
    reserveMillicores: 5000,
  });
  assert.deepEqual([reserved.market.capacity, reserved.market.yieldingCapacity], [0, 0]);
});

Deno.test("bids: an ordinary overcommitted node (unmanaged limits 1+2+2 cores on 4) keeps the managed pod at its need", () => {
  // The node: idle unmanaged Burstable pods whose limits add up to more than the node.
  const pods: PodView[] = [
    view("other/a", false, [container("c", 100, 1000, null, 20)]),
    view("other/b", false, [container("c", 100, 2000, null, 30)]),
    view("other/c", false, [container("c", 100, 2000, null, 10)]),
    view("shop/web", true, [container("app", 200, 400, 900)]),
  ];
  const built = buildMarket(4000, pods, { maxPerContainerMillicores: null, reserveMillicores: 0 });
  assert.equal(built.market.capacity, 4000 - 300);
  const clearing = clearMarket(built.market);
  assert.ok(
    clearing.allocations["shop/web/app"] >= 900,
    `the managed pod gets its need, not its request: ${clearing.allocations["shop/web/app"]}m`,
  );
  // A busy unmanaged pod counts at its recent usage.
  const busy = buildMarket(
    4000,
    [view("other/a", false, [container("c", 100, 1000, null, 950)]), pods[3]],
    { maxPerContainerMillicores: null, reserveMillicores: 0 },
  );
  assert.equal(busy.unmanagedMillicores, 950);
});

Deno.test("bids: sidecars, init containers, overhead and containers MBCAS may not resize count as CPU users, never as bids", () => {
  const pods: PodView[] = [
    view("shop/web", true, [
      container("app", 200, 400, 900),
      container("restarts", 150, 300, 500, 40, { managed: false }),
      container("nolimit", 50, null, 500, 80),
    ], {
      others: [
        { name: "mesh", requestMillicores: 100, recentUsageMillicores: 130 },
        { name: "overhead", requestMillicores: 250, recentUsageMillicores: null },
      ],
    }),
  ];
  const built = buildMarket(4000, pods, { maxPerContainerMillicores: null, reserveMillicores: 0 });
  assert.deepEqual(built.market.bids.map((b) => b.id), ["shop/web/app"]);
  assert.equal(built.unmanagedMillicores, 150 + 80 + 130 + 250);
  assert.equal(built.market.capacity, 4000 - 610);
});

Deno.test("bids: the min-cpu-limit rule sets the floor from the declared limit", () => {
  const floorOf = (minLimit: MinLimitRule, declared: number | null) =>
    buildMarket(
      4000,
      [view("shop/web", true, [
        container("app", 100, 300, 50, 20, { declaredLimitMillicores: declared }),
      ], { minLimit })],
      { maxPerContainerMillicores: null, reserveMillicores: 0 },
    ).market.bids[0].floor;
  assert.equal(floorOf({ kind: "request" }, 800), 100);
  assert.equal(
    floorOf({ kind: "declared" }, 800),
    800,
    "raise only: never below what was declared",
  );
  assert.equal(floorOf({ kind: "fraction", fraction: 0.5 }, 800), 400);
  assert.equal(floorOf({ kind: "fraction", fraction: 0.1 }, 800), 100, "never below the request");
  assert.equal(
    floorOf({ kind: "declared" }, null),
    300,
    "no baseline yet: the limit now is the declared one",
  );
});

Deno.test("bids (property): floors respect the rule and the request, caps never below floors, unmeasured bids pinned", () => {
  fc.assert(fc.property(
    fc.array(
      fc.record({
        request: fc.integer({ min: 0, max: 2000 }),
        extra: fc.integer({ min: 0, max: 3000 }),
        declaredExtra: fc.integer({ min: 0, max: 3000 }),
        demand: fc.option(fc.integer({ min: 0, max: 8000 })),
        managed: fc.boolean(),
        rule: fc.constantFrom<MinLimitRule>(
          { kind: "request" },
          { kind: "declared" },
          { kind: "fraction", fraction: 0.5 },
        ),
      }),
      { maxLength: 12 },
    ),
    (specs) => {
      const pods = specs.map((x, i) =>
        view(`ns/p${i}`, x.managed, [
          container("c", x.request, x.request + x.extra, x.demand, 10, {
            declaredLimitMillicores: x.request + x.declaredExtra,
          }),
        ], { minLimit: x.rule })
      );
      const built = buildMarket(4000, pods, {
        maxPerContainerMillicores: null,
        reserveMillicores: 0,
      });
      for (const [i, x] of specs.entries()) {
        const bid = built.market.bids.find((b) => b.id === `ns/p${i}/c`);
        if (!x.managed) {
          assert.equal(bid, undefined);
          continue;
        }
        assert.ok(bid !== undefined);
        assert.ok(bid.floor >= x.request);
        assert.ok(bid.cap >= bid.floor);
        if (x.demand === null) {
          assert.equal(bid.floor, x.request + x.extra);
          assert.equal(bid.cap, bid.floor);
        } else if (x.rule.kind === "declared") {
          assert.ok(bid.floor >= x.request + x.declaredExtra);
        }
      }
      const clearing = clearMarket(built.market);
      for (const b of built.market.bids) assert.ok(clearing.allocations[b.id] >= b.floor);
    },
  ));
});

Deno.test("recent usage percentile: nearest rank, none without samples", () => {
  assert.equal(recentPercentile([]), null);
  assert.equal(recentPercentile([5]), 5);
  const samples = Array.from({ length: 100 }, (_, i) => 100 - i);
  assert.equal(recentPercentile(samples, 0.95), 95);
  assert.equal(recentPercentile(samples, 1), 100);
  assert.equal(recentPercentile([3, 1, 2], 0.5), 2);
});

Deno.test("bids: bad annotations fall back to defaults with a warning naming the pod, annotation and value", () => {
  const pods: PodView[] = [
    view("x/p", true, [container("c", 100, 200, 300)], {
      annotations: { [PRIORITY_ANNOTATION]: "-3", [MAX_CPU_ANNOTATION]: "lots" },
    }),
  ];
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
  const pods: PodView[] = Array.from(
    { length: 20 },
    (_, i) =>
      view(`ns/p${i}`, i % 4 !== 0, [container("c", 50 + 10 * i, 400 + i, 100 * (i % 7), 30 * i)]),
  );
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

Deno.test("docs/configuration.md documents every agent flag and environment variable with its default", async () => {
  const { AGENT_OPTIONS } = await import("../../src/agent/config.ts");
  const whole = Deno.readTextFileSync(new URL("../../docs/configuration.md", import.meta.url));
  const start = whole.indexOf("\n## Agent configuration\n");
  assert.ok(start >= 0, "docs/configuration.md lacks its section ## Agent configuration");
  const next = whole.indexOf("\n## ", start + 1);
  const section = whole.slice(start, next < 0 ? undefined : next);
  for (const [name, spec] of Object.entries(AGENT_OPTIONS)) {
    const row = section.split("\n").find((l) =>
      new RegExp(`^\\|\\s*\`--${name}\`\\s*\\|`).test(l) && l.includes(spec.env)
    );
    assert.ok(row, `docs/configuration.md lacks --${name} (${spec.env})`);
    assert.ok(
      spec.default === "" ? row.includes("(empty)") : row.includes(`\`${spec.default}\``),
      `docs/configuration.md default of --${name}`,
    );
  }
});
