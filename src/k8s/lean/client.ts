/**
 * A small Kubernetes API client on Deno's `fetch`: one pooled
 * `Deno.HttpClient` (the cluster CA trusted, the client certificate
 * presented), JSON in and out, and nothing else loaded. It does what the
 * agent needs (list with pagination, watch, get, create, replace, JSON merge
 * patch, delete) with the guarantees of the client-node transport
 * (src/k8s/transport.ts): every request has a timeout covering the whole
 * response body, and a failed request throws an {@link ApiError} that
 * carries the HTTP status and the API server's Status message, which
 * `statusCode` and `errorMessage` (src/k8s/mod.ts) read as they read
 * client-node's errors.
 *
 * @module
 */
import { DEFAULT_REQUEST_TIMEOUT_MS, RequestTimeoutError } from "../_shared.ts";
import type { LeanConfig } from "./config.ts";

/** The `Status` object the API server answers a failed request with. */
export interface ApiStatus {
  /** `Failure`. */
  status?: string;
  /** What went wrong, for people. */
  message?: string;
  /** A machine-readable reason, e.g. `NotFound`, `Conflict`, `Expired`. */
  reason?: string;
  /** The HTTP status code. */
  code?: number;
}

/** A request the API server answered with a status other than 2xx. */
export class ApiError extends Error {
  /** The HTTP status code (`statusCode(error)` reads it). */
  readonly code: number;
  /** The Status `reason`, when the server sent one. */
  readonly reason: string | undefined;
  /** The response body: the parsed Status, or the text when it was not JSON (`errorMessage(error)` reads it). */
  readonly body: ApiStatus | string;

  /** Creates the error: `GET /api/v1/namespaces/x/pods/y: 404 NotFound: pods "y" not found`. */
  constructor(
    /** HTTP method. */
    readonly method: string,
    /** URL path (no query). */
    readonly path: string,
    code: number,
    body: ApiStatus | string,
  ) {
    const reason = typeof body === "object" ? body.reason : undefined;
    const detail = typeof body === "object" ? body.message ?? "" : body.slice(0, 500);
    super(`${method} ${path}: ${code}${reason ? ` ${reason}` : ""}${detail ? `: ${detail}` : ""}`);
    this.name = "ApiError";
    this.code = code;
    this.reason = reason;
    this.body = body;
  }
}

/** Options of {@link LeanClient}. */
export interface LeanClientOptions {
  /**
   * Per-request timeout in ms (default 30 s), or a function evaluated before
   * each request. It covers sending the request and reading the whole
   * response body; a value ≤ 0 fails the request at once, unsent; `Infinity`
   * means none. Watches have their own bounds ({@link WatchOptions}).
   */
  timeoutMs?: number | (() => number);
}

/** Query parameters of a request; undefined values are left out. */
export type Query = Record<string, string | number | boolean | undefined>;

/** Options of one request. */
export interface RequestOptions {
  /** Query parameters. */
  query?: Query;
  /** A JSON body. */
  body?: unknown;
  /** The body's content type (default `application/json`). */
  contentType?: string;
  /** This request's timeout instead of the client's. */
  timeoutMs?: number;
}

/** Selectors and paging of a list. */
export interface ListOptions {
  /** e.g. `spec.nodeName=node-a`. */
  fieldSelector?: string;
  /** e.g. `app=web`. */
  labelSelector?: string;
  /** Objects per page (default {@link LEAN_PAGE_SIZE}). */
  pageSize?: number;
}

/** A whole list: its objects and the resourceVersion to watch from. */
export interface LeanList<T> {
  /** The objects, every page's. */
  items: T[];
  /** The list's resourceVersion (the first page's: the pages are one snapshot). */
  resourceVersion: string;
}

/** Parameters and bounds of a watch. */
export interface WatchOptions {
  /** Where to start: the resourceVersion of a list or of the last event seen. */
  resourceVersion?: string;
  /** The server ends the watch after this many seconds. */
  timeoutSeconds?: number;
  /** Ask for BOOKMARK events (default true). */
  allowWatchBookmarks?: boolean;
  /** Field selector (must match the list's). */
  fieldSelector?: string;
  /** Label selector (must match the list's). */
  labelSelector?: string;
  /** The response's headers must arrive within this long (default: the client's request timeout). */
  connectTimeoutMs?: number;
}

/** A running watch. */
export interface LeanWatch {
  /** Resolves when the watch ends: null when the server closed it or it was aborted, else the error. */
  done: Promise<unknown>;
  /** Ends the watch; `done` resolves at once (it does not wait for the connection to wind down). */
  abort(): void;
}

/** Objects per page of {@link LeanClient.listAll}. */
export const LEAN_PAGE_SIZE = 500;

