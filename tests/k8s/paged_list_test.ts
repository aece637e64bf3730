/** `pagedList`: lists in pages (limit/continue) until the last, against a scripted source and the test bed's API server. */
import assert from "node:assert/strict";
import * as k8s from "@kubernetes/client-node";
import { kubeSource, makeApiClient, pagedList } from "../../src/k8s/mod.ts";
import { startTestbed } from "../../src/testbed/mod.ts";
import { requireOrSkip, testbedMissing } from "../_support/requirements.ts";

Deno.test("pagedList: follows continue tokens, transforms page by page, keeps the first page's resourceVersion", async () => {
  const pages = [
    { items: [{ n: 1 }, { n: 2 }], metadata: { resourceVersion: "7", _continue: "t1" } },
    { items: [{ n: 3 }, { n: 4 }], metadata: { resourceVersion: "7", continue: "t2" } },
    { items: [{ n: 5 }], metadata: { resourceVersion: "7" } },
  ];
  const asked: { limit: number; _continue?: string }[] = [];
  const list = pagedList((page) => {
    asked.push(page);
    return Promise.resolve(pages[asked.length - 1]);
  }, { pageSize: 2, transform: (item) => (item as { n: number }).n * 10 });
  assert.deepEqual(await list(), { items: [10, 20, 30, 40, 50], resourceVersion: "7" });
  assert.deepEqual(asked, [{ limit: 2 }, { limit: 2, _continue: "t1" }, {
    limit: 2,
    _continue: "t2",
  }]);
});

Deno.test("pagedList: a failing page fails the whole list", async () => {
  let calls = 0;
  const list = pagedList(() => {
    calls++;
    return calls === 1
      ? Promise.resolve({ items: [1], metadata: { resourceVersion: "1", _continue: "t" } })
      : Promise.reject(new Error("410 continue token expired"));
  });
  await assert.rejects(list(), /expired/);
});

Deno.test("pagedList under kubeSource with listTimeoutMs Infinity: a list longer than a page's bound completes page by page", async () => {
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  let calls = 0;
  const list = pagedList(async () => {
    calls++;
    await sleep(40);
    return { items: [calls], metadata: { resourceVersion: "3", _continue: calls < 6 ? "t" : "" } };
  }, { pageTimeoutMs: 150 });
  const source = kubeSource(new k8s.KubeConfig(), {
    path: "/api/v1/pods",
    list,
    listTimeoutMs: Infinity,
  });
  const started = performance.now();
  const result = await source.list();
  assert.deepEqual(result, { items: [1, 2, 3, 4, 5, 6], resourceVersion: "3" });
  assert.ok(performance.now() - started > 150, "the whole list took longer than one page's bound");
});

Deno.test("pagedList: a page that does not arrive within pageTimeoutMs fails the list, naming how far it got", async () => {
  let calls = 0;
  const list = pagedList(() => {
    calls++;
    return calls === 1
      ? Promise.resolve({ items: [1, 2], metadata: { resourceVersion: "1", _continue: "t" } })
      : new Promise<never>(() => {});
  }, { pageTimeoutMs: 100 });
  await assert.rejects(list(), /a page of the list \(after 2 objects\) timed out after 100 ms/);
});

requireOrSkip(
  "pagedList: every object of a real API server's list, in pages (test bed)",
  testbedMissing(),
  async () => {
    const testbed = await startTestbed({});
    try {
      const kc = new k8s.KubeConfig();
      kc.loadFromFile(testbed.identities.admin.kubeconfig);
      const core = makeApiClient(kc, k8s.CoreV1Api);
      const names = Array.from({ length: 7 }, (_, i) => `paged-${i}`);
      for (const name of names) {
        await core.createNamespacedConfigMap({
          namespace: "default",
          body: { metadata: { name }, data: { v: name } },
        });
      }
      let pagesAsked = 0;
      const list = pagedList(
        (page) => {
          pagesAsked++;
          return core.listNamespacedConfigMap({ namespace: "default", ...page });
        },
        { pageSize: 3, transform: (item) => (item as k8s.V1ConfigMap).metadata!.name! },
      );
      const { items, resourceVersion } = await list();
      assert.deepEqual(items.filter((n) => n.startsWith("paged-")).sort(), names);
      assert.ok(pagesAsked >= 3, `${pagesAsked} pages of 3 for at least 7 objects`);
      assert.match(resourceVersion, /^\d+$/);
    } finally {
      await testbed.stop();
    }
  },
);
