/** The informer's recovery logic against a scripted source (no API server needed). */
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  backoffDelay,
  Informer,
  type InformerSource,
  type KubeObject,
  type WatchStream,
} from "../../src/k8s/mod.ts";
import { eventually } from "./_helpers.ts";

type Obj = KubeObject & { value?: number };
const obj = (name: string, rv: string, value = 0): Obj => ({
  metadata: { name, namespace: "ns", resourceVersion: rv },
  value,
});

/** A source whose lists and watches the test scripts step by step. */
class ScriptedSource implements InformerSource<Obj> {
  items: Obj[] = [];
  rv = "10";
  lists = 0;
  listFailures = 0;
  watchFrom: string[] = [];
  current: { emit: (type: string, o: unknown) => void; end: (error: unknown) => void } | null =
    null;

  list() {
    this.lists++;
    if (this.listFailures > 0) {
      this.listFailures--;
      return Promise.reject(new Error("connection refused"));
    }
    return Promise.resolve({ items: structuredClone(this.items), resourceVersion: this.rv });
  }

  watch(
    resourceVersion: string,
    onEvent: (type: string, object: unknown) => void,
  ): Promise<WatchStream> {
    this.watchFrom.push(resourceVersion);
    const { promise, resolve } = Promise.withResolvers<unknown>();
    this.current = { emit: onEvent, end: resolve };
    return Promise.resolve({
      done: promise,
      abort: () => resolve(Object.assign(new Error("aborted"), { name: "AbortError" })),
    });
  }
}

Deno.test("informer: lists, applies watch events in order, and resumes from the last resourceVersion", async () => {
  const source = new ScriptedSource();
  source.items = [obj("a", "5", 1)];
  const informer = new Informer(source, { name: "t", resyncMs: 0, backoffInitialMs: 5 });
  const events: string[] = [];
  informer.subscribe((e) => events.push(`${e.type}:${e.object.metadata?.name}`));
  informer.start();
  try {
    await informer.synced();
    await eventually("watch", () => source.current !== null);
    assert.deepEqual(source.watchFrom, ["10"]);
    source.current!.emit("ADDED", obj("b", "11"));
    source.current!.emit("MODIFIED", obj("a", "12", 2));
    source.current!.emit("BOOKMARK", { metadata: { resourceVersion: "13" } });
    source.current!.emit("DELETED", obj("b", "14"));
    assert.deepEqual(events, ["added:a", "added:b", "updated:a", "deleted:b"]);
    assert.equal(informer.get("ns/a")?.value, 2);
    // The server ends the watch normally: resume from the bookmark's resourceVersion, no relist.
    const before = source.current!;
    before.end(null);
    await eventually("rewatch", () => source.watchFrom.length === 2);
    assert.deepEqual(source.watchFrom, ["10", "14"]);
    assert.equal(source.lists, 1);
  } finally {
    await informer.stop();
  }
});

Deno.test("informer: a 410 ERROR event relists and reports deletions missed meanwhile", async () => {
  const source = new ScriptedSource();
  source.items = [obj("a", "5"), obj("b", "6")];
  const informer = new Informer(source, { name: "t", resyncMs: 0, backoffInitialMs: 5 });
  const events: string[] = [];
  informer.subscribe((e) => events.push(`${e.type}:${e.object.metadata?.name}`));
  informer.start();
  try {
    await eventually("watch", () => source.current !== null);
    source.items = [obj("a", "20")];
    source.rv = "21";
    source.current!.emit("ERROR", {
      kind: "Status",
      code: 410,
      reason: "Expired",
      message: "too old resource version",
    });
    await eventually("relist", () => source.lists === 2 && source.watchFrom.length === 2);
    assert.equal(informer.stats.expired, 1);
    assert.deepEqual(source.watchFrom, ["10", "21"]);
    assert.ok(events.includes("deleted:b"));
    assert.ok(events.includes("updated:a"));
  } finally {
    await informer.stop();
  }
});

Deno.test("informer: errors back off and recover; a silent watch is restarted by the watchdog", async () => {
  const source = new ScriptedSource();
  source.listFailures = 3;
  const informer = new Informer(source, {
    name: "t",
    resyncMs: 0,
    backoffInitialMs: 20,
    backoffMaxMs: 40,
    staleAfterMs: 200,
  });
  informer.start();
  try {
    await informer.synced();
    assert.equal(informer.stats.errors, 3);
    assert.equal(source.lists, 4);
    await eventually("watch", () => source.current !== null);
    // No event, no bookmark: the watchdog aborts and the informer watches again from where it was.
    await eventually(
      "stale restart",
      () => informer.stats.stale >= 1 && source.watchFrom.length >= 2,
      3000,
    );
    assert.equal(source.watchFrom[1], "10");
  } finally {
    await informer.stop();
  }
});

Deno.test("informer: periodic resync re-delivers every object; a throwing handler does not stop others", async () => {
  const source = new ScriptedSource();
  source.items = [obj("a", "1"), obj("b", "2")];
  const informer = new Informer(source, { name: "t", resyncMs: 50 });
  const resynced = new Set<string>();
  informer.subscribe(() => {
    throw new Error("bad handler");
  });
  informer.subscribe((e) => e.type === "resync" && resynced.add(e.object.metadata!.name!));
  informer.start();
  try {
    await eventually("resync of both", () => resynced.size === 2, 2000);
  } finally {
    await informer.stop();
  }
});

Deno.test("backoffDelay: grows exponentially, stays within [ceiling/2, ceiling], never exceeds the cap", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 60 }),
      fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
      (attempt, r) => {
        const delay = backoffDelay(attempt, 100, 30_000, () => r);
        const ceiling = Math.min(30_000, 100 * 2 ** attempt);
        assert.ok(delay >= ceiling / 2 && delay <= ceiling);
      },
    ),
  );
  assert.equal(backoffDelay(0, 100, 30_000, () => 0), 50);
  assert.equal(backoffDelay(3, 100, 30_000, () => 1), 800);
});

Deno.test("informer: the transform reduces listed and watched objects before the cache stores them", async () => {
  const source = new ScriptedSource();
  source.items = [{ ...obj("a", "5", 1), bulky: "x".repeat(1000) } as Obj];
  const informer = new Informer<Obj>(source, {
    name: "t",
    resyncMs: 0,
    backoffInitialMs: 5,
    transform: (o) => {
      const { metadata, value } = o as Obj;
      return { metadata, value };
    },
  });
  const events: Obj[] = [];
  informer.subscribe((e) => events.push(e.object));
  informer.start();
  try {
    await informer.synced();
    await eventually("watch", () => source.current !== null);
    source.current!.emit("ADDED", { ...obj("b", "11", 2), bulky: "y" });
    source.current!.emit("DELETED", { ...obj("a", "12", 1), bulky: "z" });
    assert.deepEqual(informer.list(), [{ metadata: obj("b", "11").metadata, value: 2 }]);
    assert.ok(events.every((e) => !("bulky" in e)), "subscribers see what the cache holds");
  } finally {
    await informer.stop();
  }
});
