/**
 * A list-and-watch cache that survives what watches do in real clusters:
 * it relists on 410 Gone, restarts with jittered exponential backoff on any
 * other error (never a tight loop against the API server), resumes from the
 * last resourceVersion when the server ends a watch, restarts a watch that
 * has gone silent (staleness watchdog; bookmarks count as activity), and
 * periodically re-delivers every object so level-based reconcilers converge.
 * Over the API server ({@link kubeSource}) no list or watch can hang for ever:
 * each is bounded in time, and a timeout takes the same retry path as an error.
 *
 * @module
 */
import * as k8s from "@kubernetes/client-node";
import { statusCode } from "./client.ts";

/** The least an object needs for the cache. */
export interface KubeObject {
  /** Object metadata. */
  metadata?: { name?: string; namespace?: string; resourceVersion?: string; uid?: string };
}

/** What a list returns. */
export interface ListResult<T> {
  /** The objects. */
  items: T[];
  /** The list's resourceVersion, to watch from. */
  resourceVersion: string;
}

/** A running watch. */
export interface WatchStream {
  /** Resolves when the watch ends: null when the server closed it, else the error. */
  done: Promise<unknown>;
  /** Ends the watch. */
  abort(): void;
}

/** Where an informer's objects come from. */
export interface InformerSource<T> {
  /** Lists every object (plain JSON). */
  list(): Promise<ListResult<T>>;
  /** Watches from `resourceVersion`, calling `onEvent` for each event. */
  watch(
    resourceVersion: string,
    onEvent: (type: string, object: unknown) => void,
  ): Promise<WatchStream>;
}

/** What a subscriber hears. */
export type InformerEvent<T> =
  | { type: "added"; object: T }
  | { type: "updated"; object: T; previous: T }
  | { type: "deleted"; object: T }
  | { type: "resync"; object: T };

/** Tuning. */
export interface InformerOptions {
  /** Name in logs. */
  name: string;
  /** Re-deliver every object this often (default 30 s; 0 disables). */
  resyncMs?: number;
  /** Restart a watch with no event or bookmark for this long (default 90 s). */
  staleAfterMs?: number;
  /** First retry delay (default 250 ms). */
  backoffInitialMs?: number;
  /** Largest retry delay (default 30 s). */
  backoffMaxMs?: number;
  /** Resume a watch from this resourceVersion instead of listing first (a restart that kept its place). */
  initialResourceVersion?: string;
  /** Log sink. */
  log?: (level: "info" | "warn", message: string, fields?: Record<string, unknown>) => void;
  /** Randomness for jitter (default Math.random). */
  random?: () => number;
  /**
   * Reduces each listed or watched object to what the cache's readers use,
   * before it is stored (like client-go's transform functions): the cache
   * then holds only that. It must keep `metadata.name`, `namespace` and
   * `resourceVersion`.
   */
  transform?: (object: unknown) => unknown;
}

/** Counters, for metrics and tests. */
export interface InformerStats {
  /** Successful lists. */
  lists: number;
  /** Watches started. */
  watches: number;
  /** Relists caused by 410 Gone. */
  expired: number;
  /** Restarts after errors (list or watch). */
  errors: number;
  /** Watches restarted by the staleness watchdog. */
  stale: number;
  /** Last time (performance.now) an event or bookmark arrived or a list completed. */
  lastActivityMs: number;
}

/**
 * The delay before retry number `attempt` (0-based): exponential from
 * `initialMs`, capped at `maxMs`, with "equal jitter" (half fixed, half random)
 * so restarting clients do not stampede.
 */
export function backoffDelay(
  attempt: number,
  initialMs: number,
  maxMs: number,
  random: () => number,
): number {
  const ceiling = Math.min(maxMs, initialMs * 2 ** Math.min(attempt, 30));
  return ceiling / 2 + random() * (ceiling / 2);
}

