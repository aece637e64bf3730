/**
 * The informer's source over the API server through client-node (lists
 * through a caller's client-node call, watches through `k8s.Watch`).
 *
 * @module
 */
import * as k8s from "@kubernetes/client-node";
import { deadline } from "./_shared.ts";
import type { InformerSource, ListResult } from "./informer.ts";

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
   * backstop: the API client's own request timeout, 30 s, normally fires
   * first). `Infinity` for a paginated list (`pagedList`), bounded page by page.
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
