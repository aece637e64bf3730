/** LeaderElector against an in-memory Lease API: acquisition, write budget, hung requests. */
import assert from "node:assert/strict";
import * as k8s from "@kubernetes/client-node";
import {
  LEADER_ELECTION_LOOP,
  LeaderElector,
  leaderTimingProblem,
  type LeaseApi,
} from "../../src/controller/leader.ts";
import { ProgressTracker } from "../../src/serve/mod.ts";
import { eventually } from "../k8s/_helpers.ts";

const apiError = (code: number) => Object.assign(new Error(`HTTP ${code}`), { code });

/** One Lease in memory, with resourceVersion checks; `hang` makes every call never answer. */
class FakeLeaseApi implements LeaseApi {
  lease: k8s.V1Lease | null = null;
  version = 0;
  calls: string[] = [];
  hang = false;
  /** Calls left hanging, to answer late. */
  hung: { call: string; answer: () => void }[] = [];

  #maybeHang<T>(call: string, answer: () => T): Promise<T> {
    this.calls.push(call);
    if (!this.hang) {
      try {
        return Promise.resolve(answer());
      } catch (error) {
        return Promise.reject(error);
      }
    }
    const { promise, resolve, reject } = Promise.withResolvers<T>();
    this.hung.push({
      call,
      answer: () => {
        try {
          resolve(answer());
        } catch (error) {
          reject(error);
        }
      },
    });
    return promise;
  }

  readNamespacedLease(_: { name: string; namespace: string }): Promise<k8s.V1Lease> {
    return this.#maybeHang("read", () => {
      if (this.lease === null) throw apiError(404);
      return structuredClone(this.lease);
    });
  }

  createNamespacedLease(param: { namespace: string; body: k8s.V1Lease }): Promise<k8s.V1Lease> {
    return this.#maybeHang("create", () => {
      if (this.lease !== null) throw apiError(409);
      this.lease = structuredClone(param.body);
      this.lease.metadata = { ...this.lease.metadata, resourceVersion: String(++this.version) };
      return structuredClone(this.lease);
    });
  }

  patchNamespacedLease(
    param: { name: string; namespace: string; body: k8s.V1Lease },
  ): Promise<k8s.V1Lease> {
    return this.#maybeHang("patch", () => {
      if (this.lease === null) throw apiError(404);
      const rv = param.body.metadata?.resourceVersion;
      if (rv !== undefined && rv !== this.lease.metadata?.resourceVersion) throw apiError(409);
      this.lease.spec = { ...this.lease.spec, ...param.body.spec } as k8s.V1LeaseSpec;
      this.lease.metadata = { ...this.lease.metadata, resourceVersion: String(++this.version) };
      return structuredClone(this.lease);
    });
  }

  /** Another replica holds the Lease (just renewed). */
  heldBy(identity: string): void {
    this.lease = {
      metadata: { name: "l", namespace: "ns", resourceVersion: String(++this.version) },
      spec: {
        holderIdentity: identity,
        leaseDurationSeconds: 10,
        renewTime: new Date(Date.now() + this.version) as unknown as Date,
      },
    };
  }
}

Deno.test("leader: timings follow client-go's rules", () => {
  assert.equal(
    leaderTimingProblem({ leaseDurationMs: 10_000, renewDeadlineMs: 6_666, retryPeriodMs: 2_000 }),
    null,
  );
  assert.match(
    leaderTimingProblem({ leaseDurationMs: 5_000, renewDeadlineMs: 5_000, retryPeriodMs: 1_000 })!,
    /lease duration \(5000 ms\) must be greater than the renew deadline \(5000 ms\)/,
  );
  assert.match(
    leaderTimingProblem({ leaseDurationMs: 10_000, renewDeadlineMs: 2_400, retryPeriodMs: 2_000 })!,
    /renew deadline \(2400 ms\) must be greater than 1\.2 × the retry period \(2000 ms\)/,
  );
  assert.match(
    leaderTimingProblem({ leaseDurationMs: 10_000, renewDeadlineMs: 5_000, retryPeriodMs: 0 })!,
    /must be positive/,
  );
  assert.throws(
    () =>
      new LeaderElector(null, {
        namespace: "ns",
        name: "l",
        identity: "a",
        leaseDurationMs: 2_000, // renew deadline 1333 ms < 1.2 × 2 s
        api: new FakeLeaseApi(),
      }),
    RangeError,
  );
});

