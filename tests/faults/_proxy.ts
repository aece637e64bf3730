/**
 * A TCP proxy that can stall: while stalled it accepts connections and keeps
 * every connection open but forwards no byte either way, as a black-holed
 * network path does (no RST, no FIN: clients see only silence until their own
 * timeouts). The fault campaign puts it between MBCAS and the API server.
 */

/** A running proxy from a loopback port to `127.0.0.1:targetPort`. */
export class StallProxy {
  readonly #listener: Deno.TcpListener;
  readonly #conns = new Set<Deno.Conn>();
  #gate: { promise: Promise<void>; resolve: () => void } | null = null;
  #closed = false;

  private constructor(readonly targetPort: number) {
    this.#listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.#accept();
  }

  /** Starts a proxy to `127.0.0.1:targetPort` on a free loopback port. */
  static start(targetPort: number): StallProxy {
    return new StallProxy(targetPort);
  }

  /** The proxy's own port. */
  get port(): number {
    return (this.#listener.addr as Deno.NetAddr).port;
  }

  /** Whether bytes are being held. */
  get stalled(): boolean {
    return this.#gate !== null;
  }

  /** Holds every byte from now on, on open and new connections alike. */
  stall(): void {
    if (this.#gate !== null) return;
    let resolve = () => {};
    const promise = new Promise<void>((r) => (resolve = r));
    this.#gate = { promise, resolve };
  }

  /** Forwards again, held bytes first. */
  resume(): void {
    const gate = this.#gate;
    this.#gate = null;
    gate?.resolve();
  }

  /** Closes the listener and every connection. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.resume();
    try {
      this.#listener.close();
    } catch { /* already closed */ }
    for (const conn of this.#conns) this.#closeConn(conn);
  }

  async #accept(): Promise<void> {
    while (!this.#closed) {
      let client: Deno.Conn;
      try {
        client = await this.#listener.accept();
      } catch {
        return; // closed
      }
      this.#serve(client);
    }
  }

  async #serve(client: Deno.Conn): Promise<void> {
    this.#conns.add(client);
    let upstream: Deno.Conn | null = null;
    try {
      await this.#gate?.promise;
      upstream = await Deno.connect({ hostname: "127.0.0.1", port: this.targetPort });
      this.#conns.add(upstream);
      await Promise.race([this.#pump(client, upstream), this.#pump(upstream, client)]);
    } catch {
      // A closed end: close the other.
    } finally {
      this.#closeConn(client);
      if (upstream !== null) this.#closeConn(upstream);
    }
  }

  async #pump(from: Deno.Conn, to: Deno.Conn): Promise<void> {
    const buffer = new Uint8Array(64 * 1024);
    while (true) {
      const n = await from.read(buffer);
      if (n === null) return;
      while (this.#gate !== null) await this.#gate.promise;
      let written = 0;
      while (written < n) written += await to.write(buffer.subarray(written, n));
    }
  }

  #closeConn(conn: Deno.Conn): void {
    this.#conns.delete(conn);
    try {
      conn.close();
    } catch { /* already closed */ }
  }
}
