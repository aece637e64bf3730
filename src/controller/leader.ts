/**
 * Leader election on a `coordination.k8s.io` Lease, so several controller
 * replicas can run and exactly one writes. The leader renews the Lease; a
 * standby takes it over once it has seen the same record, unrenewed, for a
 * whole lease duration (measured on its own clock, so clock skew does not
 * matter). A leader that fails to renew within the renew deadline, or finds
 * the Lease held by someone else, stops leading at once.
 *
 * @module
 */
import * as k8s from "@kubernetes/client-node";
import { makeApiClient, MERGE_PATCH, statusCode } from "../k8s/mod.ts";

/** Options of the elector. */
export interface LeaderElectionOptions {
  /** Namespace of the Lease. */
  namespace: string;
  /** Name of the Lease. */
  name: string;
  /** This replica's identity (the pod name). */
  identity: string;
  /** How long a Lease is valid without renewal (default 10 s: a standby takes over within ~12 s). */
  leaseDurationMs?: number;
  /** A leader that has not renewed for this long stops leading (default 2/3 of the lease duration). */
  renewDeadlineMs?: number;
  /** How often to renew or retry (default 2 s). */
  retryPeriodMs?: number;
  /** Monotonic clock, ms (default performance.now). */
  now?: () => number;
  /** Log sink. */
  log?: (level: "info" | "warn", message: string, fields?: Record<string, unknown>) => void;
}

/** Elects one leader among replicas sharing a Lease. */
export class LeaderElector {
  readonly #api: k8s.CoordinationV1Api;
  readonly #o: Required<LeaderElectionOptions>;
  #observed: { holder: string; renewTime: string; at: number } | null = null;
  #lastRenewAt = Number.NEGATIVE_INFINITY;
  #leading = false;
  #holder: string | null = null;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #running = false;
  #onChange: (leading: boolean) => void = () => {};
  /** Times this replica became leader. */
  transitions = 0;

  /** Creates the elector; call {@link LeaderElector.start}. */
  constructor(kc: k8s.KubeConfig, options: LeaderElectionOptions) {
    this.#api = makeApiClient(kc, k8s.CoordinationV1Api);
    const leaseDurationMs = options.leaseDurationMs ?? 10_000;
    this.#o = {
      leaseDurationMs,
      renewDeadlineMs: options.renewDeadlineMs ?? Math.floor((leaseDurationMs * 2) / 3),
      retryPeriodMs: options.retryPeriodMs ?? 2_000,
      now: options.now ?? (() => performance.now()),
      log: options.log ?? (() => {}),
      ...options,
    } as Required<LeaderElectionOptions>;
  }

  /** Whether this replica leads now: it holds the Lease and renewed it within the renew deadline. */
  isLeader(): boolean {
    if (this.#leading && this.#o.now() - this.#lastRenewAt > this.#o.renewDeadlineMs) {
      this.#setLeading(false);
    }
    return this.#leading;
  }

  /** The holder last seen in the Lease, or null before the first read. */
  get holder(): string | null {
    return this.#holder;
  }

  /** Starts electing; `onChange` hears every change of leadership of this replica. */
  start(onChange: (leading: boolean) => void): void {
    this.#onChange = onChange;
    this.#running = true;
    void this.#tick();
  }

  /** Stops; a leader releases the Lease so a standby takes over at once. */
  async stop(): Promise<void> {
    this.#running = false;
    if (this.#timer !== null) clearTimeout(this.#timer);
    if (this.#leading) {
      this.#setLeading(false);
      try {
        const lease = await this.#api.readNamespacedLease({
          name: this.#o.name,
          namespace: this.#o.namespace,
        });
        if (lease.spec?.holderIdentity === this.#o.identity) {
          await this.#api.patchNamespacedLease(
            {
              name: this.#o.name,
              namespace: this.#o.namespace,
              body: {
                metadata: { resourceVersion: lease.metadata?.resourceVersion },
                spec: { holderIdentity: null, leaseDurationSeconds: 1 },
              },
            },
            MERGE_PATCH,
          );
        }
      } catch {
        // best effort: the Lease expires anyway
      }
    }
  }

  async #tick(): Promise<void> {
    try {
      await this.#tryAcquireOrRenew();
    } catch (error) {
      this.#o.log("warn", "leader election: lease update failed", {
        error: String(error).slice(0, 300),
      });
    }
    this.isLeader(); // drop leadership if the renew deadline passed
    if (this.#running) this.#timer = setTimeout(() => void this.#tick(), this.#o.retryPeriodMs);
  }

  async #tryAcquireOrRenew(): Promise<void> {
    const { name, namespace, identity, leaseDurationMs } = this.#o;
    const now = this.#o.now();
    const stamp = new Date();
    let lease: k8s.V1Lease;
    try {
      lease = await this.#api.readNamespacedLease({ name, namespace });
    } catch (error) {
      if (statusCode(error) !== 404) throw error;
      await this.#api.createNamespacedLease({
        namespace,
        body: {
          metadata: { name, namespace },
          // Times are set by the first renewal (a merge patch): client-node writes Dates
          // with millisecond precision, which the API rejects for MicroTime fields.
          spec: {
            holderIdentity: identity,
            leaseDurationSeconds: Math.ceil(leaseDurationMs / 1000),
            leaseTransitions: 0,
          },
        },
      });
      this.#renewed(now, identity);
      return;
    }
    const spec = lease.spec ?? {};
    const holder = spec.holderIdentity ?? "";
    const renewTime = spec.renewTime ? new Date(spec.renewTime).toISOString() : "";
    if (
      this.#observed === null || this.#observed.holder !== holder ||
      this.#observed.renewTime !== renewTime
    ) {
      this.#observed = { holder, renewTime, at: now };
    }
    this.#holder = holder || null;
    const durationMs = (spec.leaseDurationSeconds ?? Math.ceil(leaseDurationMs / 1000)) * 1000;
    const expired = holder === "" || now - this.#observed.at >= durationMs;
    if (holder !== identity && !expired) {
      if (this.#leading) this.#setLeading(false); // someone else holds it: deposed
      return;
    }
    const patch = {
      metadata: { resourceVersion: lease.metadata?.resourceVersion }, // optimistic concurrency
      spec: {
        holderIdentity: identity,
        leaseDurationSeconds: Math.ceil(leaseDurationMs / 1000),
        renewTime: microTime(stamp),
        ...(holder !== identity
          ? { acquireTime: microTime(stamp), leaseTransitions: (spec.leaseTransitions ?? 0) + 1 }
          : {}),
      },
    };
    try {
      await this.#api.patchNamespacedLease({ name, namespace, body: patch }, MERGE_PATCH);
    } catch (error) {
      if (statusCode(error) === 409) {
        if (this.#leading) this.#setLeading(false); // lost a race: someone else wrote the Lease
        return;
      }
      throw error;
    }
    this.#renewed(now, identity);
  }

  #renewed(now: number, identity: string): void {
    this.#lastRenewAt = now;
    this.#holder = identity;
    this.#observed = null;
    if (!this.#leading) {
      this.transitions++;
      this.#o.log("info", "leader election: became leader", { identity });
      this.#setLeading(true);
    }
  }

  #setLeading(leading: boolean): void {
    if (this.#leading === leading) return;
    this.#leading = leading;
    if (!leading) {
      this.#o.log("warn", "leader election: stopped leading", { identity: this.#o.identity });
    }
    this.#onChange(leading);
  }
}

/** A Kubernetes MicroTime: RFC 3339 with exactly six fractional digits. */
export function microTime(date: Date): string {
  return date.toISOString().replace(/\.(\d{3})Z$/, ".$1000Z");
}
