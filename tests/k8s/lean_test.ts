/**
 * The lean API layer (src/k8s/lean/) against the real test bed API server:
 * credentials from kubeconfigs and a service-account directory, paginated
 * lists, watches that resume from a resourceVersion, 410 Gone and the
 * informer's relist, an API server restart ridden out, errors that carry the
 * HTTP status and the server's message, and a watch abort that never waits
 * on the connection; then timeouts against local servers that never answer.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  ApiError,
  errorMessage,
  Informer,
  type KubeObject,
  LeanClient,
  leanConfigFromDocument,
  leanConfigFromKubeConfig,
  leanSource,
  loadLeanConfig,
  RequestTimeoutError,
  statusCode,
} from "../../src/k8s/lean/mod.ts";
import { GROUP, PLURAL, VERSION } from "../../src/api/mod.ts";
import { applyManifests, MANIFESTS, startTestbed, waitForCrd } from "../../src/testbed/mod.ts";
import { eventually, kubeConfig } from "./_helpers.ts";
import { requireOrSkip, testbedMissing } from "../_support/requirements.ts";

const NS = "lean";
const CONFIGMAPS = `/api/v1/namespaces/${NS}/configmaps`;

type ConfigMap = KubeObject & { data?: Record<string, string> };

const configMap = (name: string, value = "1"): ConfigMap => ({
  metadata: { name, namespace: NS },
  data: { value },
});

const ALLOCATIONS = `/apis/${GROUP}/${VERSION}/namespaces/${NS}/${PLURAL}`;

const podAllocation = (name: string) => ({
  apiVersion: `${GROUP}/${VERSION}`,
  kind: "PodAllocation",
  metadata: { name, namespace: NS },
  spec: {
    podName: name,
    podUID: crypto.randomUUID(),
    nodeName: "node-a",
    containers: [{ name: "app", cpuLimit: "500m" }],
    market: { capacityMillicores: 1000, contended: false, computedAt: new Date().toISOString() },
  },
});

/** Rejects with what `call` threw, or fails when it succeeds. */
async function thrown(call: Promise<unknown>): Promise<unknown> {
  try {
    await call;
  } catch (error) {
    return error;
  }
  throw new Error("expected the call to fail, but it succeeded");
}