/** How long a token read from a file is used before the file is read again, ms (as client-go). */
const TOKEN_FILE_TTL_MS = 60_000;

/** The query string of `query`, with a leading `?`, or "". */
function queryString(query: Query | undefined): string {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query ?? {})) {
    if (value !== undefined) params.set(name, String(value));
  }
  const text = params.toString();
  return text === "" ? "" : `?${text}`;
}

/** A Kubernetes API client on `fetch`; see the module documentation. */
export class LeanClient {
  /** The API server's URL. */
  readonly server: string;
  readonly #config: LeanConfig;
  readonly #http: Deno.HttpClient;
  readonly #timeoutMs: number | (() => number);
  #token: { value: string; readAt: number } | null = null;
  #closed = false;

  /** A client for `config`; {@link LeanClient.close} releases its connections. */
  constructor(config: LeanConfig, options: LeanClientOptions = {}) {
    this.server = config.server.replace(/\/+$/, "");
    this.#config = config;
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    const cert = config.clientCert;
    const key = config.clientKey;
    this.#http = Deno.createHttpClient({
      ...(config.caCert ? { caCerts: [config.caCert] } : {}),
      ...(cert && key ? { cert, key } : {}),
    });
  }

  /** Closes the pooled connections; the client must not be used afterwards. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#http.close();
  }

  /** The request headers: JSON, and the bearer token when there is one. */
  #headers(contentType?: string): Record<string, string> {
    const headers: Record<string, string> = { Accept: "application/json" };
    if (contentType !== undefined) headers["Content-Type"] = contentType;
    const token = this.#bearer();
    if (token !== undefined) headers.Authorization = `Bearer ${token}`;
    return headers;
  }

  #bearer(): string | undefined {
    const file = this.#config.tokenFile;
    if (file === undefined) return this.#config.token;
    const now = performance.now();
    if (this.#token === null || now - this.#token.readAt > TOKEN_FILE_TTL_MS) {
      try {
        this.#token = { value: Deno.readTextFileSync(file).trim(), readAt: now };
      } catch (error) {
        // Keep the last token while the file is being rotated; fail only without one.
        if (this.#token === null) throw error;
      }
    }
    return this.#token.value;
  }

  /**
   * Sends one request and returns its JSON response (undefined for an empty
   * body).
   *
   * @throws {ApiError} for a status other than 2xx.
   * @throws {RequestTimeoutError} when it did not complete within its timeout.
   */
  async request<T = unknown>(
    method: string,
    path: string,
    options: RequestOptions = {},
  ): Promise<T> {
    const configured = typeof this.#timeoutMs === "function" ? this.#timeoutMs() : this.#timeoutMs;
    const ms = options.timeoutMs ?? configured;
    if (Number.isNaN(ms) || ms <= 0) {
      throw new RequestTimeoutError(method, path, Math.max(0, ms || 0));
    }
    const rounded = ms === Infinity ? Infinity : Math.max(1, Math.ceil(ms));
    const signal = rounded === Infinity ? undefined : AbortSignal.timeout(rounded);
    const hasBody = options.body !== undefined;
    try {
      const response = await fetch(this.server + path + queryString(options.query), {
        method,
        headers: this.#headers(hasBody ? options.contentType ?? "application/json" : undefined),
        body: hasBody ? JSON.stringify(options.body) : undefined,
        signal,
        client: this.#http,
      });
      const text = await response.text();
      if (!response.ok) throw apiError(method, path, response.status, text);
      return (text === "" ? undefined : JSON.parse(text)) as T;
    } catch (error) {
      if (signal?.aborted) throw new RequestTimeoutError(method, path, rounded);
      throw error;
    }
  }

  /** GETs one object. */
  get<T = unknown>(path: string): Promise<T> {
    return this.request<T>("GET", path);
  }

  /** POSTs `body` to the collection at `path`; returns the created object. */
  create<T = unknown>(path: string, body: unknown): Promise<T> {
    return this.request<T>("POST", path, { body });
  }

  /** PUTs `body` (with its resourceVersion: a conflict is a 409) to `path`. */
  replace<T = unknown>(path: string, body: unknown): Promise<T> {
    return this.request<T>("PUT", path, { body });
  }

  /** PATCHes `path` with a JSON merge patch (RFC 7386). */
  mergePatch<T = unknown>(path: string, patch: unknown): Promise<T> {
    return this.request<T>("PATCH", path, {
      body: patch,
      contentType: "application/merge-patch+json",
    });
  }

  /** DELETEs `path`; returns the server's answer (the object or a Status). */
  delete<T = unknown>(path: string, query?: Query): Promise<T> {
    return this.request<T>("DELETE", path, { query });
  }

  /**
   * Lists the collection at `path` page by page (`limit`, then `continue`
   * tokens) until the last page, mapping each page's items through
   * `transform` as it arrives. An expired continue token (410) fails the
   * list; the caller lists again from the start.
   */
  async listAll<T = unknown>(
    path: string,
    options: ListOptions = {},
    transform: (item: unknown) => T = (item) => item as T,
  ): Promise<LeanList<T>> {
    const items: T[] = [];
    let resourceVersion: string | undefined;
    let token: string | undefined;
    do {
      const page = await this.request<
        { items?: unknown[]; metadata?: { resourceVersion?: string; continue?: string } }
      >("GET", path, {
        query: {
          fieldSelector: options.fieldSelector,
          labelSelector: options.labelSelector,
          limit: options.pageSize ?? LEAN_PAGE_SIZE,
          continue: token,
        },
      });
      for (const item of page?.items ?? []) items.push(transform(item));
      resourceVersion ??= page?.metadata?.resourceVersion ?? "";
      token = page?.metadata?.continue || undefined;
    } while (token);
    return { items, resourceVersion: resourceVersion ?? "" };
  }

  /**
   * Watches the collection at `path`, calling `onEvent(type, object)` for each
   * event (`ADDED`, `MODIFIED`, `DELETED`, `BOOKMARK`, `ERROR` with a Status).
   * Resolves once the server has answered; `done` then says how it ended.
   *
   * @throws {ApiError} when the server refuses the watch (a 410 Gone
   * included: the resourceVersion is too old).
   * @throws {RequestTimeoutError} when no answer came within `connectTimeoutMs`.
   */
  async watch(
    path: string,
    options: WatchOptions,
    onEvent: (type: string, object: unknown) => void,
  ): Promise<LeanWatch> {
    const configured = typeof this.#timeoutMs === "function" ? this.#timeoutMs() : this.#timeoutMs;
    const connectMs = Math.max(1, Math.ceil(options.connectTimeoutMs ?? configured));
    const controller = new AbortController();
    let timedOut = false;
    const timer = connectMs === Infinity ? undefined : setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, connectMs);
    const url = this.server + path + queryString({
      watch: true,
      resourceVersion: options.resourceVersion,
      allowWatchBookmarks: options.allowWatchBookmarks ?? true,
      timeoutSeconds: options.timeoutSeconds,
      fieldSelector: options.fieldSelector,
      labelSelector: options.labelSelector,
    });
    let response: Response;
    try {
      response = await fetch(url, {
        headers: this.#headers(),
        signal: controller.signal,
        client: this.#http,
      });
      if (!response.ok) throw apiError("GET", path, response.status, await response.text());
    } catch (error) {
      if (timedOut) throw new RequestTimeoutError("GET", path, connectMs);
      throw error;
    } finally {
      clearTimeout(timer);
    }
    const { promise: done, resolve } = Promise.withResolvers<unknown>();
    let ended = false;
    const finish = (result: unknown) => {
      if (ended) return;
      ended = true;
      resolve(result);
    };
    const body = response.body;
    if (body === null) {
      finish(null);
    } else {
      void readLines(body, (line) => {
        if (ended) return;
        const event = JSON.parse(line) as { type?: string; object?: unknown };
        onEvent(String(event.type), event.object);
      }).then(
        () => finish(null),
        (error) => {
          finish(controller.signal.aborted ? null : error);
          controller.abort(); // a malformed event: drop the connection too
        },
      );
    }
    return {
      done,
      abort: () => {
        // Resolve first: an aborted HTTP/2 stream's reader may settle late or
        // never, and nothing (a stopping informer, SIGTERM) may wait on it.
        finish(null);
        controller.abort();
      },
    };
  }
}

/** The {@link ApiError} of a failed response whose body is `text`. */
function apiError(method: string, path: string, code: number, text: string): ApiError {
  let body: ApiStatus | string = text;
  try {
    const parsed = JSON.parse(text);
    if (typeof parsed === "object" && parsed !== null) body = parsed as ApiStatus;
  } catch {
    // not JSON: keep the text
  }
  return new ApiError(method, path, code, body);
}

/** Calls `onLine` for each non-empty line of `body` (UTF-8); resolves at its end. */
async function readLines(
  body: ReadableStream<Uint8Array>,
  onLine: (line: string) => void,
): Promise<void> {
  const decoder = new TextDecoder();
  const reader = body.getReader();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let newline: number;
      while ((newline = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, newline);
        buffer = buffer.slice(newline + 1);
        if (line.trim() !== "") onLine(line);
      }
    }
    buffer += decoder.decode();
    if (buffer.trim() !== "") onLine(buffer);
  } finally {
    reader.releaseLock();
  }
}
