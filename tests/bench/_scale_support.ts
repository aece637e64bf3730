/**
 * Plumbing of `deno task bench:scale`: a lean REST client and list-and-watch
 * loop on Deno's `fetch` (the benchmark shares two cores with everything it
 * measures, so it stays cheap), a bounded pool, per-process CPU and RSS from
 * `/proc`, and an incremental reader of the API server's audit log.
 *
 * @module
 */

/** An API error with its HTTP status. */
export class ApiError extends Error {
  /** The HTTP status. */
  readonly status: number;
  /** Creates the error. */
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

/** A minimal client of one API server and identity, over one pooled HTTP/2 connection. */
export class Api {
  readonly #url: string;
  readonly #token: string;
  readonly #client: Deno.HttpClient;

  /** Creates the client. */
  constructor(url: string, token: string, caPem: string) {
    this.#url = url;
    this.#token = token;
    this.#client = Deno.createHttpClient({ caCerts: [caPem] });
  }

  /** Sends a request; resolves to the parsed JSON answer; throws {@link ApiError} on a non-2xx status. */
  async request<T = Record<string, unknown>>(
    method: string,
    path: string,
    body?: unknown,
    contentType = "application/json",
  ): Promise<T> {
    const response = await fetch(`${this.#url}${path}`, {
      method,
      client: this.#client,
      headers: {
        authorization: `Bearer ${this.#token}`,
        accept: "application/json",
        ...(body === undefined ? {} : { "content-type": contentType }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    if (!response.ok) {
      throw new ApiError(response.status, `${method} ${path}: ${response.status} ${text}`);
    }
    return JSON.parse(text) as T;
  }

  /** Opens a streaming GET (a watch); the caller reads and cancels the body. */
  stream(path: string, signal: AbortSignal): Promise<Response> {
    return fetch(`${this.#url}${path}`, {
      client: this.#client,
      signal,
      headers: { authorization: `Bearer ${this.#token}`, accept: "application/json" },
    });
  }

  /** Closes the connection pool. */
  close(): void {
    this.#client.close();
  }
}

/** Runs `task(0..count-1)` with at most `concurrency` in flight; resolves when all are done, rejects on the first failure. */
export async function pool(
  count: number,
  concurrency: number,
  task: (index: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  let failed: unknown = null;
  const worker = async () => {
    while (failed === null && next < count) {
      const i = next++;
      try {
        await task(i);
      } catch (error) {
        failed ??= error;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  if (failed !== null) throw failed;
}

/** Retries `fn` on 409/429/5xx and connection errors, up to `attempts` times with a short backoff. */
export async function retrying<T>(fn: () => Promise<T>, attempts = 8): Promise<T> {
  for (let k = 0;; k++) {
    try {
      return await fn();
    } catch (error) {
      const status = error instanceof ApiError ? error.status : 0;
      const retriable = status === 0 || status === 409 || status === 429 || status >= 500;
      if (!retriable || k + 1 >= attempts) throw error;
      await new Promise((r) => setTimeout(r, 200 * 2 ** k));
    }
  }
}

/** One event of a {@link Watcher}: `SYNC` for every object of a (re)list. */
export type WatchEventType = "SYNC" | "ADDED" | "MODIFIED" | "DELETED";

/**
 * A list-and-watch loop over one collection: a paginated list, then a watch
 * from its resourceVersion with bookmarks; when the watch ends or fails (an
 * API server restart), it resumes from the last resourceVersion, or lists
 * again after 410 Gone or an error. Objects pass through `transform` and are
 * kept by `namespace/name`.
 */
export class Watcher<T> {
  /** The objects, by `namespace/name`. */
  readonly objects = new Map<string, T>();
  readonly #api: Api;
  readonly #path: string;
  readonly #query: string;
  readonly #transform: (object: Record<string, unknown>) => T;
  readonly #onEvent: (type: WatchEventType, key: string, object: T) => void;
  readonly #abort = new AbortController();
  #synced = Promise.withResolvers<void>();
  #resourceVersion = "";
  #done: Promise<void> | null = null;

  /** Creates the watcher; call {@link Watcher.start}. */
  constructor(
    api: Api,
    path: string,
    query: Record<string, string>,
    transform: (object: Record<string, unknown>) => T,
    onEvent: (type: WatchEventType, key: string, object: T) => void = () => {},
  ) {
    this.#api = api;
    this.#path = path;
    this.#query = new URLSearchParams(query).toString();
    this.#transform = transform;
    this.#onEvent = onEvent;
  }

  /** Resolves once the first list is complete. */
  synced(): Promise<void> {
    return this.#synced.promise;
  }

  /** Starts the loop. */
  start(): void {
    this.#done = this.#loop();
  }

  /** Stops the loop and waits for it. */
  async stop(): Promise<void> {
    this.#abort.abort();
    await this.#done;
  }

  async #list(): Promise<string> {
    const seen = new Set<string>();
    let token = "";
    let resourceVersion = "";
    do {
      const page = await this.#api.request<
        {
          items: Record<string, unknown>[];
          metadata: { resourceVersion: string; continue?: string };
        }
      >(
        "GET",
        `${this.#path}?${this.#query}&limit=500${
          token ? `&continue=${encodeURIComponent(token)}` : ""
        }`,
      );
      for (const item of page.items) {
        const key = keyOf(item);
        const object = this.#transform(item);
        seen.add(key);
        this.objects.set(key, object);
        this.#onEvent("SYNC", key, object);
      }
      token = page.metadata.continue ?? "";
      resourceVersion = page.metadata.resourceVersion;
    } while (token !== "");
    for (const key of [...this.objects.keys()]) if (!seen.has(key)) this.objects.delete(key);
    return resourceVersion;
  }

  async #loop(): Promise<void> {
    while (!this.#abort.signal.aborted) {
      try {
        if (this.#resourceVersion === "") {
          this.#resourceVersion = await this.#list();
          this.#synced.resolve();
        }
        await this.#watch();
      } catch (error) {
        if (this.#abort.signal.aborted) return;
        if (error instanceof ApiError && error.status === 410) {
          this.#resourceVersion = ""; // too old: list again
          continue;
        }
        await new Promise((r) => setTimeout(r, 500)); // an error (the API server is away): resume
      }
    }
  }

  /** Watches from the last resourceVersion until the stream ends, keeping it current. */
  async #watch(): Promise<void> {
    const response = await this.#api.stream(
      `${this.#path}?${this.#query}&watch=1&allowWatchBookmarks=true&timeoutSeconds=3600&resourceVersion=${this.#resourceVersion}`,
      this.#abort.signal,
    );
    if (!response.ok) throw new ApiError(response.status, await response.text());
    let buffer = "";
    for await (const chunk of response.body!.pipeThrough(new TextDecoderStream())) {
      buffer += chunk;
      let newline: number;
      while ((newline = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, newline);
        buffer = buffer.slice(newline + 1);
        if (line.trim() === "") continue;
        const event = JSON.parse(line) as { type: string; object: Record<string, unknown> };
        if (event.type === "ERROR") {
          await response.body?.cancel().catch(() => {});
          throw new ApiError(Number(event.object.code ?? 500), JSON.stringify(event.object));
        }
        const meta = event.object.metadata as { resourceVersion?: string } | undefined;
        if (meta?.resourceVersion) this.#resourceVersion = meta.resourceVersion;
        if (event.type === "BOOKMARK") continue;
        const key = keyOf(event.object);
        const object = this.#transform(event.object);
        if (event.type === "DELETED") this.objects.delete(key);
        else this.objects.set(key, object);
        this.#onEvent(event.type as WatchEventType, key, object);
      }
    }
  }
}

function keyOf(object: Record<string, unknown>): string {
  const meta = object.metadata as { namespace?: string; name?: string };
  return meta.namespace ? `${meta.namespace}/${meta.name}` : `${meta.name}`;
}

/** Clock ticks per second of `/proc/<pid>/stat` (`getconf CLK_TCK`, almost always 100). */
export const CLOCK_TICKS = (() => {
  try {
    const out = new Deno.Command("getconf", { args: ["CLK_TCK"], stdout: "piped" }).outputSync();
    return Number(new TextDecoder().decode(out.stdout).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** CPU seconds (user + system) a process has used so far; null once it is gone. */
export function cpuSeconds(pid: number): number | null {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
  } catch {
    return null;
  }
}

/** A field of `/proc/<pid>/status` in MB (`VmRSS`, `VmHWM`); null once the process is gone. */
export function statusMb(pid: number, field: "VmRSS" | "VmHWM"): number | null {
  try {
    const text = Deno.readTextFileSync(`/proc/${pid}/status`);
    const kb = new RegExp(`${field}:\\s+(\\d+)`).exec(text)?.[1];
    return kb === undefined ? null : Number(kb) / 1024;
  } catch {
    return null;
  }
}

/** The machine's busy and total CPU seconds so far (all cores; `/proc/stat`). */
export function machineSeconds(): { busy: number; total: number } {
  const line = Deno.readTextFileSync("/proc/stat").split("\n")[0];
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
  const idle = v[3] + v[4];
  return { busy: (total - idle) / CLOCK_TICKS, total: total / CLOCK_TICKS };
}

/** One audited request (the fields the benchmark reads). */
export interface AuditEvent {
  /** `ResponseStarted` (watches) or `ResponseComplete`. */
  stage: string;
  /** The verb: get, list, watch, create, update, patch, delete. */
  verb: string;
  /** The user name. */
  user: string;
  /** Resource, subresource, namespace and name. */
  resource: string;
  subresource: string;
  namespace: string;
  name: string;
  /** The HTTP status code. */
  code: number;
  /** When the API server received the request and when it logged this stage, µs since the epoch. */
  receivedUs: number;
  stageUs: number;
}

/** µs since the epoch of an RFC 3339 timestamp with up to nine fractional digits. */
export function parseMicros(timestamp: string): number {
  const m = /^(.{19})(?:\.(\d+))?Z$/.exec(timestamp);
  if (m === null) return Date.parse(timestamp) * 1000;
  return Date.parse(`${m[1]}Z`) * 1000 + Number((m[2] ?? "").padEnd(6, "0").slice(0, 6));
}

/** Reads an audit log (JSON lines) incrementally: each call returns the events appended since the last. */
export class AuditReader {
  readonly #path: string;
  #offset = 0;
  #rest = "";

  /** Creates the reader of `path`. */
  constructor(path: string) {
    this.#path = path;
  }

  /** The events logged since the previous call. */
  async read(): Promise<AuditEvent[]> {
    let file: Deno.FsFile;
    try {
      file = await Deno.open(this.#path);
    } catch {
      return [];
    }
    try {
      await file.seek(this.#offset, Deno.SeekMode.Start);
      const bytes = await new Response(file.readable).arrayBuffer();
      this.#offset += bytes.byteLength;
      const text = this.#rest + new TextDecoder().decode(bytes);
      const lines = text.split("\n");
      this.#rest = lines.pop() ?? "";
      return lines.filter((l) => l.trim() !== "").map((line) => {
        const e = JSON.parse(line);
        return {
          stage: e.stage,
          verb: e.verb,
          user: e.user?.username ?? "",
          resource: e.objectRef?.resource ?? "",
          subresource: e.objectRef?.subresource ?? "",
          namespace: e.objectRef?.namespace ?? "",
          name: e.objectRef?.name ?? "",
          code: e.responseStatus?.code ?? 0,
          receivedUs: parseMicros(e.requestReceivedTimestamp),
          stageUs: parseMicros(e.stageTimestamp),
        };
      });
    } catch (error) {
      if (error instanceof Deno.errors.BadResource) return [];
      throw error;
    }
  }
}

/** The `p`th percentile (nearest rank) of `values`; NaN when empty. */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}
