import assert from "node:assert/strict";
import { join } from "node:path";
import {
  CgroupSampler,
  computeSignals,
  detectLayout,
  discover,
  readSample,
} from "../../src/cgroup/mod.ts";
import type { CpuSample, SampleResult } from "../../src/cgroup/mod.ts";
import { ALL_LAYOUTS, CgroupFixture, containerId, podUid } from "./_fixtures.ts";

function ok(result: SampleResult): CpuSample {
  assert.equal(result.status, "ok", JSON.stringify(result));
  return (result as { sample: CpuSample }).sample;
}

function node(layout: (typeof ALL_LAYOUTS)[number]) {
  const fixture = CgroupFixture.create(layout);
  const limited = containerId(1);
  const unlimited = containerId(2);
  fixture.addPod({
    uid: podUid(1),
    qos: "burstable",
    containers: [
      { id: containerId(0), shares: 2, quotaMicros: null },
      { id: limited, shares: 204, quotaMicros: 20_000 },
      { id: unlimited, shares: 1024, quotaMicros: null },
    ],
  });
  const cgroupLayout = detectLayout(fixture.root);
  const containers = discover(cgroupLayout).pods[0].containers;
  const path = (id: string) => containers.find((c) => c.id === id)!.relativePath;
  return { fixture, layout: cgroupLayout, limited, unlimited, path };
}

for (const layoutName of ALL_LAYOUTS) {
  Deno.test(`sample (${layoutName}): usage, throttling, limit, shares and PSI from two readings`, () => {
    const { fixture, layout, limited, unlimited, path } = node(layoutName);
    try {
      const a = ok(readSample(layout, path(limited), 1000));
      assert.equal(a.quotaMicros, 20_000);
      assert.equal(a.periodMicros, 100_000);
      // v2 weights are coarser than v1 shares: the round trip loses up to 262142/9999 ≈ 26.
      const tolerance = fixture.isV2 ? 27 : 0;
      assert.ok(a.shares !== null && Math.abs(a.shares - 204) <= tolerance, `shares ${a.shares}`);
      // One second: 200m used, 9 of 10 periods throttled, 0.7 s of throttled time.
      fixture.advance(limited, {
        usageNanos: 200_000_000,
        periods: 10,
        throttledPeriods: 9,
        throttledNanos: 700_000_000,
        psiSomeMicros: 400_000,
        psiSomeAvg10: 38.5,
      });
      const b = ok(readSample(layout, path(limited), 2000));
      const result = computeSignals(a, b);
      assert.equal(result.status, "ok");
      if (result.status !== "ok") return;
      assert.ok(Math.abs(result.signals.usageMillicores - 200) < 1e-6);
      assert.equal(result.signals.throttledRatio, 0.9);
      assert.ok(Math.abs(result.signals.throttledMillicores - 700) < 1e-6);
      assert.equal(result.signals.limitMillicores, 200);
      if (layoutName.startsWith("v1-")) {
        assert.equal(result.signals.psiSomeAvg10, null, "plain v1 has no PSI");
      } else {
        assert.equal(result.signals.psiSomeAvg10, 38.5);
        assert.ok(Math.abs(result.signals.psiSomeStallRatio! - 0.4) < 1e-9);
      }

      const c = ok(readSample(layout, path(unlimited), 1000));
      fixture.advance(unlimited, { usageNanos: 2_500_000_000 });
      const d = ok(readSample(layout, path(unlimited), 3500));
      const free = computeSignals(c, d);
      assert.equal(free.status, "ok");
      if (free.status !== "ok") return;
      assert.equal(free.signals.limitMillicores, null);
      assert.ok(Math.abs(free.signals.usageMillicores - 1000) < 1e-6);
      assert.equal(free.signals.throttledRatio, 0);
    } finally {
      fixture.cleanup();
    }
  });
}

