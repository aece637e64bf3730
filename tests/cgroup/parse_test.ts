import assert from "node:assert/strict";
import fc from "fast-check";
import {
  MalformedFile,
  parseCpuMax,
  parseCpuStat,
  parseKeyedCounters,
  parsePressure,
  parseSingleInteger,
  weightToShares,
} from "../../src/cgroup/_files.ts";
import {
  bareContainerID,
  parseContainerName,
  parsePodName,
  qosDirectory,
} from "../../src/cgroup/_names.ts";
import { computeSignals } from "../../src/cgroup/mod.ts";
import type { CpuSample } from "../../src/cgroup/mod.ts";

const ID = "a".repeat(60) + "0123";

Deno.test("names: systemd and cgroupfs pod names, kind prefixes, static pod hashes", () => {
  assert.deepEqual(
    parsePodName("kubepods-burstable-pod12345678_1234_1234_1234_123456789abc.slice"),
    {
      uid: "12345678-1234-1234-1234-123456789abc",
      qos: "burstable",
      driver: "systemd",
    },
  );
  assert.deepEqual(
    parsePodName("kubepods-pod12345678_1234_1234_1234_123456789abc.slice")?.qos,
    "guaranteed",
  );
  assert.deepEqual(
    parsePodName("kubelet-kubepods-besteffort-pod12345678_1234_1234_1234_123456789abc.slice")?.qos,
    "besteffort",
  );
  assert.deepEqual(parsePodName("pod12345678-1234-1234-1234-123456789abc"), {
    uid: "12345678-1234-1234-1234-123456789abc",
    driver: "cgroupfs",
  });
  assert.equal(
    parsePodName("pod0123456789abcdef0123456789abcdef")?.uid,
    "0123456789abcdef0123456789abcdef",
  );
  for (
    const bad of ["pod", "podxyz", "kubepods-burstable.slice", "pod12345678-1234", "system.slice"]
  ) {
    assert.equal(parsePodName(bad), null, bad);
  }
  assert.equal(qosDirectory("burstable"), "burstable");
  assert.equal(qosDirectory("kubepods-besteffort.slice"), "besteffort");
  assert.equal(qosDirectory("kubelet-kubepods-burstable.slice"), "burstable");
  assert.equal(qosDirectory("guaranteed"), null);
});

Deno.test("names: container scopes of containerd, CRI-O and Docker, and bare ids", () => {
  assert.deepEqual(parseContainerName(`cri-containerd-${ID}.scope`), {
    id: ID,
    runtime: "containerd",
  });
  assert.deepEqual(parseContainerName(`crio-${ID}.scope`), { id: ID, runtime: "cri-o" });
  assert.deepEqual(parseContainerName(`docker-${ID}.scope`), { id: ID, runtime: "docker" });
  assert.deepEqual(parseContainerName(ID), { id: ID, runtime: "unknown" });
  assert.equal(parseContainerName(`crio-conmon-${ID}.scope`), null);
  assert.equal(parseContainerName(ID.slice(1)), null);
  assert.equal(bareContainerID(`containerd://${ID}`), ID);
  assert.equal(bareContainerID(ID), ID);
});

Deno.test("files: cpu.stat, cpu.max, single integers and PSI parse; garbage is MalformedFile", () => {
  const stat = parseKeyedCounters("usage_usec 10\nnr_periods 3\nthrottled_usec 7\n");
  assert.equal(stat.get("usage_usec"), 10);
  assert.equal(stat.get("throttled_usec"), 7);
  assert.deepEqual(parseCpuMax("max 100000\n"), { quotaMicros: null, periodMicros: 100000 });
  assert.deepEqual(parseCpuMax("20000 100000"), { quotaMicros: 20000, periodMicros: 100000 });
  assert.equal(parseSingleInteger("-1\n", true), -1);
  assert.equal(parseSingleInteger("1024\n"), 1024);
  const psi = parsePressure(
    "some avg10=1.50 avg60=0.25 avg300=0.00 total=12345\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=10\n",
  );
  assert.equal(psi.some.avg10, 1.5);
  assert.equal(psi.some.totalMicros, 12345);
  assert.equal(psi.full?.totalMicros, 10);
  assert.equal(parsePressure("some avg10=0.00 avg60=0.00 avg300=0.00 total=0").full, null);
  for (
    const [parse, text] of [
      [parseKeyedCounters, ""],
      [parseKeyedCounters, "usage_usec -5"],
      [parseKeyedCounters, "usage_usec 99999999999999999999"],
      [parseCpuMax, "max"],
      [parseCpuMax, "100 0"],
      [(t: string) => parseSingleInteger(t), "-1"],
      [(t: string) => parseSingleInteger(t), "12abc"],
      [parsePressure, "full avg10=0.00 avg60=0.00 avg300=0.00 total=0"],
      [parsePressure, "some avg10=x"],
    ] as [(t: string) => unknown, string][]
  ) {
    assert.throws(() => parse(text), MalformedFile, JSON.stringify(text));
  }
  assert.equal(weightToShares(1), 2);
  assert.equal(weightToShares(100), 2597); // kubelet: 1024 shares -> weight 39; 100 is the v2 default
  assert.equal(weightToShares(10000), 262144);
});

/**
 * The reading of a flat-keyed file the parser must agree with, written the
 * plain way: trimmed lines, blank ones skipped, each `key value` with one
 * space, keys `[a-z_.0-9]+`, values safe integers; null where the file is
 * malformed. The parser itself matches lines with one sticky regular
 * expression, for the agent's interpreter.
 */
