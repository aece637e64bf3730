import assert from "node:assert/strict";
import { runSolveCli } from "../../src/cli/solve.ts";
import { clearMarket, settleMarket } from "../../src/solver/mod.ts";

const CLI = new URL("../../src/cli/solve.ts", import.meta.url).pathname;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the CLI in-process on the given stdin text. */
async function solve(input: string, args: string[] = []): Promise<Run> {
  const chunks = { stdout: "", stderr: "" };
  const sink = (key: "stdout" | "stderr") =>
    new WritableStream<Uint8Array>({
      write(chunk) {
        chunks[key] += new TextDecoder().decode(chunk);
      },
    });
  const code = await runSolveCli(
    args,
    ReadableStream.from([new TextEncoder().encode(input)]),
    sink("stdout"),
    sink("stderr"),
  );
  return { code, ...chunks };
}

/** Runs the CLI as `deno run` with no permissions at all, feeding `input` on stdin. */
async function solveInSubprocess(input: string): Promise<Deno.CommandOutput> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", CLI],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(input));
  await writer.close();
  return await child.output();
}

const MARKET = {
  capacity: 4000,
  bids: [
    { id: "ns/a/app", weight: 500, floor: 500, demand: 3000, cap: 4000 },
    { id: "ns/b/app", weight: 1000, floor: 1000, demand: 3000, cap: 4000 },
  ],
};

Deno.test("cli: a single market round-trips to its clearing (subprocess, no permissions)", async () => {
  const { code, stdout, stderr } = await solveInSubprocess(JSON.stringify(MARKET, null, 2));
  assert.equal(new TextDecoder().decode(stderr), "");
  assert.equal(code, 0);
  assert.deepEqual(JSON.parse(new TextDecoder().decode(stdout)), clearMarket(MARKET));
  assert.deepEqual(JSON.parse(new TextDecoder().decode(stdout)).allocations, {
    "ns/a/app": 1333,
    "ns/b/app": 2667,
  });
});

Deno.test("cli: bad single market prints one line on stderr, nothing on stdout, exit 2 (subprocess)", async () => {
  const bad = { ...MARKET, bids: [{ ...MARKET.bids[0], floor: -5 }] };
  const { code, stdout, stderr } = await solveInSubprocess(JSON.stringify(bad));
  assert.equal(code, 2);
  assert.equal(new TextDecoder().decode(stdout), "");
  const message = new TextDecoder().decode(stderr);
  assert.equal(message.trim().split("\n").length, 1);
  assert.match(message, /line 1: bids\[0\] \(id "ns\/a\/app"\): field "floor" .* got -5/);
});

Deno.test("cli: JSON Lines batch answers line N with line N, bad lines as {error}, exit 2", async () => {
  const good = JSON.stringify(MARKET);
  const retain = JSON.stringify({ ...MARKET, capacity: 10_000, surplus: "retain" });
  const lines = [
    good,
    '{"capacity": 100, "bids": [{"id": "x", "weight": 1, "floor": 0, "demand": NaN, "cap": 5}]}',
    retain,
    "not json",
    '{"capacity": 100, "bids": [{"id": "x", "weight": 1, "floor": 0, "demand": 1, "cap": 5}, {"id": "x", "weight": 1, "floor": 0, "demand": 1, "cap": 5}]}',
  ];
  const run = await solve(lines.join("\n") + "\n");
  assert.equal(run.code, 2);
  const out = run.stdout.trimEnd().split("\n").map((l) => JSON.parse(l));
  assert.equal(out.length, lines.length);
  assert.deepEqual(out[0], clearMarket(MARKET));
  assert.match(out[1].error, /^line 2: bids\[0\] \(id "x"\): field "demand" .* got NaN$/);
  assert.deepEqual(out[2].allocations, { "ns/a/app": 3000, "ns/b/app": 3000 });
  assert.match(out[3].error, /^line 4: not valid JSON/);
  assert.match(out[4].error, /^line 5: bids\[1\] \(id "x"\): field "id" must be unique/);
  const errors = run.stderr.trimEnd().split("\n");
  assert.deepEqual(errors, [out[1].error, out[3].error, out[4].error].map((e) => `solve: ${e}`));
});

Deno.test("cli: an all-good JSON Lines batch exits 0", async () => {
  const run = await solve(
    `${JSON.stringify(MARKET)}\n${JSON.stringify({ ...MARKET, capacity: 0 })}`,
  );
  assert.equal(run.code, 0);
  assert.equal(run.stderr, "");
  const [first, second] = run.stdout.trimEnd().split("\n").map((l) => JSON.parse(l));
  assert.deepEqual(first, clearMarket(MARKET));
  assert.equal(second.oversubscribed, true);
});