requireOrSkip(
  "lean API layer: lists, watches, errors and the informer against the test bed",
  testbedMissing(),
  async (t) => {
    const testbed = await startTestbed();
    const admin = new LeanClient(
      await loadLeanConfig({ kubeconfig: testbed.identities.admin.kubeconfig }),
    );
    try {
      await t.step("connects with a token, a client certificate or a KubeConfig", async () => {
        await admin.create("/api/v1/namespaces", { metadata: { name: NS } });
        const cert = new LeanClient(
          await loadLeanConfig({ kubeconfig: testbed.identities.certAdmin.kubeconfig }),
        );
        const fromKc = new LeanClient(
          leanConfigFromKubeConfig(kubeConfig(testbed.identities.agent.kubeconfig)),
        );
        try {
          const ns = await cert.get<KubeObject>(`/api/v1/namespaces/${NS}`);
          assert.equal(ns.metadata?.name, NS);
          const review = await fromKc.create<{ status: { userInfo: { username: string } } }>(
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            { apiVersion: "authentication.k8s.io/v1", kind: "SelfSubjectReview" },
          );
          assert.equal(
            review.status.userInfo.username,
            "system:serviceaccount:mbcas-system:mbcas-agent",
          );
        } finally {
          cert.close();
          fromKc.close();
        }
      });

      await t.step(
        "in a pod: the mounted service account's token (read again) and CA",
        async () => {
          const sa = await Deno.makeTempDir();
          const saved = ["KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"].map((k) =>
            [k, Deno.env.get(k)] as const
          );
          try {
            await Deno.writeTextFile(join(sa, "token"), testbed.identities.agent.token!);
            await Deno.copyFile(testbed.caFile, join(sa, "ca.crt"));
            Deno.env.set("KUBERNETES_SERVICE_HOST", "127.0.0.1");
            Deno.env.set("KUBERNETES_SERVICE_PORT", new URL(testbed.url).port);
            const config = await loadLeanConfig({
              serviceAccountDir: sa,
              inClusterHost: "127.0.0.1",
            });
            assert.equal(config.server, `https://127.0.0.1:${new URL(testbed.url).port}`);
            assert.equal(config.tokenFile, join(sa, "token"));
            assert.equal(config.token, undefined, "the token is read from the file, not kept");
            const client = new LeanClient(config);
            try {
              const review = await client.create<{ status: { userInfo: { username: string } } }>(
                "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                { apiVersion: "authentication.k8s.io/v1", kind: "SelfSubjectReview" },
              );
              assert.equal(
                review.status.userInfo.username,
                "system:serviceaccount:mbcas-system:mbcas-agent",
              );
            } finally {
              client.close();
            }
          } finally {
            for (const [k, v] of saved) v === undefined ? Deno.env.delete(k) : Deno.env.set(k, v);
            await Deno.remove(sa, { recursive: true });
          }
        },
      );

      await t.step("lists page by page with continue tokens, as one snapshot", async () => {
        for (let i = 0; i < 7; i++) await admin.create(CONFIGMAPS, configMap(`cm-${i}`));
        const page = await admin.request<{ items: ConfigMap[]; metadata: { continue?: string } }>(
          "GET",
          CONFIGMAPS,
          { query: { limit: 3 } },
        );
        assert.equal(page.items.length, 3);
        assert.ok(page.metadata.continue, "a first page of 3 of 7+ has a continue token");
        const all = await admin.listAll<ConfigMap>(CONFIGMAPS, { pageSize: 3 });
        const names = all.items.map((c) => c.metadata?.name).filter((n) => n?.startsWith("cm-"));
        assert.deepEqual(names, [0, 1, 2, 3, 4, 5, 6].map((i) => `cm-${i}`));
        assert.match(all.resourceVersion, /^\d+$/);
        // Selectors and the transform apply to every page.
        const selected = await admin.listAll<string>(CONFIGMAPS, {
          pageSize: 2,
          fieldSelector: "metadata.name=cm-5",
        }, (item) => (item as ConfigMap).metadata!.name!);
        assert.deepEqual(selected.items, ["cm-5"]);
      });

      await t.step(
        "a watch delivers events and resumes from the last resourceVersion",
        async () => {
          const list = await admin.listAll<ConfigMap>(CONFIGMAPS);
          const events: string[] = [];
          let last = list.resourceVersion;
          const onEvent = (type: string, object: unknown) => {
            const o = object as ConfigMap;
            if (o.metadata?.resourceVersion) last = o.metadata.resourceVersion;
            // (the controller manager adds kube-root-ca.crt to new namespaces at its own pace)
            if (o.metadata?.name?.startsWith("w-")) events.push(`${type}:${o.metadata.name}`);
          };
          const first = await admin.watch(
            CONFIGMAPS,
            { resourceVersion: list.resourceVersion, timeoutSeconds: 60 },
            onEvent,
          );
          await admin.create(CONFIGMAPS, configMap("w-1"));
          await admin.mergePatch(`${CONFIGMAPS}/w-1`, { data: { value: "2" } });
          await eventually("two events", () => events.length >= 2);
          first.abort();
          assert.equal(await first.done, null, "an aborted watch ends without an error");
          // Changes while no watch runs are not lost: the next watch starts where the last stopped.
          await admin.delete(`${CONFIGMAPS}/w-1`);
          await admin.create(CONFIGMAPS, configMap("w-2"));
          const second = await admin.watch(
            CONFIGMAPS,
            { resourceVersion: last, timeoutSeconds: 60 },
            onEvent,
          );
          try {
            await eventually("the missed events", () => events.length >= 4);
            assert.deepEqual(events, ["ADDED:w-1", "MODIFIED:w-1", "DELETED:w-1", "ADDED:w-2"]);
          } finally {
            second.abort();
          }
          // The server's own timeout ends a watch normally.
          const short = await admin.watch(
            CONFIGMAPS,
            { resourceVersion: last, timeoutSeconds: 1 },
            () => {},
          );
          assert.equal(await short.done, null);
        },
      );

      await t.step("aborting a live HTTP/2 watch settles at once (no hang on stop)", async () => {
        const list = await admin.listAll(CONFIGMAPS);
        const watches = await Promise.all(
          [1, 2, 3].map(() =>
            admin.watch(CONFIGMAPS, { resourceVersion: list.resourceVersion }, () => {})
          ),
        );
        const started = performance.now();
        for (const w of watches) w.abort();
        await Promise.all(watches.map((w) => w.done));
        // Without the abort they would end at the server's watch timeout (minutes); 2 s
        // leaves room for a loaded machine's pauses.
        const settledMs = performance.now() - started;
        assert.ok(settledMs < 2000, `aborts settle without waiting (${settledMs.toFixed(0)} ms)`);
        // The pooled connection still serves requests after the aborted streams.
        assert.ok((await admin.get<KubeObject>(`${CONFIGMAPS}/cm-0`)).metadata?.name);
      });

      await t.step("errors carry the HTTP status and the API server's message", async () => {
        const missing = await thrown(admin.get(`${CONFIGMAPS}/nope`));
        assert.ok(missing instanceof ApiError);
        assert.equal(statusCode(missing), 404);
        assert.equal(missing.reason, "NotFound");
        assert.equal(errorMessage(missing), `configmaps "nope" not found`);
        assert.match(missing.message, /^GET \/api\/v1\/namespaces\/lean\/configmaps\/nope: 404/);

        const exists = await thrown(admin.create(CONFIGMAPS, configMap("cm-0")));
        assert.equal(statusCode(exists), 409);
        assert.equal((exists as ApiError).reason, "AlreadyExists");

        const current = await admin.get<ConfigMap>(`${CONFIGMAPS}/cm-0`);
        await admin.replace(`${CONFIGMAPS}/cm-0`, { ...current, data: { value: "new" } });
        const stale = await thrown(
          admin.replace(`${CONFIGMAPS}/cm-0`, { ...current, data: { value: "stale" } }),
        );
        assert.equal(statusCode(stale), 409, "a replace from an old resourceVersion conflicts");
        assert.equal((stale as ApiError).reason, "Conflict");

        const invalid = await thrown(
          admin.create(CONFIGMAPS, { metadata: { name: "Not_Valid" }, data: {} }),
        );
        assert.equal(statusCode(invalid), 422);
        assert.match(errorMessage(invalid), /Not_Valid/);

        const nobody = new LeanClient(
          await loadLeanConfig({ kubeconfig: testbed.identities.nobody.kubeconfig }),
        );
        try {
          const forbidden = await thrown(nobody.listAll(CONFIGMAPS));
          assert.equal(statusCode(forbidden), 403);
          assert.match(errorMessage(forbidden), /mbcas-nobody.*cannot list/);
          const refused = await thrown(nobody.watch(CONFIGMAPS, {}, () => {}));
          assert.equal(statusCode(refused), 403, "a refused watch throws before any event");
        } finally {
          nobody.close();
        }
        const bad = new LeanClient({
          server: testbed.url,
          caCert: await Deno.readTextFile(testbed.caFile),
          token: "wrong",
        });
        try {
          assert.equal(statusCode(await thrown(bad.get("/api/v1/namespaces"))), 401);
        } finally {
          bad.close();
        }
      });

      await t.step(
        "an informer over leanSource relists on 410 Gone and rides out an API server restart",
        async () => {
          // A custom resource: its watch cache starts after resourceVersion 1, which is then 410 Gone.
          const kc = kubeConfig(testbed.identities.admin.kubeconfig);
          await applyManifests(kc, [MANIFESTS.crd]);
          await waitForCrd(kc, `${PLURAL}.${GROUP}`);
          for (let i = 0; i < 5; i++) await admin.create(ALLOCATIONS, podAllocation(`pa-${i}`));
          const informer = new Informer<KubeObject>(
            leanSource(admin, { path: ALLOCATIONS, pageSize: 2 }),
            {
              name: "lean",
              initialResourceVersion: "1",
              backoffInitialMs: 100,
              backoffMaxMs: 1000,
              resyncMs: 0,
            },
          );
          const seen: string[] = [];
          informer.subscribe((e) => seen.push(`${e.type}:${e.object.metadata?.name}`));
          informer.start();
          try {
            await eventually(
              "relist after 410",
              () => informer.stats.expired >= 1 && informer.hasSynced,
            );
            assert.equal(informer.stats.lists, 1);
            assert.equal(informer.list().length, 5, "every page's objects are cached");

            await testbed.stopApiserver();
            await new Promise((r) => setTimeout(r, 1500));
            await testbed.startApiserver();
            await eventually(
              "created after the restart",
              async () => {
                try {
                  await admin.create(ALLOCATIONS, podAllocation("after-restart"));
                  return true;
                } catch (error) {
                  return statusCode(error) === 409;
                }
              },
              30_000,
            );
            await eventually(
              "event after restart",
              () => informer.get(`${NS}/after-restart`) !== undefined,
              30_000,
            );
            assert.ok(informer.stats.errors >= 1 || informer.stats.watches >= 3);
            await admin.delete(`${ALLOCATIONS}/after-restart`);
            await eventually(
              "delete seen",
              () => informer.get(`${NS}/after-restart`) === undefined,
            );
            assert.ok(seen.includes("deleted:after-restart"));
          } finally {
            const stopping = performance.now();
            await informer.stop();
            assert.ok(performance.now() - stopping < 1000, "stop does not wait on the watch");
          }
        },
      );
    } finally {
      admin.close();
      await testbed.stop();
    }
  },
);

