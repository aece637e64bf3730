/**
 * The probe and metrics server on the default bind address: one dual-stack
 * socket that IPv4 and IPv6 clients reach (IPv6-only clusters probe the pod's
 * IPv6 address). Loopback only; no cluster.
 */
import assert from "node:assert/strict";
import { Registry } from "../../src/metrics/mod.ts";
import { ANY_ADDRESS, serveProbes } from "../../src/serve/mod.ts";

Deno.test("probes: the default address serves /healthz to IPv4 and IPv6 clients; a port in use is an error", async () => {
  let address = "";
  const server = serveProbes({
    hostname: ANY_ADDRESS,
    port: 0,
    ready: () => false,
    notReadyMessage: "caches not synced",
    registry: new Registry(),
    onListen: (a) => (address = a),
  });
  try {
    const port = (server.addr as Deno.NetAddr).port;
    assert.equal(address, `[::]:${port}`);
    for (const host of ["127.0.0.1", "[::1]"]) {
      const healthz = await fetch(`http://${host}:${port}/healthz`);
      assert.equal(await healthz.text(), "ok\n", host);
      const readyz = await fetch(`http://${host}:${port}/readyz`);
      assert.equal(readyz.status, 503);
      assert.equal(await readyz.text(), "caches not synced\n");
    }
    // The IPv4 fallback is for kernels without IPv6, not for a port in use.
    assert.throws(
      () =>
        serveProbes({
          hostname: ANY_ADDRESS,
          port,
          ready: () => true,
          notReadyMessage: "",
          registry: new Registry(),
          onListen: () => {},
        }),
      Deno.errors.AddrInUse,
    );
  } finally {
    await server.shutdown();
  }
});