/** The cache key of an object: `namespace/name`, or `name` for cluster-scoped ones. */
export function objectKey(object: KubeObject): string {
  const m = object.metadata ?? {};
  return m.namespace ? `${m.namespace}/${m.name}` : `${m.name}`;
}

/** A cache of one resource kind, kept current by list and watch. */
export class Informer<T extends KubeObject> {
  readonly stats: InformerStats = {
    lists: 0,
    watches: 0,
    expired: 0,
    errors: 0,
    stale: 0,
    lastActivityMs: 0,
  };
  readonly #source: InformerSource<T>;
  readonly #options: Required<Omit<InformerOptions, "initialResourceVersion" | "transform">>;
  readonly #transform: (object: unknown) => T;
  readonly #store = new Map<string, T>();
  readonly #handlers = new Set<(event: InformerEvent<T>) => void>();
  #resourceVersion: string | undefined;
  #running = false;
  #current: WatchStream | null = null;
  #wake: (() => void) | null = null;
  #timers: ReturnType<typeof setInterval>[] = [];
  #synced = Promise.withResolvers<void>();
  #hasSynced = false;
  #loop: Promise<void> | null = null;
  #staleAbort = false;

  /** Creates an informer; call {@link Informer.start}. */
  constructor(source: InformerSource<T>, options: InformerOptions) {
    this.#source = source;
    this.#resourceVersion = options.initialResourceVersion;
    const transform = options.transform;
    this.#transform = transform === undefined ? (o) => o as T : (o) => transform(o) as T;
    this.#options = {
      name: options.name,
      resyncMs: options.resyncMs ?? 30_000,
      staleAfterMs: options.staleAfterMs ?? 90_000,
      backoffInitialMs: options.backoffInitialMs ?? 250,
      backoffMaxMs: options.backoffMaxMs ?? 30_000,
      log: options.log ?? (() => {}),
      random: options.random ?? Math.random,
    };
  }

  /** Resolves once the cache holds a complete list. */
  synced(): Promise<void> {
    return this.#synced.promise;
  }

  /** Whether the cache has held a complete list. */
  get hasSynced(): boolean {
    return this.#hasSynced;
  }

  /** One object by key (`namespace/name`). */
  get(key: string): T | undefined {
    return this.#store.get(key);
  }

  /** Every object. */
  list(): T[] {
    return [...this.#store.values()];
  }

  /** Subscribes to changes; returns the unsubscribe function. */
  subscribe(handler: (event: InformerEvent<T>) => void): () => void {
    this.#handlers.add(handler);
    return () => this.#handlers.delete(handler);
  }

  /** Starts listing and watching. */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.stats.lastActivityMs = performance.now();
    const { resyncMs, staleAfterMs } = this.#options;
    if (resyncMs > 0) {
      this.#timers.push(setInterval(() => {
        for (const object of this.#store.values()) this.#emit({ type: "resync", object });
      }, resyncMs));
    }
    this.#timers.push(setInterval(() => {
      if (this.#current !== null && performance.now() - this.stats.lastActivityMs > staleAfterMs) {
        this.stats.stale++;
        this.#options.log("warn", "watch silent too long, restarting it", {
          informer: this.#options.name,
        });
        this.#staleAbort = true;
        this.#current.abort();
      }
    }, Math.max(50, Math.min(staleAfterMs / 4, 10_000))));
    this.#loop = this.#run();
  }

  /** Stops watching; resolves when the loop has ended. */
  async stop(): Promise<void> {
    this.#running = false;
    for (const timer of this.#timers) clearInterval(timer);
    this.#timers = [];
    this.#current?.abort();
    this.#wake?.();
    await this.#loop;
  }

  async #run(): Promise<void> {
    let attempt = 0;
    while (this.#running) {
      try {
        if (this.#resourceVersion === undefined) await this.#relist();
        const outcome = await this.#watchOnce(this.#resourceVersion!);
        if (outcome === "expired") {
          this.stats.expired++;
          this.#options.log("info", "resourceVersion expired (410), relisting", {
            informer: this.#options.name,
          });
          this.#resourceVersion = undefined;
        }
        attempt = 0; // a watch ran: the next problem starts the backoff afresh
      } catch (error) {
        if (!this.#running) break;
        this.stats.errors++;
        const delay = backoffDelay(
          attempt++,
          this.#options.backoffInitialMs,
          this.#options.backoffMaxMs,
          this.#options.random,
        );
        this.#options.log("warn", "list/watch failed, retrying", {
          informer: this.#options.name,
          error: (error as Error)?.message ?? String(error),
          retryInMs: Math.round(delay),
        });
        await this.#sleep(delay);
      }
    }
  }

  async #relist(): Promise<void> {
    const { items, resourceVersion } = await this.#source.list();
    this.stats.lists++;
    this.stats.lastActivityMs = performance.now();
    const seen = new Set<string>();
    for (const item of items) {
      const object = this.#transform(item);
      const key = objectKey(object);
      seen.add(key);
      this.#put(key, object);
    }
    for (const [key, object] of this.#store) {
      if (!seen.has(key)) {
        this.#store.delete(key);
        this.#emit({ type: "deleted", object });
      }
    }
    this.#resourceVersion = resourceVersion;
    if (!this.#hasSynced) {
      this.#hasSynced = true;
      this.#synced.resolve();
    }
  }

  /** One watch: "ended" when the server closed it normally, "expired" on 410; throws on errors. */
  async #watchOnce(resourceVersion: string): Promise<"ended" | "expired"> {
    let expired = false;
    let failure: unknown = null;
    const stream = await this.#source.watch(resourceVersion, (type, raw) => {
      this.stats.lastActivityMs = performance.now();
      const object = raw as T & { code?: number; reason?: string; message?: string };
      if (type === "ERROR") {
        if (object?.code === 410 || object?.reason === "Expired" || object?.reason === "Gone") {
          expired = true;
        } else failure ??= new Error(`watch error: ${object?.message ?? JSON.stringify(raw)}`);
        this.#current?.abort();
        return;
      }
      const rv = object?.metadata?.resourceVersion;
      if (rv !== undefined) this.#resourceVersion = rv;
      if (type === "BOOKMARK") return;
      const kept = this.#transform(object);
      const key = objectKey(kept);
      if (type === "DELETED") {
        const previous = this.#store.get(key);
        this.#store.delete(key);
        this.#emit({ type: "deleted", object: previous ?? kept });
      } else {
        this.#put(key, kept);
      }
    });
    this.#current = stream;
    this.stats.watches++;
    if (!this.#running) stream.abort();
    const ended = await stream.done;
    this.#current = null;
    if (expired || statusCode(ended) === 410) return "expired";
    if (failure !== null) throw failure;
    if (this.#staleAbort) {
      this.#staleAbort = false;
      throw new Error("watch restarted by the staleness watchdog");
    }
    if (ended !== null && ended !== undefined && this.#running) throw ended;
    return "ended";
  }

  #put(key: string, object: T): void {
    const previous = this.#store.get(key);
    this.#store.set(key, object);
    if (previous === undefined) this.#emit({ type: "added", object });
    else if (previous.metadata?.resourceVersion !== object.metadata?.resourceVersion) {
      this.#emit({ type: "updated", object, previous });
    }
  }

  #emit(event: InformerEvent<T>): void {
    for (const handler of this.#handlers) {
      try {
        handler(event);
      } catch (error) {
        this.#options.log("warn", "informer handler threw", {
          informer: this.#options.name,
          error: String(error),
        });
      }
    }
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#wake = null;
        resolve();
      }, ms);
      this.#wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }
}

