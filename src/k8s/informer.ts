/**
 * A list-and-watch cache that survives what watches do in real clusters:
 * it relists on 410 Gone, restarts with jittered exponential backoff on any
 * other error (never a tight loop against the API server), resumes from the
 * last resourceVersion when the server ends a watch, restarts a watch that
 * has gone silent (staleness watchdog; bookmarks count as activity), and
 * periodically re-delivers every object so level-based reconcilers converge.
 * Over the API server (`kubeSource` with client-node, `leanSource` in
 * src/k8s/lean/) no list or watch can hang for ever: each is bounded in
 * time, and a timeout takes the same retry path as an error. This file has no
 * run-time dependency on client-node.
 *
 * @module
 */
import { statusCode } from "./_shared.ts";

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