function referenceCounters(text: string): Map<string, number> | null {
  const counters = new Map<string, number>();
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "") continue;
    const space = line.indexOf(" ");
    const key = line.slice(0, space);
    const value = line.slice(space + 1);
    if (space <= 0 || !/^[a-z_.0-9]+$/.test(key) || !/^\d+$/.test(value)) return null;
    if (!Number.isSafeInteger(Number(value))) return null;
    counters.set(key, Number(value));
  }
  return counters.size === 0 ? null : counters;
}

Deno.test("files property: cpu.stat parses as the plain line-by-line reading does, valid or corrupted", () => {
  const key = fc.constantFrom(
    "usage_usec",
    "nr_periods",
    "nr_throttled",
    "throttled_usec",
    "throttled_time",
    "nr_bursts",
    "core_sched.force_idle_usec",
  );
  const blank = fc.constantFrom("", " ", "\t", "\r", "  ");
  const line = fc.oneof(
    fc.tuple(blank, key, fc.oneof(fc.nat(), fc.constant(Number.MAX_SAFE_INTEGER)), blank)
      .map(([a, k, v, b]) => `${a}${k} ${v}${b}`),
    blank,
    fc.tuple(key, fc.bigInt({ min: 0n, max: 10n ** 20n })).map(([k, v]) => `${k} ${v}`),
    fc.constantFrom("usage_usec -5", "nr_periods  3", "Nr_periods 3", "nr_periods 3x", "x", " 5"),
    fc.string({ maxLength: 12 }),
  );
  fc.assert(
    fc.property(fc.array(line, { maxLength: 10 }), fc.boolean(), (lines, finalNewline) => {
      const text = lines.join("\n") + (finalNewline ? "\n" : "");
      const expected = referenceCounters(text);
      if (expected === null) {
        assert.throws(() => parseKeyedCounters(text), MalformedFile, JSON.stringify(text));
        assert.throws(() => parseCpuStat(text), MalformedFile, JSON.stringify(text));
        return;
      }
      assert.deepEqual(parseKeyedCounters(text), expected);
      assert.deepEqual(parseCpuStat(text), {
        ...(expected.has("usage_usec") ? { usageUsec: expected.get("usage_usec") } : {}),
        ...(expected.has("nr_periods") ? { nrPeriods: expected.get("nr_periods") } : {}),
        ...(expected.has("nr_throttled") ? { nrThrottled: expected.get("nr_throttled") } : {}),
        ...(expected.has("throttled_usec")
          ? { throttledUsec: expected.get("throttled_usec") }
          : {}),
        ...(expected.has("throttled_time")
          ? { throttledTime: expected.get("throttled_time") }
          : {}),
      });
    }),
    { numRuns: 2000 },
  );
});

function sample(atMs: number, over: Partial<CpuSample> = {}): CpuSample {
  return {
    atMs,
    usageNanos: 0,
    periods: 0,
    throttledPeriods: 0,
    throttledNanos: 0,
    quotaMicros: null,
    periodMicros: 100_000,
    shares: 1024,
    psi: null,
    ...over,
  };
}

Deno.test("signals: rates, zero interval, counter resets and idle periods", () => {
  const a = sample(0, {
    usageNanos: 1e9,
    periods: 100,
    throttledPeriods: 10,
    throttledNanos: 1e8,
    quotaMicros: 50_000,
  });
  const b = sample(500, {
    usageNanos: 1.25e9,
    periods: 105,
    throttledPeriods: 14,
    throttledNanos: 3e8,
    quotaMicros: 50_000,
  });
  const r = computeSignals(a, b);
  assert.equal(r.status, "ok");
  if (r.status === "ok") {
    assert.equal(r.signals.usageMillicores, 500);
    assert.equal(r.signals.throttledRatio, 0.8);
    assert.equal(r.signals.throttledMillicores, 400);
    assert.equal(r.signals.limitMillicores, 500);
    assert.equal(r.signals.psiSomeStallRatio, null);
  }
  assert.deepEqual(computeSignals(a, { ...b, atMs: 0 }), {
    status: "invalid-interval",
    intervalMs: 0,
  });
  assert.equal(computeSignals(b, a).status, "invalid-interval");
  assert.deepEqual(computeSignals(a, { ...b, periods: 50 }), {
    status: "counter-reset",
    counter: "nr_periods",
    detail: "nr_periods went from 100 to 50",
  });
  const idle = computeSignals(sample(0), sample(1000));
  assert.equal(idle.status === "ok" && idle.signals.throttledRatio, 0);
});

Deno.test("signals property: usage rate × interval reproduces the counter delta; resets are always caught", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 1e12 }),
      fc.integer({ min: 0, max: 1e10 }),
      fc.integer({ min: 1, max: 60_000 }),
      (start, delta, interval) => {
        const r = computeSignals(
          sample(1000, { usageNanos: start }),
          sample(1000 + interval, { usageNanos: start + delta }),
        );
        assert.equal(r.status, "ok");
        if (r.status === "ok") {
          assert.ok(
            Math.abs(r.signals.usageMillicores * interval * 1000 - delta) <=
              1e-6 * Math.max(1, delta),
          );
          assert.ok(r.signals.usageMillicores >= 0);
        }
        if (delta > 0) {
          const reset = computeSignals(
            sample(1000, { usageNanos: start + delta }),
            sample(1000 + interval, { usageNanos: start }),
          );
          assert.equal(reset.status, "counter-reset");
        }
      },
    ),
  );
});