/** Options of a source backed by the API server. */
export interface KubeSourceOptions<T> {
  /** The collection's URL path, e.g. `/api/v1/pods` or `/apis/allocation.mbcas.io/v1alpha1/podallocations`. */
  path: string;
  /** Lists the collection; the result must be plain JSON (see `k8s.ObjectSerializer.serialize`). */
  list: () => Promise<ListResult<T>>;
  /** Field selector for the watch (must match the list's). */
  fieldSelector?: string;
  /** Label selector for the watch (must match the list's). */
  labelSelector?: string;
  /**
   * A list that has not completed after this long fails (default 60 s, a
   * backstop: the API client's own request timeout, 30 s, normally fires first).
   */
  listTimeoutMs?: number;
  /** A watch whose response has not started after this long fails (default 30 s). */
  connectTimeoutMs?: number;
  /** The server-side watch timeout, seconds (default random in 300–599, like client-go). */
  watchTimeoutSeconds?: number;
  /**
   * A watch still open this long after its server-side timeout has passed is
   * ended with an error (default 30 s): the connection is black-holed.
   */
  watchGraceMs?: number;
}

/** `promise`, or a rejection with `message` once `ms` have passed (the timer is always cleared). */
function deadline<T>(promise: Promise<T>, ms: number, message: () => string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message())), ms);
  });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}

