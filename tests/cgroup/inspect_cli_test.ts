import assert from "node:assert/strict";
import { join } from "node:path";
import { ALL_LAYOUTS, CgroupFixture, containerId, podUid } from "./_fixtures.ts";

const INSPECT = new URL("../../src/cli/inspect.ts", import.meta.url).pathname;

async function inspect(
  allowRead: string,
  args: string[],
): Promise<{ code: number; lines: Record<string, unknown>[]; stderr: string }> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", `--allow-read=${allowRead}`, INSPECT, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(output.stdout).trim();
  return {
    code: output.code,
    lines: stdout === "" ? [] : stdout.split("\n").map((l) => JSON.parse(l)),
    stderr: new TextDecoder().decode(output.stderr),
  };
}

for (const layout of ALL_LAYOUTS) {
  Deno.test(`inspect (${layout}): one line per container and per unclassified directory, under --allow-read of the root only`, async () => {
    const fixture = CgroupFixture.create(layout);
    try {
      const busy = containerId(1);
      fixture.addPod({
        uid: podUid(1),
        qos: "burstable",
        containers: [{ id: containerId(0), shares: 2, quotaMicros: null }, {
          id: busy,
          shares: 512,
          quotaMicros: 50_000,
        }],
      });
      fixture.mkdir(`${fixture.kubepodsRoot}/burstable-typo`);
      // Advance the busy container's counters while inspect sleeps between its two samples.
      // Halfway: the first sample is taken once `deno run` has started (well under 1.5 s).
      const run = inspect(fixture.root, ["--cgroup-root", fixture.root, "--interval-ms", "3000"]);
      await new Promise((r) => setTimeout(r, 1500));
      fixture.advance(busy, {
        usageNanos: 1_200_000_000,
        periods: 15,
        throttledPeriods: 12,
        throttledNanos: 300_000_000,
        psiSomeAvg10: 12.5,
      });
      const { code, lines, stderr } = await run;
      assert.equal(code, 0, stderr);
      assert.equal(lines.length, 3, JSON.stringify(lines));
      const line = lines.find((l) => String(l.containerID).endsWith(busy))!;
      assert.equal(line.podUID, podUid(1));
      assert.equal(line.qos, "burstable");
      assert.equal(line.cgroupVersion, layout.startsWith("v2") ? 2 : 1);
      assert.equal(
        line.path,
        fixture.containerPath({ uid: podUid(1), qos: "burstable", containers: [] }, {
          id: busy,
          shares: 0,
          quotaMicros: 0,
        }),
      );
      assert.equal(line.limitMillicores, 500);
      assert.equal(line.throttledRatio, 0.8);
      // 1.2 s of CPU over ≈3 s, within the timer's slack (a second sample up to 1 s late).
      assert.ok(
        (line.usageMillicores as number) > 300 && (line.usageMillicores as number) <= 400,
        `usage ${line.usageMillicores}`,
      );
      assert.equal(line.psiSomeAvg10, layout.startsWith("v1-") ? null : 12.5);
      const sandbox = lines.find((l) => String(l.containerID).endsWith(containerId(0)))!;
      assert.equal(sandbox.sandbox, true);
      assert.equal(sandbox.usageMillicores, 0);
      const unclassified = lines.find((l) => "unclassified" in l)!;
      assert.equal(unclassified.unclassified, `${fixture.kubepodsRoot}/burstable-typo`);
    } finally {
      fixture.cleanup();
    }
  });
}

Deno.test("inspect: a missing root or a non-cgroup directory exits 2 with a message naming it", async () => {
  const dir = Deno.makeTempDirSync();
  try {
    const missing = await inspect(dir, [
      "--cgroup-root",
      join(dir, "absent"),
      "--interval-ms",
      "1",
    ]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, new RegExp(`${join(dir, "absent")} does not exist`));
    const plain = await inspect(dir, ["--cgroup-root", dir, "--interval-ms", "1"]);
    assert.equal(plain.code, 2);
    assert.match(plain.stderr, /is not a cgroup mount/);
    assert.deepEqual(plain.lines, []);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("inspect: invalid --interval-ms and unknown flags exit 2 naming the flag and value", async () => {
  for (
    const [args, pattern] of [
      [
        ["--interval-ms", "soon"],
        /--interval-ms must be a whole number of milliseconds, got "soon"/,
      ],
      [["--interval-ms", "0"], /--interval-ms must be at least 1, got "0"/],
      [["--interval-ms", "2.5"], /--interval-ms must be a whole number of milliseconds, got "2.5"/],
      [["--frobnicate"], /frobnicate/],
    ] as [string[], RegExp][]
  ) {
    const run = await inspect("/nonexistent", args);
    assert.equal(run.code, 2, args.join(" "));
    assert.match(run.stderr, pattern);
  }
});

Deno.test("inspect: a container that vanishes between the two samples is reported as vanished", async () => {
  const fixture = CgroupFixture.create("v2-systemd");
  try {
    const gone = containerId(7);
    fixture.addPod({
      uid: podUid(2),
      qos: "burstable",
      containers: [{ id: gone, shares: 100, quotaMicros: null }],
    });
    const run = inspect(fixture.root, ["--cgroup-root", fixture.root, "--interval-ms", "3000"]);
    await new Promise((r) => setTimeout(r, 1500));
    fixture.removeContainer(gone);
    const { code, lines } = await run;
    assert.equal(code, 0);
    assert.equal(lines[0].status, "vanished");
    assert.equal(lines[0].usageMillicores, undefined, "no made-up zero");
  } finally {
    fixture.cleanup();
  }
});
