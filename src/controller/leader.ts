/**
 * Leader election on a `coordination.k8s.io` Lease, so several controller
 * replicas can run and exactly one writes. The leader renews the Lease; a
 * standby takes it over once it has seen the same record, unrenewed, for a
 * whole lease duration (measured on its own clock, so clock skew does not
 * matter). A leader that fails to renew within the renew deadline, or finds
 * the Lease held by someone else, stops leading at once.
 *
 * No request can stall the election: each round of Lease requests is bounded
 * by the renew deadline (request timeouts, and a bound on the round itself),
 * so the elector keeps competing whatever the API server does. Writers fence
 * their writes with {@link LeaderElector.writeBudgetMs}.
 *
 * @module
 */
import type * as k8s from "@kubernetes/client-node";
import { LeanClient, type LeanConfig, leasePath, microTime, statusCode } from "../k8s/lean/mod.ts";
import type { ProgressTracker } from "../serve/mod.ts";

/** The Lease calls the elector makes (over the lean client; injectable for tests). */
export interface LeaseApi {
  /** GETs the Lease. */
  readNamespacedLease(param: { name: string; namespace: string }): Promise<k8s.V1Lease>;
  /** Creates the Lease. */
  createNamespacedLease(param: { namespace: string; body: k8s.V1Lease }): Promise<k8s.V1Lease>;
  /** Merge-patches the Lease (a resourceVersion in the patch makes it conditional). */
  patchNamespacedLease(
    param: { name: string; namespace: string; body: unknown },
  ): Promise<k8s.V1Lease>;
}

/** {@link LeaseApi} over the lean client. */
function leanLeaseApi(client: LeanClient): LeaseApi {
  return {
    readNamespacedLease: ({ name, namespace }) => client.get(leasePath(namespace, name)),
    createNamespacedLease: ({ namespace, body }) => client.create(leasePath(namespace), body),
    patchNamespacedLease: ({ name, namespace, body }) =>
      client.mergePatch(leasePath(namespace, name), body),
  };
}

/** The progress loop the elector beats after every decided round (see {@link LeaderElectionOptions.progress}). */
export const LEADER_ELECTION_LOOP = "leader-election";

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
  /**
   * A leader that has not renewed for this long stops leading (default 2/3 of
   * the lease duration). Also the bound of one round of Lease requests.
   */
  renewDeadlineMs?: number;
  /** How often to renew or retry (default 2 s). */
  retryPeriodMs?: number;
  /** Monotonic clock, ms (default performance.now). */
  now?: () => number;
  /** Log sink. */
  log?: (level: "info" | "warn", message: string, fields?: Record<string, unknown>) => void;
  /** The Lease API (default: a client from the kubeconfig whose requests time out with the round). */
  api?: LeaseApi;
  /** Beaten (loop {@link LEADER_ELECTION_LOOP}) after every round that read the Lease and decided. */
  progress?: ProgressTracker;
}

/**
 * Why leader-election timings are unusable, or null when they are fine (the
 * rules of client-go): all positive, lease duration > renew deadline > 1.2 ×
 * retry period.
 */
export function leaderTimingProblem(
  timing: { leaseDurationMs: number; renewDeadlineMs: number; retryPeriodMs: number },
): string | null {
  const { leaseDurationMs: lease, renewDeadlineMs: renew, retryPeriodMs: retry } = timing;
  if (!(lease > 0 && renew > 0 && retry > 0)) {
    return `lease duration (${lease} ms), renew deadline (${renew} ms) and retry period (${retry} ms) must be positive`;
  }
  if (!(lease > renew)) {
    return `lease duration (${lease} ms) must be greater than the renew deadline (${renew} ms)`;
  }
  if (!(renew > 1.2 * retry)) {
    return `renew deadline (${renew} ms) must be greater than 1.2 × the retry period (${retry} ms)`;
  }
  return null;
}

const TIMED_OUT = Symbol("timed out");

/** `promise`, or {@link TIMED_OUT} after `ms` (real time; the timer is always cleared). */
function bounded<T>(promise: Promise<T>, ms: number): Promise<T | typeof TIMED_OUT> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<typeof TIMED_OUT>((resolve) => {
    timer = setTimeout(() => resolve(TIMED_OUT), Math.max(0, ms));
  });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}

/** Elects one leader among replicas sharing a Lease. */
export class LeaderElector {
  readonly #api: LeaseApi;
  /** The elector's own client (none with an injected API); closed by {@link LeaderElector.stop}. */
  readonly #client: LeanClient | null;
  readonly #o: Required<Omit<LeaderElectionOptions, "api" | "progress">>;
  readonly #progress: ProgressTracker | undefined;
  #observed: { holder: string; renewTime: string; at: number } | null = null;
  #lastRenewAt = Number.NEGATIVE_INFINITY;
  #leading = false;
  #holder: string | null = null;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #running = false;
  #onChange: (leading: boolean) => void = () => {};
  /** Bumped when a round is abandoned (timed out) or the elector stops: a late answer changes nothing. */
  #round = 0;
  /** performance.now() by which the current round's requests must be done. */
  #roundDeadline = 0;
  /** Times this replica became leader. */
  transitions = 0;