/** A server whose every request waits until the test ends; `headersOnly` answers 200 and never ends the body. */
function blackHole(headersOnly = false) {
  const release = Promise.withResolvers<void>();
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async () => {
    if (headersOnly) {
      const body = new ReadableStream<Uint8Array>({
        async start(controller) {
          await release.promise;
          controller.close();
        },
      });
      return new Response(body, { headers: { "Content-Type": "application/json" } });
    }
    await release.promise;
    return new Response("{}");
  });
  return {
    client: new LeanClient({ server: `http://127.0.0.1:${server.addr.port}` }, { timeoutMs: 200 }),
    async close() {
      this.client.close();
      release.resolve();
      await server.shutdown();
    },
  };
}

Deno.test("lean client: every request and watch is bounded in time", async (t) => {
  await t.step("a request that gets no answer fails with a RequestTimeoutError", async () => {
    const hole = blackHole();
    try {
      const started = performance.now();
      const error = await thrown(hole.client.get("/api/v1/pods"));
      assert.ok(error instanceof RequestTimeoutError, String(error));
      assert.equal(error.message, "GET /api/v1/pods timed out after 200 ms");
      assert.ok(performance.now() - started < 2000);
      const zero = await thrown(hole.client.request("PATCH", "/x", { timeoutMs: 0 }));
      assert.equal((zero as Error).message, "PATCH /x not sent: no time left before its deadline");
    } finally {
      await hole.close();
    }
  });

  await t.step("a response whose body never ends times out too", async () => {
    const hole = blackHole(true);
    try {
      const error = await thrown(hole.client.listAll("/api/v1/pods"));
      assert.ok(error instanceof RequestTimeoutError, String(error));
    } finally {
      await hole.close();
    }
  });

  await t.step("a watch with no response within its connect timeout fails", async () => {
    const hole = blackHole();
    try {
      const error = await thrown(
        hole.client.watch("/api/v1/pods", { connectTimeoutMs: 150 }, () => {}),
      );
      assert.ok(error instanceof RequestTimeoutError, String(error));
      const source = leanSource(hole.client, { path: "/api/v1/pods", connectTimeoutMs: 150 });
      assert.ok((await thrown(source.watch("5", () => {}))) instanceof RequestTimeoutError);
      assert.match(
        String(await thrown(leanSource(hole.client, { path: "/p", listTimeoutMs: 100 }).list())),
        /timed out/,
      );
    } finally {
      await hole.close();
    }
  });

  await t.step("a watch open past its server timeout plus grace ends with an error", async () => {
    const hole = blackHole(true);
    try {
      const source = leanSource(hole.client, {
        path: "/api/v1/pods",
        watchTimeoutSeconds: 1,
        watchGraceMs: 100,
      });
      const stream = await source.watch("5", () => {});
      const ended = await stream.done;
      assert.match(String(ended), /still open 100 ms after its 1 s server timeout/);
    } finally {
      await hole.close();
    }
  });
});

