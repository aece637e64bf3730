/**
 * Every API request and watch is bounded in time: makeApiClient's request
 * timeout (Deno fetch path and client-node's skip-TLS path) and kubeSource's
 * list, connect and overdue-watch guards, against local servers that never
 * answer (no API server needed).
 */
import assert from "node:assert/strict";
import * as k8s from "@kubernetes/client-node";
import {
  Informer,
  kubeSource,
  type ListResult,
  makeApiClient,
  type WatchStream,
} from "../../src/k8s/mod.ts";
import { RequestTimeoutError } from "../../src/k8s/transport.ts";
import { eventually } from "./_helpers.ts";

/** A CA and a server certificate for 127.0.0.1 (Deno's fetch verifies TLS). */
async function certificates(): Promise<{ ca: string; cert: string; key: string }> {
  const dir = await Deno.makeTempDir();
  const run = async (...args: string[]) => {
    const out = await new Deno.Command("openssl", { args, cwd: dir, stderr: "piped" }).output();
    if (!out.success) throw new Error(new TextDecoder().decode(out.stderr));
  };
  try {
    const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    await run("req", "-x509", ...ec, "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=t-ca");
    await run("req", ...ec, "-keyout", "s.key", "-out", "s.csr", "-subj", "/CN=127.0.0.1");
    await Deno.writeTextFile(`${dir}/ext`, "subjectAltName=IP:127.0.0.1\n");
    await run(
      "x509",
      "-req",
      "-in",
      "s.csr",
      "-CA",
      "ca.crt",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-days",
      "1",
      "-extfile",
      "ext",
      "-out",
      "s.crt",
    );
    const read = (f: string) => Deno.readTextFile(`${dir}/${f}`);
    return { ca: await read("ca.crt"), cert: await read("s.crt"), key: await read("s.key") };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** A server whose every request waits until the test ends (or `respond` answers it). */
function blackHole(tls?: { cert: string; key: string }) {
  const release = Promise.withResolvers<void>();
  const paths: string[] = [];
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    onListen: () => {},
    ...(tls ?? {}),
  }, async (request) => {
    paths.push(new URL(request.url).pathname);
    await release.promise;
    return new Response("{}");
  });
  return {
    port: server.addr.port,
    paths,
    async close() {
      release.resolve();
      await server.shutdown();
    },
  };
}

function kubeConfigFor(server: string, options: { ca?: string; skipTLSVerify?: boolean }) {
  const kc = new k8s.KubeConfig();
  kc.loadFromOptions({
    clusters: [{
      name: "c",
      server,
      skipTLSVerify: options.skipTLSVerify ?? false,
      ...(options.ca ? { caData: btoa(options.ca) } : {}),
    }],
    users: [{ name: "u", token: "t" }],
    contexts: [{ name: "x", cluster: "c", user: "u" }],
    currentContext: "x",
  });
  return kc;
}

const openssl = await new Deno.Command("openssl", { args: ["version"], stdout: "null" }).output()
  .then((o) => o.success, () => false);

Deno.test({
  name: "transport: a request that gets no answer rejects with a timeout naming method and path",
  ignore: !openssl,
  fn: async () => {
    const tls = await certificates();
    const server = blackHole(tls);
    try {
      const kc = kubeConfigFor(`https://127.0.0.1:${server.port}`, { ca: tls.ca });
      let evaluated = 0;
      const core = makeApiClient(kc, k8s.CoreV1Api, { timeoutMs: () => (++evaluated, 200) });
      const started = performance.now();
      await assert.rejects(
        core.listNode(),
        (e: Error) =>
          e instanceof RequestTimeoutError && /^GET \/api\/v1\/nodes timed out after 200 ms$/
            .test(e.message),
      );
      assert.ok(performance.now() - started < 5_000);
      await assert.rejects(core.readNamespace({ name: "x" }), /GET \/api\/v1\/namespaces\/x/);
      assert.equal(evaluated, 2, "a function timeout is evaluated per request");
      // No time left: fails at once, nothing is sent.
      const fenced = makeApiClient(kc, k8s.CoreV1Api, { timeoutMs: 0 });
      const before = server.paths.length;
      await assert.rejects(
        fenced.deleteNamespace({ name: "x" }),
        /DELETE \/api\/v1\/namespaces\/x not sent: no time left before its deadline/,
      );
      assert.equal(server.paths.length, before);
    } finally {
      await server.close();
    }
  },
});

