/**
 * Kubernetes Events for resizes and refusals, on the pod and its
 * PodAllocation, rate-limited: the same (object, reason, message) at most once
 * a minute, and at most a few per second overall.
 *
 * @module
 */
import { createEvent, type LeanClient } from "../k8s/lean/mod.ts";
import { TokenBucket } from "./rate_limit.ts";

/** What an event is about. */
export interface EventTarget {
  /** API version of the object. */
  apiVersion: string;
  /** Kind. */
  kind: string;
  /** Namespace. */
  namespace: string;
  /** Name. */
  name: string;
  /** UID. */
  uid?: string;
}

/** Records Events, dropping repeats and floods. */
export class EventRecorder {
  readonly #client: LeanClient;
  readonly #component: string;
  readonly #instance: string;
  readonly #now: () => number;
  readonly #recent = new Map<string, number>();
  readonly #bucket: TokenBucket;
  /** Events sent and dropped, for metrics and tests. */
  readonly counts = { sent: 0, dropped: 0, failed: 0 };

  /** Creates a recorder for `component` (instance: this replica's name). */
  constructor(
    client: LeanClient,
    component: string,
    instance: string,
    now: () => number = Date.now,
  ) {
    this.#client = client;
    this.#component = component;
    this.#instance = instance;
    this.#now = now;
    this.#bucket = new TokenBucket(5, 25, now());
  }

  /** Records one event (fire and forget: failures are counted, never thrown). */
  record(target: EventTarget, type: "Normal" | "Warning", reason: string, message: string): void {
    const now = this.#now();
    const key = `${target.uid ?? `${target.namespace}/${target.name}`}|${reason}|${message}`;
    const last = this.#recent.get(key);
    if ((last !== undefined && now - last < 60_000) || this.#bucket.waitMs(now) > 0) {
      this.counts.dropped++;
      return;
    }
    this.#bucket.take(now);
    this.#recent.set(key, now);
    if (this.#recent.size > 10_000) {
      for (const [k, at] of this.#recent) if (now - at >= 60_000) this.#recent.delete(k);
    }
    const stamp = new Date(now); // sent as RFC 3339 text (Date's JSON form)
    createEvent(this.#client, target.namespace, {
      metadata: { generateName: `${target.name}.`, namespace: target.namespace },
      involvedObject: {
        apiVersion: target.apiVersion,
        kind: target.kind,
        name: target.name,
        namespace: target.namespace,
        uid: target.uid,
      },
      type,
      reason,
      message: message.slice(0, 1024),
      source: { component: this.#component },
      reportingComponent: this.#component,
      reportingInstance: this.#instance,
      firstTimestamp: stamp,
      lastTimestamp: stamp,
      count: 1,
    }).then(() => this.counts.sent++, () => this.counts.failed++);
  }
}