const BAD_CASES: [string, unknown, RegExp][] = [
  [
    "missing field",
    { capacity: 1, bids: [{ id: "p", weight: 1, floor: 0, cap: 1 }] },
    /bids\[0\] \(id "p"\): field "demand" is missing/,
  ],
  ["negative millicores", {
    capacity: 1,
    bids: [{ id: "p", weight: 1, floor: 0, demand: -1, cap: 1 }],
  }, /field "demand" .* got -1/],
  ["non-integer millicores", { capacity: 1.5, bids: [] }, /market: field "capacity" .* got 1.5/],
  [
    "weight zero",
    { capacity: 1, bids: [{ id: "p", weight: 0, floor: 0, demand: 1, cap: 1 }] },
    /\(id "p"\): field "weight" .* got 0/,
  ],
  [
    "weight negative",
    { capacity: 1, bids: [{ id: "p", weight: -2, floor: 0, demand: 1, cap: 1 }] },
    /field "weight" .* got -2/,
  ],
  [
    "floor above cap",
    { capacity: 1, bids: [{ id: "p", weight: 1, floor: 9, demand: 1, cap: 5 }] },
    /\(id "p"\): field "floor" must not exceed cap 5, got 9/,
  ],
  ["duplicate id", {
    capacity: 1,
    bids: [{ id: "p", weight: 1, floor: 0, demand: 1, cap: 5 }, {
      id: "p",
      weight: 1,
      floor: 0,
      demand: 1,
      cap: 5,
    }],
  }, /bids\[1\] \(id "p"\): field "id" must be unique/],
  [
    "unknown surplus mode",
    { capacity: 1, surplus: "hoard", bids: [] },
    /field "surplus" must be "distribute" or "retain", got "hoard"/,
  ],
  ["unknown field", { capacity: 1, bids: [], capactiy: 3 }, /market: unknown field "capactiy"/],
  ["bids not an array", { capacity: 1, bids: 3 }, /field "bids" must be an array of bids, got 3/],
  ["market not an object", [1, 2], /market: must be a JSON object/],
  ["string millicores", { capacity: "4000", bids: [] }, /field "capacity" .* got "4000"/],
];

for (const [name, input, pattern] of BAD_CASES) {
  Deno.test(`cli: bad input (${name}) is named on stderr with exit 2 and nothing on stdout`, async () => {
    const run = await solve(JSON.stringify(input));
    assert.equal(run.code, 2);
    assert.equal(run.stdout, "");
    assert.match(run.stderr, /^solve: line 1: /);
    assert.match(run.stderr, pattern);
    assert.equal(run.stderr.trimEnd().split("\n").length, 1);
  });
}

Deno.test("cli: not JSON, bare NaN and empty input are rejected with exit 2", async () => {
  for (
    const [input, pattern] of [
      ["{ not json", /not valid JSON/],
      ['{"capacity": NaN, "bids": []}', /field "capacity" .* got NaN/],
      [
        '{"capacity": 5, "bids": [{"id": "p", "weight": Infinity, "floor": 0, "demand": 1, "cap": 1}]}',
        /field "weight" .* got Infinity/,
      ],
      ["", /input: empty/],
    ] as const
  ) {
    const run = await solve(input);
    assert.equal(run.code, 2, input);
    assert.equal(run.stdout, "");
    assert.match(run.stderr, pattern);
  }
});

Deno.test("cli: a pretty-printed multi-line market is one market; its errors say 'input'", async () => {
  const ok = await solve(JSON.stringify(MARKET, null, 2), ["--pretty"]);
  assert.equal(ok.code, 0);
  assert.deepEqual(JSON.parse(ok.stdout), clearMarket(MARKET));
  assert.ok(ok.stdout.includes("\n  "), "pretty output is indented");
  const bad = await solve(JSON.stringify({ ...MARKET, capacity: -3 }, null, 2));
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /^solve: input: market: field "capacity" .* got -3/);
});