Deno.test("sample: a vanished cgroup, a missing file and garbage are each reported, never a zero", () => {
  for (const layoutName of ["v2-systemd", "v1-cgroupfs"] as const) {
    const { fixture, layout, limited, unlimited, path } = node(layoutName);
    try {
      const statFile = "cpu.stat";
      fixture.garble(limited, statFile, "nr_periods lots\n");
      const garbled = readSample(layout, path(limited), 1);
      assert.equal(garbled.status, "malformed");
      if (garbled.status === "malformed") {
        assert.ok(garbled.file.endsWith(statFile));
        assert.match(garbled.detail, /unexpected line "nr_periods lots"/);
      }
      const quotaFile = layoutName === "v2-systemd" ? "cpu.max" : "cpu.cfs_quota_us";
      fixture.garble(unlimited, quotaFile, "\u0000\u0001");
      assert.equal(readSample(layout, path(unlimited), 1).status, "malformed");

      fixture.removeFile(unlimited, quotaFile);
      const missing = readSample(layout, path(unlimited), 1);
      assert.deepEqual(missing.status, "missing-file");
      if (missing.status === "missing-file") assert.ok(missing.file.endsWith(quotaFile));

      const gonePath = path(limited);
      fixture.removeContainer(limited);
      const vanished = readSample(layout, gonePath, 1);
      assert.equal(vanished.status, "vanished");
    } finally {
      fixture.cleanup();
    }
  }
});

Deno.test("sample: a container restarted in place shows as a counter reset, not idleness", () => {
  const { fixture, layout, limited, path } = node("v2-systemd");
  try {
    fixture.advance(limited, { usageNanos: 5_000_000_000, periods: 50, throttledPeriods: 10 });
    const a = ok(readSample(layout, path(limited), 1000));
    fixture.setCounters(limited, {
      usageNanos: 1_000_000,
      periods: 1,
      throttledPeriods: 0,
      throttledNanos: 0,
      psiSomeMicros: 0,
      psiSomeAvg10: 0,
    });
    const b = ok(readSample(layout, path(limited), 2000));
    const result = computeSignals(a, b);
    assert.equal(result.status, "counter-reset");
    if (result.status === "counter-reset") assert.equal(result.counter, "usage");
  } finally {
    fixture.cleanup();
  }
});

Deno.test("sample: a quota change between samples is reported as the new limit", () => {
  const { fixture, layout, limited, path } = node("v1-cgroupfs");
  try {
    const a = ok(readSample(layout, path(limited), 0));
    fixture.setQuota(limited, 150_000);
    const b = ok(readSample(layout, path(limited), 1000));
    const result = computeSignals(a, b);
    assert.equal(result.status === "ok" && result.signals.limitMillicores, 1500);
    fixture.setQuota(limited, null);
    assert.equal(ok(readSample(layout, path(limited), 2000)).quotaMicros, null);
  } finally {
    fixture.cleanup();
  }
});

for (const layoutName of ALL_LAYOUTS) {
  Deno.test(`sample (${layoutName}): with slowLimits the quota is re-read every 30th sample, the counters every time`, () => {
    const { fixture, layout, limited, path } = node(layoutName);
    const every = new CgroupSampler(layout);
    const slow = new CgroupSampler(layout, { slowLimits: true });
    try {
      const first = ok(slow.read(path(limited), 0));
      assert.equal(first.quotaMicros, 20_000, "read on the first sample");
      assert.equal(ok(every.read(path(limited), 0)).quotaMicros, 20_000);
      fixture.setQuota(limited, 150_000);
      fixture.advance(limited, { usageNanos: 5_000_000 });
      const second = ok(slow.read(path(limited), 1000));
      assert.equal(second.quotaMicros, 20_000, "the quota is not re-read yet");
      assert.equal(second.usageNanos - first.usageNanos, 5_000_000, "counters are");
      assert.equal(ok(every.read(path(limited), 1000)).quotaMicros, 150_000);
      for (let i = 2; i < 30; i++) {
        assert.equal(ok(slow.read(path(limited), i * 1000)).quotaMicros, 20_000);
      }
      assert.equal(ok(slow.read(path(limited), 30_000)).quotaMicros, 150_000, "the 31st reads it");
    } finally {
      every.close();
      slow.close();
      fixture.cleanup();
    }
  });
}

