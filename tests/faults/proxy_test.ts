/**
 * The fault campaign's stalling proxy against a local echo server: bytes flow
 * while it forwards; while stalled nothing comes back and the connection stays
 * open (no EOF, no reset), new connections included; on resume the held bytes
 * arrive. Loopback only; no cluster.
 */
import assert from "node:assert/strict";
import { StallProxy } from "./_proxy.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** An echo server on a free loopback port. */
function echoServer(): { port: number; close: () => void } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns: Deno.Conn[] = [];
  (async () => {
    for await (const conn of listener) {
      conns.push(conn);
      conn.readable.pipeTo(conn.writable).catch(() => {});
    }
  })().catch(() => {});
  return {
    port: (listener.addr as Deno.NetAddr).port,
    close: () => {
      listener.close();
      for (const c of conns) {
        try {
          c.close();
        } catch { /* closed */ }
      }
    },
  };
}

/** Reads what arrives within `ms`: the text, or null for silence. */
async function readWithin(
  conn: Deno.Conn,
  ms: number,
  pending: { read?: Promise<number | null> },
  buffer: Uint8Array,
): Promise<string | null> {
  pending.read ??= conn.read(buffer);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const silence = new Promise<"silence">((r) => (timer = setTimeout(() => r("silence"), ms)));
  const n = await Promise.race([pending.read, silence]);
  clearTimeout(timer);
  if (n === "silence") return null;
  pending.read = undefined;
  if (n === null) return "EOF";
  return decoder.decode(buffer.subarray(0, n));
}

Deno.test("stall proxy: forwards, holds every byte while stalled with connections open, then delivers", async () => {
  const echo = echoServer();
  const proxy = StallProxy.start(echo.port);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: proxy.port });
  const buffer = new Uint8Array(1024);
  const pending: { read?: Promise<number | null> } = {};
  try {
    await conn.write(encoder.encode("one"));
    assert.equal(await readWithin(conn, 5000, pending, buffer), "one");

    proxy.stall();
    assert.ok(proxy.stalled);
    await conn.write(encoder.encode("two"));
    assert.equal(await readWithin(conn, 500, pending, buffer), null, "nothing comes back, no EOF");
    // A new connection is accepted but goes nowhere either.
    const late = await Deno.connect({ hostname: "127.0.0.1", port: proxy.port });
    const latePending: { read?: Promise<number | null> } = {};
    const lateBuffer = new Uint8Array(1024);
    await late.write(encoder.encode("three"));
    assert.equal(await readWithin(late, 300, latePending, lateBuffer), null);

    proxy.resume();
    assert.equal(await readWithin(conn, 5000, pending, buffer), "two");
    assert.equal(await readWithin(late, 5000, latePending, lateBuffer), "three");
    late.close();
  } finally {
    conn.close();
    proxy.close();
    echo.close();
  }
});