Deno.test("lean config: kubeconfig documents, relative files, and what is not supported", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(join(dir, "ca.crt"), "CA PEM");
    await Deno.writeTextFile(join(dir, "token"), "secret\n");
    const doc = {
      "current-context": "a",
      clusters: [{
        name: "c",
        cluster: { server: "https://h:6443/", "certificate-authority": "ca.crt" },
      }],
      users: [
        { name: "u", user: { tokenFile: "token" } },
        {
          name: "d",
          user: { "client-certificate-data": btoa("CERT"), "client-key-data": btoa("KEY") },
        },
        { name: "e", user: { exec: { command: "aws" } } },
      ],
      contexts: [
        { name: "a", context: { cluster: "c", user: "u" } },
        { name: "b", context: { cluster: "c", user: "d" } },
        { name: "x", context: { cluster: "c", user: "e" } },
        { name: "none", context: { cluster: "missing", user: "u" } },
      ],
    };
    const path = join(dir, "config");
    assert.deepEqual(leanConfigFromDocument(doc, path), {
      server: "https://h:6443",
      caCert: "CA PEM",
      clientCert: undefined,
      clientKey: undefined,
      tokenFile: join(dir, "token"),
    });
    const b = leanConfigFromDocument(doc, path, "b");
    assert.equal(b.clientCert, "CERT");
    assert.equal(b.clientKey, "KEY");
    assert.throws(() => leanConfigFromDocument(doc, path, "x"), /authenticates with exec/);
    assert.throws(() => leanConfigFromDocument(doc, path, "y"), /has no context "y"/);
    assert.throws(() => leanConfigFromDocument(doc, path, "none"), /names no cluster/);
    await Deno.writeTextFile(
      path,
      "apiVersion: v1\nkind: Config\ncurrent-context: a\nclusters:\n- name: c\n  cluster:\n    server: https://h:6443\n    insecure-skip-tls-verify: true\nusers:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: a\n  context:\n    cluster: c\n    user: u\n",
    );
    await assert.rejects(loadLeanConfig({ kubeconfig: path }), /insecure-skip-tls-verify/);
    await assert.rejects(
      loadLeanConfig({ kubeconfig: join(dir, "absent") }),
      /kubeconfig .*absent does not exist/,
    );
    await Deno.writeTextFile(path, "clusters: [unclosed");
    await assert.rejects(loadLeanConfig({ kubeconfig: path }), /could not be read/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("lean config: a JSON kubeconfig is read without loading js-yaml, a YAML one with it", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // npm modules that must not load map to modules that throw when they do.
    await Deno.writeTextFile(
      join(dir, "deno.json"),
      JSON.stringify({
        imports: {
          "js-yaml": "data:text/javascript,throw new Error('js-yaml was loaded')",
          "@kubernetes/client-node":
            "data:text/javascript,throw new Error('client-node was loaded')",
        },
      }),
    );
    const document = {
      "current-context": "a",
      clusters: [{
        name: "c",
        cluster: { server: "https://h:6443", "certificate-authority-data": btoa("CA") },
      }],
      users: [{ name: "u", user: { token: "t" } }],
      contexts: [{ name: "a", context: { cluster: "c", user: "u" } }],
    };
    await Deno.writeTextFile(join(dir, "config.json"), JSON.stringify(document, null, 2));
    // Valid YAML that is not JSON, though it starts like it: a flow mapping with plain keys.
    await Deno.writeTextFile(join(dir, "flow.yaml"), "{current-context: a}");
    await Deno.writeTextFile(join(dir, "config.yaml"), "current-context: a\n");
    const mod = new URL("../../src/k8s/lean/mod.ts", import.meta.url).href;
    await Deno.writeTextFile(
      join(dir, "read.ts"),
      `import { loadLeanConfig } from ${JSON.stringify(mod)};
for (const name of ["config.json", "flow.yaml", "config.yaml"]) {
  try {
    console.log(JSON.stringify(await loadLeanConfig({ kubeconfig: ${
        JSON.stringify(dir)
      } + "/" + name })));
  } catch (error) {
    console.log(JSON.stringify({ error: (error as Error).message }));
  }
}`,
    );
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-prompt", "-A", "--config", join(dir, "deno.json"), join(dir, "read.ts")],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, stderr);
    const [json, flow, yaml] = new TextDecoder().decode(out.stdout).trim().split("\n").map((l) =>
      JSON.parse(l)
    );
    assert.deepEqual(json, { server: "https://h:6443", caCert: "CA", token: "t" });
    assert.match(flow.error, /flow\.yaml could not be read: js-yaml was loaded/, "not JSON: YAML");
    assert.match(yaml.error, /config\.yaml could not be read: js-yaml was loaded/);
    // In process, with the real js-yaml: the same document as YAML, the same connection.
    await Deno.writeTextFile(
      join(dir, "config.yaml"),
      `current-context: a\nclusters:\n- name: c\n  cluster:\n    server: https://h:6443\n    certificate-authority-data: ${
        btoa("CA")
      }\nusers:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: a\n  context:\n    cluster: c\n    user: u\n`,
    );
    assert.deepEqual(
      await loadLeanConfig({ kubeconfig: join(dir, "config.json") }),
      await loadLeanConfig({ kubeconfig: join(dir, "config.yaml") }),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
