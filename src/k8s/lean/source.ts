/**
 * The informer's source over the API server through the lean client: the
 * same bounds as `kubeSource` (src/k8s/kube_source.ts), so the informer's
 * semantics (relist on 410, backoff, resume from the last resourceVersion,
 * staleness watchdog) hold unchanged. Lists are paginated; a watch that the
 * server refuses with 410 Gone ends as expired, so the informer relists.
 *
 * @module
 */
import { deadline, statusCode } from "../_shared.ts";
import type { InformerSource } from "../informer.ts";
import type { LeanClient } from "./client.ts";

/** Options of {@link leanSource}. */
export interface LeanSourceOptions<T> {
  /** The collection's URL path, e.g. `/api/v1/pods` or `/apis/allocation.mbcas.io/v1alpha1/podallocations`. */
  path: string;
  /** Field selector, for list and watch. */
  fieldSelector?: string;
  /** Label selector, for list and watch. */
  labelSelector?: string;
  /** Objects per list page (default 500). */
  pageSize?: number;
  /** Reduces each listed object as its page arrives (the informer's own `transform` still applies). */
  transform?: (item: unknown) => T;
  /**
   * A list (every page) that has not completed after this long fails
   * (default 60 s, a backstop: each page's request timeout, 30 s, normally
   * fires first).
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
 * An {@link InformerSource} over the API server through `client`. Nothing can
 * hang for ever: a list fails after `listTimeoutMs`, a watch that gets no
 * response after `connectTimeoutMs`, and a watch still open `watchGraceMs`
 * past its server-side timeout ends with an error, so the informer's retry
 * path (backoff, resume or relist) takes over. A watch that is merely silent
 * is the informer's staleness watchdog's job.
 */
export function leanSource<T>(
  client: LeanClient,
  options: LeanSourceOptions<T>,
): InformerSource<T> {
  const listTimeoutMs = options.listTimeoutMs ?? 60_000;
  const connectTimeoutMs = options.connectTimeoutMs ?? 30_000;
  const graceMs = options.watchGraceMs ?? 30_000;
  const selectors = { fieldSelector: options.fieldSelector, labelSelector: options.labelSelector };
  return {
    list: () =>
      deadline(
        client.listAll<T>(
          options.path,
          { ...selectors, pageSize: options.pageSize },
          options.transform,
        ),
        listTimeoutMs,
        () => `list ${options.path} timed out after ${listTimeoutMs} ms`,
      ),
    async watch(resourceVersion, onEvent) {
      // Like client-go: end watches after 5–10 minutes so no proxy keeps a dead one open.
      const timeoutSeconds = options.watchTimeoutSeconds ?? 300 + Math.floor(Math.random() * 300);
      let stream;
      try {
        stream = await client.watch(options.path, {
          ...selectors,
          resourceVersion,
          timeoutSeconds,
          allowWatchBookmarks: true,
          connectTimeoutMs,
        }, onEvent);
      } catch (error) {
        // Too old a resourceVersion, refused up front: a watch that expired at once.
        if (statusCode(error) === 410) return { done: Promise.resolve(error), abort: () => {} };
        throw error;
      }
      const { promise: done, resolve } = Promise.withResolvers<unknown>();
      const overdue = setTimeout(() => {
        resolve(
          new Error(
            `watch ${options.path} still open ${graceMs} ms after its ${timeoutSeconds} s server timeout`,
          ),
        );
        stream.abort();
      }, timeoutSeconds * 1000 + graceMs);
      stream.done.then((result) => {
        clearTimeout(overdue);
        resolve(result);
      });
      return {
        done,
        abort: () => {
          clearTimeout(overdue);
          stream.abort();
        },
      };
    },
  };
}