/**
 * An {@link InformerSource} over the API server, watching with bookmarks and a
 * randomised server timeout. Nothing can hang for ever: a list fails after
 * `listTimeoutMs`, a watch that gets no response after `connectTimeoutMs`,
 * and a watch still open `watchGraceMs` past its server-side timeout (a
 * black-holed connection: the server would have closed it) ends with an
 * error, so the informer's retry path (backoff, resume or relist) takes over.
 * A watch that is merely silent is the informer's staleness watchdog's job.
 */
export function kubeSource<T>(
  kc: k8s.KubeConfig,
  options: KubeSourceOptions<T>,
): InformerSource<T> {
  const watcher = new k8s.Watch(kc);
  const listTimeoutMs = options.listTimeoutMs ?? 60_000;
  const connectTimeoutMs = options.connectTimeoutMs ?? 30_000;
  const graceMs = options.watchGraceMs ?? 30_000;
  return {
    list: () =>
      deadline(
        options.list(),
        listTimeoutMs,
        () => `list ${options.path} timed out after ${listTimeoutMs} ms`,
      ),
    async watch(resourceVersion, onEvent) {
      // Like client-go: end watches after 5–10 minutes so no proxy keeps a dead one open.
      const timeoutSeconds = options.watchTimeoutSeconds ??
        300 + Math.floor(Math.random() * 300);
      const { promise: done, resolve } = Promise.withResolvers<unknown>();
      let controller: AbortController | null = null;
      let closed = false;
      const finish = (result: unknown) => {
        if (closed) return;
        closed = true;
        clearTimeout(overdue);
        controller?.abort();
        resolve(result);
      };
      const limitMs = timeoutSeconds * 1000 + graceMs;
      const overdue = setTimeout(() =>
        finish(
          new Error(
            `watch ${options.path} still open ${graceMs} ms after its ${timeoutSeconds} s server timeout`,
          ),
        ), limitMs);
      const started = watcher.watch(
        options.path,
        {
          resourceVersion,
          allowWatchBookmarks: true,
          timeoutSeconds,
          fieldSelector: options.fieldSelector,
          labelSelector: options.labelSelector,
        },
        (type, object) => {
          if (!closed) onEvent(type, object);
        },
        (error) => finish(error ?? null),
      );
      try {
        controller = await deadline(
          started,
          connectTimeoutMs,
          () => `watch ${options.path} got no response within ${connectTimeoutMs} ms`,
        );
      } catch (error) {
        finish(error);
        // If the response ever comes, end that watch at once.
        started.then((late) => late.abort(), () => {});
        throw error;
      }
      if (closed) controller.abort();
      // Aborting ends the stream; client-node's done callback then resolves `done`.
      return { done, abort: () => controller!.abort() };
    },
  };
}
