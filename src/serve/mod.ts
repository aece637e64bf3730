/**
 * The HTTP endpoints agent and controller both serve — `/healthz`, `/readyz`
 * and Prometheus `/metrics` — waiting for a stop signal, and tracking the
 * progress of named loops so `/readyz` can reflect it.
 *
 * @module
 */
import { METRICS_CONTENT_TYPE, type Registry } from "../metrics/mod.ts";
export { ProgressTracker } from "./progress.ts";
export type { ProgressLog, ProgressStall, ProgressTrackerOptions } from "./progress.ts";

/**
 * The default bind address: every address of the pod, IPv6 and IPv4 (one
 * dual-stack socket), so probes and scrapes work on IPv4-only, dual-stack and
 * IPv6-only clusters alike. Where the kernel has no IPv6 at all,
 * {@link serveProbes} falls back to `0.0.0.0`.
 */
export const ANY_ADDRESS = "::";

/** Options of {@link serveProbes}. */
export interface ProbeServerOptions {
  /** Bind address ({@link ANY_ADDRESS}: all of them, IPv6 and IPv4). */
  hostname: string;
  /** Port (0: any free port). */
  port: number;
  /** Whether `/readyz` answers 200. */
  ready: () => boolean;
  /** What `/readyz` says when not ready (a function is evaluated per request). */
  notReadyMessage: string | (() => string);
  /** The metrics `/metrics` renders. */
  registry: Registry;
  /** Called with the address once listening. */
  onListen: (address: string) => void;
}

/**
 * Serves `/healthz`, `/readyz` and `/metrics`; anything else is 404. On
 * {@link ANY_ADDRESS} where the kernel has no IPv6 (the socket cannot be
 * made), it serves on `0.0.0.0` instead.
 */
export function serveProbes(options: ProbeServerOptions): Deno.HttpServer {
  try {
    return listen(options, options.hostname);
  } catch (error) {
    if (options.hostname !== ANY_ADDRESS || error instanceof Deno.errors.AddrInUse) throw error;
    return listen(options, "0.0.0.0");
  }
}

function listen(options: ProbeServerOptions, hostname: string): Deno.HttpServer {
  return Deno.serve({
    hostname,
    port: options.port,
    onListen: ({ hostname, port }) =>
      options.onListen(hostname.includes(":") ? `[${hostname}]:${port}` : `${hostname}:${port}`),
  }, (request) => {
    const path = new URL(request.url).pathname;
    if (path === "/healthz") return new Response("ok\n");
    if (path === "/readyz") {
      return options.ready()
        ? new Response("ok\n")
        : new Response(`${message(options.notReadyMessage)}\n`, { status: 503 });
    }
    if (path === "/metrics") {
      return new Response(options.registry.render(), {
        headers: { "content-type": METRICS_CONTENT_TYPE },
      });
    }
    return new Response("not found\n", { status: 404 });
  });
}

function message(m: string | (() => string)): string {
  return typeof m === "function" ? m() : m;
}

/** Resolves with the name of the first SIGINT or SIGTERM. */
export function stopSignal(): Promise<string> {
  const { promise, resolve } = Promise.withResolvers<string>();
  Deno.addSignalListener("SIGINT", () => resolve("SIGINT"));
  Deno.addSignalListener("SIGTERM", () => resolve("SIGTERM"));
  return promise;
}