Deno.test("leader: acquires the Lease; the write budget is the lease time left less one retry period", async () => {
  const api = new FakeLeaseApi();
  const clock = { now: 1_000 };
  const progress = new ProgressTracker({ now: () => clock.now });
  const changes: boolean[] = [];
  const elector = new LeaderElector(null, {
    namespace: "ns",
    name: "l",
    identity: "a",
    leaseDurationMs: 10_000,
    renewDeadlineMs: 6_000,
    retryPeriodMs: 2_000,
    now: () => clock.now,
    api,
    progress,
  });
  assert.equal(elector.writeBudgetMs(), 0, "not leading: no budget");
  elector.start((leading) => changes.push(leading));
  try {
    await eventually("leading", () => elector.isLeader(), 2_000);
    assert.deepEqual(api.calls.slice(0, 2), ["read", "create"]);
    assert.equal(api.lease?.spec?.holderIdentity, "a");
    assert.equal(elector.writeBudgetMs(), 8_000); // renewed at 1000: 1000 + 10000 − 2000 − 1000
    clock.now += 3_000;
    assert.equal(elector.writeBudgetMs(), 5_000);
    assert.equal(progress.lastBeat(LEADER_ELECTION_LOOP), 1_000);
    assert.deepEqual(progress.loops(), [LEADER_ELECTION_LOOP]);
    assert.equal(elector.progressBoundMs(), 16_000);
    clock.now += 3_001; // past the renew deadline without a renewal
    assert.equal(elector.writeBudgetMs(), 0);
    assert.equal(elector.isLeader(), false);
    assert.deepEqual(changes, [true, false]);
  } finally {
    await elector.stop();
  }
  assert.deepEqual(progress.loops(), [], "stopping ends the loop");
});

Deno.test("leader: a request that never answers does not stop the elector competing", async () => {
  const api = new FakeLeaseApi();
  api.hang = true;
  const logs: string[] = [];
  const elector = new LeaderElector(null, {
    namespace: "ns",
    name: "l",
    identity: "a",
    leaseDurationMs: 400,
    renewDeadlineMs: 100,
    retryPeriodMs: 50,
    api,
    log: (_level, message, fields) => logs.push(`${message} ${fields?.error ?? ""}`),
  });
  elector.start(() => {});
  try {
    await eventually("several rounds", () => api.calls.length >= 4, 3_000);
    assert.equal(elector.isLeader(), false);
    assert.match(logs[0], /lease update failed Error: lease requests took longer than 100 ms/);
    // Once the API answers again the elector acquires the Lease.
    api.hang = false;
    await eventually("leading", () => elector.isLeader(), 3_000);
  } finally {
    const started = performance.now();
    await elector.stop();
    assert.ok(performance.now() - started < 1_000);
  }
});

Deno.test("leader: a leader whose renewals hang stops leading, and a late answer changes nothing", async () => {
  const api = new FakeLeaseApi();
  const changes: boolean[] = [];
  const elector = new LeaderElector(null, {
    namespace: "ns",
    name: "l",
    identity: "a",
    leaseDurationMs: 1_000,
    renewDeadlineMs: 300,
    retryPeriodMs: 100,
    api,
  });
  elector.start((leading) => changes.push(leading));
  try {
    await eventually("leading", () => elector.isLeader(), 2_000);
    assert.ok(elector.writeBudgetMs() > 0 && elector.writeBudgetMs() <= 900);
    api.hang = true;
    await eventually("deposed by its renew deadline", () => !elector.isLeader(), 2_000);
    assert.equal(elector.writeBudgetMs(), 0);
    // Someone else took over; the hung calls now answer (the reads show the old holder).
    api.hang = false;
    for (const { answer } of api.hung.splice(0)) answer();
    api.heldBy("b");
    await eventually("observed b", () => elector.holder === "b", 2_000);
    await new Promise((r) => setTimeout(r, 250));
    assert.equal(elector.isLeader(), false);
    assert.deepEqual(changes, [true, false]);
  } finally {
    await elector.stop();
  }
});

Deno.test("leader: stop releases the Lease, and is bounded when the API hangs", async () => {
  const api = new FakeLeaseApi();
  const elector = new LeaderElector(null, {
    namespace: "ns",
    name: "l",
    identity: "a",
    leaseDurationMs: 1_000,
    renewDeadlineMs: 300,
    retryPeriodMs: 100,
    api,
  });
  elector.start(() => {});
  await eventually("leading", () => elector.isLeader(), 2_000);
  await elector.stop();
  assert.equal(api.lease?.spec?.holderIdentity, null);

  const hung = new FakeLeaseApi();
  const second = new LeaderElector(null, {
    namespace: "ns",
    name: "l",
    identity: "a",
    leaseDurationMs: 1_000,
    renewDeadlineMs: 300,
    retryPeriodMs: 100,
    api: hung,
  });
  second.start(() => {});
  await eventually("leading", () => second.isLeader(), 2_000);
  hung.hang = true;
  const started = performance.now();
  await second.stop();
  assert.ok(performance.now() - started < 1_000, "stop waits at most a retry period");
});