Deno.test("cli: unknown flag is a usage error with exit 2; --help exits 0", async () => {
  const bad = await solve("{}", ["--bogus"]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /bogus/);
  const help = await solve("", ["--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /usage: deno task solve/);
});

Deno.test("cli: --tiered writes guarantees and limits; without it, tier fields leave the clearing as before", async () => {
  const market = {
    capacity: 2000,
    headroom: 100,
    bids: [
      { id: "web", weight: 1200, floor: 300, demand: 650, cap: 2000, usage: 560 },
      { id: "batch", weight: 100, floor: 100, demand: 1150, cap: 2000, tier: "elastic" },
    ],
  };
  const tiered = await solve(JSON.stringify(market), ["--tiered"]);
  assert.equal(tiered.code, 0, tiered.stderr);
  const settlement = JSON.parse(tiered.stdout);
  assert.deepEqual(settlement, settleMarket(market as Parameters<typeof settleMarket>[0]));
  assert.deepEqual(settlement.limits, { web: 650, batch: 1150 });
  assert.deepEqual(settlement.guarantees, { web: 650, batch: 1150 });
  const plain = await solve(JSON.stringify(market));
  const { headroom: _h, ...bare } = market;
  const untiered = {
    ...bare,
    bids: bare.bids.map(({ id, weight, floor, demand, cap }) => ({
      id,
      weight,
      floor,
      demand,
      cap,
    })),
  };
  assert.deepEqual(
    JSON.parse(plain.stdout),
    clearMarket(untiered),
  );
  const bad = await solve(
    JSON.stringify({ ...market, bids: [{ ...market.bids[1], tier: "batch" }] }),
    ["--tiered"],
  );
  assert.equal(bad.code, 2);
  assert.match(
    bad.stderr,
    /bids\[0\] \(id "batch"\): field "tier" must be "protected" or "elastic", got "batch"/,
  );
});

Deno.test("cli: --tiered with elasticYields: the elastic budget leaves the protected usage to the kernel; a non-boolean is refused", async () => {
  const market = {
    capacity: 2000,
    headroom: 100,
    elasticYields: true,
    bids: [
      { id: "web", weight: 300, floor: 300, demand: 560, cap: 2000, usage: 1500 },
      { id: "batch", weight: 100, floor: 100, demand: 2000, cap: 2000, tier: "elastic" },
    ],
  };
  const yielding = await solve(JSON.stringify(market), ["--tiered"]);
  assert.equal(yielding.code, 0, yielding.stderr);
  const settlement = JSON.parse(yielding.stdout);
  assert.equal(settlement.elasticBudget, 1900);
  assert.equal(settlement.limits.batch, 1900);
  const tracking = JSON.parse(
    (await solve(JSON.stringify({ ...market, elasticYields: false }), ["--tiered"])).stdout,
  );
  assert.equal(tracking.limits.batch, 1440, "the guarantee: 2000 − web's 560");
  const bad = await solve(JSON.stringify({ ...market, elasticYields: "yes" }), ["--tiered"]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /field "elasticYields" must be true or false, got "yes"/);
});

Deno.test("cli: --tiered with yieldingCapacity: yielding elastic limits reach past the capacity; below the capacity or fractional is refused", async () => {
  const market = {
    capacity: 1800,
    headroom: 100,
    elasticYields: true,
    yieldingCapacity: 2000,
    bids: [
      { id: "web", weight: 300, floor: 300, demand: 560, cap: 2000, usage: 560 },
      { id: "batch", weight: 100, floor: 100, demand: 2000, cap: 2000, tier: "elastic" },
    ],
  };
  const reaching = await solve(JSON.stringify(market), ["--tiered"]);
  assert.equal(reaching.code, 0, reaching.stderr);
  assert.equal(JSON.parse(reaching.stdout).limits.batch, 1900, "2000 − the headroom");
  const { yieldingCapacity: _, ...within } = market;
  assert.equal(
    JSON.parse((await solve(JSON.stringify(within), ["--tiered"])).stdout).limits.batch,
    1700,
    "without it: the capacity − the headroom",
  );
  // Without --tiered it is read and ignored, as the other tier fields.
  const plain = await solve(JSON.stringify(market), []);
  assert.equal(plain.stdout, (await solve(JSON.stringify(within), [])).stdout);
  const below = await solve(JSON.stringify({ ...market, yieldingCapacity: 1500 }), ["--tiered"]);
  assert.equal(below.code, 2);
  assert.match(below.stderr, /field "yieldingCapacity" must be at least capacity 1800, got 1500/);
  const fractional = await solve(JSON.stringify({ ...market, yieldingCapacity: 1900.5 }), [
    "--tiered",
  ]);
  assert.equal(fractional.code, 2);
  assert.match(fractional.stderr, /field "yieldingCapacity" must be a non-negative integer/);
});

Deno.test("cli: --tiered with protectedLimit cap: protected limits are their caps, the rest unchanged; an unknown mode is refused", async () => {
  const market = {
    capacity: 2000,
    headroom: 100,
    bids: [
      { id: "web", weight: 1200, floor: 400, demand: 460, cap: 1800, usage: 300 },
      { id: "bursty", weight: 400, floor: 300, demand: 1150, cap: 2000, usage: 1000 },
      { id: "batch", weight: 100, floor: 100, demand: 2000, cap: 2000, tier: "elastic" },
    ],
  };
  const byTarget = JSON.parse((await solve(JSON.stringify(market), ["--tiered"])).stdout);
  assert.deepEqual([byTarget.limits.web, byTarget.limits.bursty], [460, 1150]);
  const open = await solve(JSON.stringify({ ...market, protectedLimit: "cap" }), ["--tiered"]);
  assert.equal(open.code, 0, open.stderr);
  const settlement = JSON.parse(open.stdout);
  assert.deepEqual([settlement.limits.web, settlement.limits.bursty], [1800, 2000]);
  assert.deepEqual(settlement.guarantees, byTarget.guarantees);
  assert.equal(settlement.limits.batch, byTarget.limits.batch);
  const bad = await solve(JSON.stringify({ ...market, protectedLimit: "open" }), ["--tiered"]);
  assert.equal(bad.code, 2);
  assert.equal(bad.stdout, "");
  assert.match(bad.stderr, /field "protectedLimit" must be "target" or "cap", got "open"/);
});