  /**
   * Creates the elector; call {@link LeaderElector.start}.
   *
   * @throws {RangeError} when the timings break {@link leaderTimingProblem}'s rules.
   */
  constructor(connection: LeanConfig | null, options: LeaderElectionOptions) {
    const leaseDurationMs = options.leaseDurationMs ?? 10_000;
    this.#o = {
      namespace: options.namespace,
      name: options.name,
      identity: options.identity,
      leaseDurationMs,
      renewDeadlineMs: options.renewDeadlineMs ?? Math.floor((leaseDurationMs * 2) / 3),
      retryPeriodMs: options.retryPeriodMs ?? 2_000,
      now: options.now ?? (() => performance.now()),
      log: options.log ?? (() => {}),
    };
    const problem = leaderTimingProblem(this.#o);
    if (problem !== null) throw new RangeError(`leader election: ${problem}`);
    this.#progress = options.progress;
    // Each request may take at most what is left of its round (never more than the renew deadline).
    if (options.api === undefined && connection === null) {
      throw new TypeError("leader election: a connection or a Lease API is needed");
    }
    this.#client = options.api === undefined
      ? new LeanClient(connection!, {
        timeoutMs: () => Math.min(this.#o.renewDeadlineMs, this.#roundDeadline - performance.now()),
      })
      : null;
    this.#api = options.api ?? leanLeaseApi(this.#client!);
  }

  /** Whether this replica leads now: it holds the Lease and renewed it within the renew deadline. */
  isLeader(): boolean {
    if (this.#leading && this.#o.now() - this.#lastRenewAt > this.#o.renewDeadlineMs) {
      this.#setLeading(false);
    }
    return this.#leading;
  }

  /**
   * How long this replica may still write, ms: the time left before another
   * replica could have taken the Lease over (last renewal + lease duration),
   * less a safety margin of one retry period; 0 when not leading. Fence every
   * write: write only while this is above ~1 s, and use it as the request's
   * timeout.
   */
  writeBudgetMs(): number {
    if (!this.isLeader()) return 0;
    const { leaseDurationMs, retryPeriodMs, now } = this.#o;
    return Math.max(0, this.#lastRenewAt + leaseDurationMs - retryPeriodMs - now());
  }

  /** The holder last seen in the Lease, or null before the first read. */
  get holder(): string | null {
    return this.#holder;
  }

  /** Starts electing; `onChange` hears every change of leadership of this replica. */
  start(onChange: (leading: boolean) => void): void {
    this.#onChange = onChange;
    this.#running = true;
    if (this.#progress !== undefined && !this.#progress.loops().includes(LEADER_ELECTION_LOOP)) {
      this.#progress.register(LEADER_ELECTION_LOOP, this.progressBoundMs());
    }
    void this.#tick();
  }

  /** The progress bound of the elector's loop: 3 retry periods plus a lease duration. */
  progressBoundMs(): number {
    return 3 * this.#o.retryPeriodMs + this.#o.leaseDurationMs;
  }

  /** Stops; a leader releases the Lease (within one retry period) so a standby takes over at once. */
  async stop(): Promise<void> {
    this.#running = false;
    this.#round++; // a round still in flight changes nothing any more
    if (this.#timer !== null) clearTimeout(this.#timer);
    if (this.#progress !== undefined) this.#progress.unregister(LEADER_ELECTION_LOOP);
    if (this.#leading) {
      this.#setLeading(false);
      this.#roundDeadline = performance.now() + this.#o.retryPeriodMs;
      try {
        await bounded(this.#release(), this.#o.retryPeriodMs);
      } catch {
        // best effort: the Lease expires anyway
      }
    }
    this.#client?.close();
  }

  async #release(): Promise<void> {
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
      );
    }
  }

  async #tick(): Promise<void> {
    const round = ++this.#round;
    const live = () => this.#round === round;
    this.#roundDeadline = performance.now() + this.#o.renewDeadlineMs;
    try {
      // The API client times requests out; this bound also holds for an injected API.
      const outcome = await bounded(this.#tryAcquireOrRenew(live), this.#o.renewDeadlineMs);
      if (outcome === TIMED_OUT) {
        if (live()) this.#round++; // abandon the round: its late answer must not count
        throw new Error(`lease requests took longer than ${this.#o.renewDeadlineMs} ms`);
      }
      if (live()) this.#progress?.beat(LEADER_ELECTION_LOOP);
    } catch (error) {
      this.#o.log("warn", "leader election: lease update failed", {
        error: String(error).slice(0, 300),
      });
    }
    this.isLeader(); // drop leadership if the renew deadline passed
    if (this.#running) this.#timer = setTimeout(() => void this.#tick(), this.#o.retryPeriodMs);
  }

  async #tryAcquireOrRenew(live: () => boolean): Promise<void> {
    const { name, namespace, identity, leaseDurationMs } = this.#o;
    const now = this.#o.now();
    const stamp = new Date();
    let lease: k8s.V1Lease;
    try {
      lease = await this.#api.readNamespacedLease({ name, namespace });
    } catch (error) {
      if (statusCode(error) !== 404) throw error;
      if (!live()) return;
      await this.#api.createNamespacedLease({
        namespace,
        body: {
          metadata: { name, namespace },
          // Times are set by the first renewal (a merge patch, as MicroTime text): a Date
          // has millisecond precision, which the API rejects for MicroTime fields.
          spec: {
            holderIdentity: identity,
            leaseDurationSeconds: Math.ceil(leaseDurationMs / 1000),
            leaseTransitions: 0,
          },
        },
      });
      if (live()) this.#renewed(now, identity);
      return;
    }
    if (!live()) return;
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
      await this.#api.patchNamespacedLease({ name, namespace, body: patch });
    } catch (error) {
      if (statusCode(error) === 409) {
        if (live() && this.#leading) this.#setLeading(false); // lost a race: someone else wrote the Lease
        return;
      }
      throw error;
    }
    if (live()) this.#renewed(now, identity);
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