Deno.test({
  name: "transport: the skip-TLS-verify path (client-node's transport) times out too",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const server = blackHole();
    try {
      const kc = kubeConfigFor(`http://127.0.0.1:${server.port}`, { skipTLSVerify: true });
      const core = makeApiClient(kc, k8s.CoreV1Api, { timeoutMs: 200 });
      await assert.rejects(
        core.listNamespacedPod({ namespace: "ns" }),
        (e: Error) =>
          e instanceof RequestTimeoutError &&
          e.message === "GET /api/v1/namespaces/ns/pods timed out after 200 ms",
      );
    } finally {
      await server.close();
    }
  },
});

Deno.test("kubeSource: a list that never completes fails after listTimeoutMs", async () => {
  const kc = kubeConfigFor("http://127.0.0.1:1", { skipTLSVerify: true });
  const source = kubeSource(kc, {
    path: "/api/v1/pods",
    list: () => new Promise<ListResult<k8s.V1Pod>>(() => {}),
    listTimeoutMs: 100,
  });
  await assert.rejects(source.list(), /list \/api\/v1\/pods timed out after 100 ms/);
});

Deno.test({
  name: "kubeSource: a watch that gets no response fails after connectTimeoutMs",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const server = blackHole();
    try {
      const kc = kubeConfigFor(`http://127.0.0.1:${server.port}`, { skipTLSVerify: true });
      const source = kubeSource(kc, {
        path: "/api/v1/pods",
        list: () => Promise.resolve({ items: [], resourceVersion: "1" }),
        connectTimeoutMs: 200,
      });
      await assert.rejects(
        source.watch("1", () => {}),
        /watch \/api\/v1\/pods got no response within 200 ms/,
      );
    } finally {
      await server.close();
    }
  },
});

Deno.test({
  name:
    "kubeSource: a black-holed watch is ended past its server timeout, and the informer watches again",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    // Answers 200 with a bookmark, then nothing: a connection that went dark.
    const streams: ReadableStreamDefaultController<Uint8Array>[] = [];
    const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, () => {
      const body = new ReadableStream<Uint8Array>({
        start(c) {
          streams.push(c);
          c.enqueue(
            new TextEncoder().encode(
              JSON.stringify({ type: "BOOKMARK", object: { metadata: { resourceVersion: "7" } } }) +
                "\n",
            ),
          );
        },
      });
      return new Response(body, { headers: { "content-type": "application/json" } });
    });
    const kc = kubeConfigFor(`http://127.0.0.1:${server.addr.port}`, { skipTLSVerify: true });
    const source = kubeSource<k8s.V1Pod>(kc, {
      path: "/api/v1/pods",
      list: () => Promise.resolve({ items: [], resourceVersion: "5" }),
      watchTimeoutSeconds: 0,
      watchGraceMs: 300,
    });
    try {
      const types: string[] = [];
      const stream: WatchStream = await source.watch("5", (type) => types.push(type));
      const ended = await stream.done;
      assert.match(String(ended), /watch \/api\/v1\/pods still open 300 ms after its 0 s/);
      assert.deepEqual(types, ["BOOKMARK"]);

      const informer = new Informer(source, {
        name: "t",
        resyncMs: 0,
        backoffInitialMs: 10,
        backoffMaxMs: 20,
      });
      informer.start();
      try {
        await eventually("watch restarted", () => informer.stats.watches >= 2, 5_000);
        assert.ok(informer.stats.errors >= 1);
        assert.equal(informer.stats.lists, 1, "resumes from the bookmark, no relist");
      } finally {
        await informer.stop();
      }
    } finally {
      for (const c of streams) {
        try {
          c.close();
        } catch { /* already closed */ }
      }
      await server.shutdown();
    }
  },
});