for (const layoutName of ALL_LAYOUTS) {
  Deno.test(`sample (${layoutName}): with pressureWhenThrottled PSI is read only in samples after throttling`, () => {
    const { fixture, layout, limited, path } = node(layoutName);
    const sampler = new CgroupSampler(layout, { pressureWhenThrottled: true });
    const every = new CgroupSampler(layout);
    const pressure = layout.psiDir !== null;
    // Each step: one second, PSI some time advancing; throttled or not.
    const step = (t: number, throttled: boolean) => {
      fixture.advance(limited, {
        usageNanos: 200_000_000,
        periods: 10,
        throttledPeriods: throttled ? 8 : 0,
        throttledNanos: throttled ? 300_000_000 : 0,
        psiSomeMicros: 250_000,
      });
      return [ok(sampler.read(path(limited), t)), ok(every.read(path(limited), t))];
    };
    try {
      const [first, firstEvery] = [
        ok(sampler.read(path(limited), 0)),
        ok(every.read(path(limited), 0)),
      ];
      assert.equal(first.psi, null, "no previous sample: not known to be throttled");
      assert.equal(firstEvery.psi !== null, pressure);
      let [quiet] = step(1000, false);
      assert.equal(quiet.psi, null, "not throttled: PSI not read");
      const [onset, onsetEvery] = step(2000, true);
      assert.equal(onset.psi !== null, pressure, "throttled since the previous sample: read");
      assert.deepEqual(
        onset.psi,
        onsetEvery.psi,
        "the same reading as a sampler that reads it always",
      );
      assert.equal(computeSignals(quiet, onset).status, "ok");
      const at = (r: ReturnType<typeof computeSignals>) => r.status === "ok" ? r.signals : null;
      assert.equal(at(computeSignals(quiet, onset))!.psiSomeStallRatio, null, "no baseline yet");
      const [still] = step(3000, true);
      const ratio = at(computeSignals(onset, still))!.psiSomeStallRatio;
      if (pressure) assert.ok(Math.abs(ratio! - 0.25) < 1e-9, `stall ratio ${ratio}`);
      else assert.equal(ratio, null);
      [quiet] = step(4000, false);
      assert.equal(quiet.psi, null, "throttling stopped: PSI not read again");
      assert.equal(at(computeSignals(still, quiet))!.throttledRatio, 0);
    } finally {
      sampler.close();
      every.close();
      fixture.cleanup();
    }
  });
}

Deno.test("sample: a file the program may not read is reported as unreadable, by both readers", async () => {
  const { fixture, layout, limited, path } = node("v2-systemd");
  const script = await Deno.makeTempFile({ suffix: ".ts" });
  try {
    const denied = `${layout.cpuDir}${path(limited)}/cpu.stat`;
    const mod = new URL("../../src/cgroup/mod.ts", import.meta.url).href;
    await Deno.writeTextFile(
      script,
      `import { CgroupSampler, detectLayout, readSample } from ${JSON.stringify(mod)};
const layout = detectLayout(${JSON.stringify(fixture.root)});
const a = readSample(layout, ${JSON.stringify(path(limited))}, 1);
const b = new CgroupSampler(layout).read(${JSON.stringify(path(limited))}, 1);
console.log(JSON.stringify([a, b]));`,
    );
    // Root reads any file whatever its mode, so the refusal comes from Deno's permissions.
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--no-prompt",
        `--allow-read=${fixture.root}`,
        `--deny-read=${denied}`,
        script,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    const results = JSON.parse(new TextDecoder().decode(out.stdout)) as SampleResult[];
    for (const result of results) {
      assert.equal(result.status, "unreadable");
      if (result.status === "unreadable") {
        assert.equal(result.file, denied);
        assert.match(result.detail, /is outside the program's --allow-read paths/);
      }
    }
  } finally {
    fixture.cleanup();
    await Deno.remove(script);
  }
});

Deno.test("sample: PSI is optional: garbage or a read error in cpu.pressure leaves the sample without PSI", () => {
  const { fixture, layout, limited, path } = node("v2-systemd");
  try {
    fixture.garble(limited, "cpu.pressure", "not psi at all\n");
    const garbled = ok(readSample(layout, path(limited), 1000));
    assert.equal(garbled.psi, null);
    assert.equal(garbled.quotaMicros, 20_000, "the rest of the sample is intact");
    // A read error (EISDIR here; EOPNOTSUPP where PSI is built in but off) is "no PSI" too.
    fixture.removeFile(limited, "cpu.pressure");
    const dir = join(fixture.root, fixture.containerDirs.get(limited)!, "cpu.pressure");
    Deno.mkdirSync(dir);
    assert.equal(ok(readSample(layout, path(limited), 2000)).psi, null);
    const sampler = new CgroupSampler(layout);
    try {
      assert.equal(ok(sampler.read(path(limited), 3000)).psi, null);
      assert.equal(ok(sampler.read(path(limited), 4000)).psi, null);
    } finally {
      sampler.close();
    }
  } finally {
    fixture.cleanup();
  }
});
