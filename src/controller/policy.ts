/**
 * The resize policy: a pure function from (what the agent wants, what the pod
 * is, what this controller remembers, the time) to what to do. It is where
 * MBCAS's safety lives; nothing here touches the API.
 *
 * Rules, in order: the pod must exist, be the pod the allocation was computed
 * for (UID), and be managed (opted in, Burstable, not a mirror pod, not
 * terminating: `podIneligibility` in src/managed, shared with the agent); its
 * kubelet must apply resizes (1.33+); it must be running with resources
 * reported by the kubelet (per container: a container the kubelet does not
 * report, e.g. one crash-looping, is left alone, not the whole pod).
 *
 * **Restore**: when the pod is no longer opted in, or the shell asks for it
 * (the PodAllocation is being deleted, or was not refreshed in time), every
 * container goes back to its declared limit (the recorded baseline) at once,
 * without cooldown or steps. The baseline is what the pod's spec said when
 * MBCAS first saw it; the decision returns it so the shell records it before
 * the first resize.
 * A resize still in flight is followed, not
 * repeated: `Infeasible` backs off exponentially and never retries the same
 * value, `Deferred` waits, `Error` backs off, and a resize the kubelet has not
 * confirmed in time is reported as such. Then, per container: never below the
 * request nor below the floor of the pod's `mbcas.io/min-cpu-limit` rule, never
 * above the configured cap or the node's allocatable; skip containers whose
 * CPU resize policy restarts them (unless allowed), those without a CPU limit
 * and those the agent has no fresh measurement of; ignore changes smaller
 * than the minimum. Then by tier: a **protected** pod's increases apply at
 * once, its decreases wait for a cooldown after the last resize (or after
 * the pod was first seen) and cut at most a fraction per step; an
 * **elastic** pod's decreases apply at once and all the way (they make room
 * for the protected pods), its increases wait a while after its last resize
 * and add at most a step of the node at a time. The pod's resize budget
 * holds changes beyond so many resizes a minute, keeping the last two for
 * protective changes. Finally, never let the pod become Guaranteed (memory
 * quantities compared by value: `1Gi` is `1024Mi`).
 *
 * @module
 */

import { quantitiesEqual } from "../api/mod.ts";
import {
  type ContainerIneligible,
  type Ineligible,
  limitFloorMillicores,
  type MinLimitRule,
  type Tier,
} from "../managed/mod.ts";

/** Tuning of the policy. */
export interface ResizePolicyConfig {
  /** A decrease waits this long after the pod's last resize (default 30 s). */
  cooldownMs: number;
  /** A decrease cuts at most this fraction of the current limit per step (default 0.5). */
  maxStepDownFraction: number;
  /** Changes smaller than this fraction of the current limit are ignored (default 0.05)… */
  minChangeFraction: number;
  /** …or smaller than this many millicores, whichever is larger (default 20). */
  minChangeMillicores: number;
  /** Highest limit ever set, millicores; null for no configured cap (the node's allocatable still applies). */
  maxLimitMillicores: number | null;
  /** Backoff after `Infeasible`: first delay and cap (default 30 s, 10 min). */
  infeasibleBackoffMs: { initial: number; max: number };
  /** Backoff after a resize `Error` (default 10 s, 5 min). */
  errorBackoffMs: { initial: number; max: number };
  /** A resize the kubelet has not confirmed after this long is reported (default 60 s). */
  confirmTimeoutMs: number;
  /** An elastic pod's increase waits this long after its last resize (default 5 s). */
  elasticIncreaseDelayMs: number;
  /**
   * An elastic pod's limit changes only by at least this fraction of the
   * node's allocatable CPU (default 0.1): its changes follow other pods' load,
   * and small ones are not worth a resize of its budget.
   */
  elasticMinChangeFraction: number;
  /**
   * A protected pod's limit comes down only by at least this fraction of
   * itself (default 0.25). A limit is a cap, not a reservation: a protected
   * pod's limit somewhat above its need costs the others nothing, while each
   * small cut is a resize of its budget and may have to be undone at its
   * next burst.
   */
  protectedMinDecreaseFraction: number;
  /** An elastic pod's increase adds at most this fraction of the node's allocatable CPU per step (default 0.5). */
  elasticMaxStepUpFraction: number;
  /**
   * Resizes of one pod within any minute (default 4). Protective changes (an
   * elastic pod's decrease, a protected pod's increase) may use every one;
   * the others (a protected pod's decrease, an elastic pod's increase) leave
   * the last two free for them ({@link PROTECTIVE_RESIZE_RESERVE}). Restores
   * are never held.
   */
  maxResizesPerPodPerMinute: number;
}

/** The defaults. */
export const DEFAULT_POLICY: ResizePolicyConfig = {
  cooldownMs: 30_000,
  maxStepDownFraction: 0.5,
  minChangeFraction: 0.05,
  minChangeMillicores: 20,
  maxLimitMillicores: null,
  infeasibleBackoffMs: { initial: 30_000, max: 600_000 },
  errorBackoffMs: { initial: 10_000, max: 300_000 },
  confirmTimeoutMs: 60_000,
  elasticIncreaseDelayMs: 5_000,
  elasticMaxStepUpFraction: 0.5,
  elasticMinChangeFraction: 0.1,
  protectedMinDecreaseFraction: 0.25,
  maxResizesPerPodPerMinute: 4,
};

/** The window of the per-pod resize budget. */
export const RESIZE_BUDGET_WINDOW_MS = 60_000;

/** The most resize times a pod's memory (and its status) keeps. */
export const MAX_RECENT_RESIZES = 16;

/** Resize times in order, the newest {@link MAX_RECENT_RESIZES} of them. */
export function newestResizes(times: readonly number[]): number[] {
  return [...times].sort((a, b) => a - b).slice(-MAX_RECENT_RESIZES);
}

/**
 * Resizes of a pod's minute that only protective changes may use: after an
 * elastic pod's increase there is always a slot for the cut that may follow.
 */
export const PROTECTIVE_RESIZE_RESERVE = 2;

/** One container of the live pod. */
export interface ContainerState {
  /** Container name. */
  name: string;
  /** CPU request, millicores; null when none. */
  cpuRequestMillicores: number | null;
  /** CPU limit in the pod spec (what was last asked for), millicores; null when none. */
  cpuLimitMillicores: number | null;
  /** CPU limit the kubelet reports in `status.containerStatuses[].resources`; null when it reports none. */
  appliedCpuLimitMillicores: number | null;
  /** Whether the kubelet reports resources for this container at all. */
  reported: boolean;
  /** Memory request as written (compared by value, for the QoS guard). */
  memoryRequest: string | null;
  /** Memory limit as written. */
  memoryLimit: string | null;
  /** Why MBCAS may not resize this container (no CPU limit, restarting resize policy); null when it may. */
  ineligible: ContainerIneligible | null;
}

/** A kubelet resize condition on the pod. */
export interface ResizeCondition {
  /**
   * `Deferred` or `Infeasible` (PodResizePending), `Error` (PodResizeInProgress);
   * empty when the kubelet gave none (a pending resize without a reason counts
   * as Deferred, an in-progress one as in progress).
   */
  reason: string;
  /** The kubelet's message. */
  message: string;
  /** The pod generation the kubelet saw; null when not reported. */
  observedGeneration: number | null;
}

/** The live pod, as the policy needs it. */
export interface PodState {
  /** Pod UID. */
  uid: string;
  /** `spec.nodeName`; null while unscheduled. */
  nodeName: string | null;
  /** `status.phase`. */
  phase: string;
  /** Why MBCAS does not manage the pod (src/managed `podIneligibility`); null when it does. */
  ineligible: Ineligible | null;
  /** Whether its node's kubelet applies in-place resizes (1.33+); null when unknown. */
  kubeletSupportsResize: boolean | null;
  /** How far below the declared limits its containers may go. */
  minLimit: MinLimitRule;
  /** Its tier (`mbcas.io/tier`, src/managed `tierOf`); protected when absent. */
  tier?: Tier;
  /** `metadata.generation`. */
  generation: number;
  /** The node's allocatable CPU, millicores; null when unknown. */
  nodeAllocatableMillicores: number | null;
  /** `PodResizePending`, when present. */
  resizePending: ResizeCondition | null;
  /** `PodResizeInProgress`, when present. */
  resizeInProgress: ResizeCondition | null;
  /** The containers (not init or ephemeral ones). */
  containers: ContainerState[];
}

/** What the agent asks for (a validated PodAllocation spec, in millicores). */
export interface DesiredAllocation {
  /** The pod UID it was computed for. */
  podUID: string;
  /** The node whose market computed it (`spec.nodeName`). */
  nodeName: string;
  /** Desired CPU limit per container; `measured: false` when the agent had no fresh signal (keep the limit). */
  containers: { name: string; cpuLimitMillicores: number; measured?: boolean }[];
}

/** The declared CPU limits, recorded when MBCAS first saw the pod. */
export interface BaselineLimits {
  /** When they were recorded (the cooldown of a first decrease counts from here). */
  recordedAtMs: number;
  /** Declared CPU limit per container, millicores. */
  limits: Record<string, number>;
}

/** Why the shell wants the pod's declared limits back, whatever the allocation says. */
export interface RestoreIntent {
  /** `Deleted` (the PodAllocation is going), `Stale` (not refreshed in time). */
  reason: "Deleted" | "Stale";
  /** Human-readable detail. */
  message: string;
}

/** What the policy knows besides the allocation and the pod. */
export interface PolicyContext {
  /** The recorded baseline; null before MBCAS first saw the pod. */
  baseline?: BaselineLimits | null;
  /** A restore the shell asks for. */
  restore?: RestoreIntent | null;
}

/** What the controller remembers about one pod between reconciles. */
export interface PodMemory {
  /** Wall-clock time of the last resize this controller (or, from status, any leader) made. */
  lastResizeAtMs: number | null;
  /** When the resize now in flight was requested. */
  patchedAtMs: number | null;
  /** Limits found `Infeasible`, how often, and until when not to try another value. */
  infeasible: {
    limits: Record<string, number>;
    generation: number;
    attempts: number;
    untilMs: number;
  } | null;
  /** Resize errors: how often, for which generation, and until when to wait. */
  errors: { generation: number; attempts: number; untilMs: number } | null;
  /**
   * The pod (UID) and generation this controller's last patch produced; until
   * the pod cache shows that generation of that pod, the cache is behind this
   * controller's own write and the pod must not be judged from it.
   */
  awaiting?: { uid: string; generation: number } | null;
  /**
   * When this pod was last resized (any leader's resizes, from status), oldest
   * first; the budget counts the last minute's.
   */
  recentResizesAtMs?: number[];
}

/** An empty memory. */
export function emptyMemory(lastResizeAtMs: number | null = null): PodMemory {
  return { lastResizeAtMs, patchedAtMs: null, infeasible: null, errors: null };
}

/** A status condition the policy reports. */
export interface PolicyCondition {
  /** Condition type. */
  type: "Applied" | "ResizePending" | "Skipped";
  /** True/False. */
  status: "True" | "False";
  /** CamelCase reason. */
  reason: string;
  /** Human-readable detail. */
  message: string;
}

/** The policy's answer. */
export interface Decision {
  /** New CPU limits to patch now (one `pods/resize` patch), or null. */
  patch: { name: string; cpuLimitMillicores: number }[] | null;
  /** Summary state for status (`Restored`: the declared limits are back in force). */
  state: "Applied" | "Pending" | "Skipped" | "Failed" | "Restored";
  /**
   * The baseline to keep: the recorded one, or, the first time the pod is
   * seen managed, its limits now (to be recorded before any patch); null when
   * there is none to record.
   */
  baseline: BaselineLimits | null;
  /** Whether this decision restores the declared limits (for events). */
  restoring: boolean;
  /** The three conditions. */
  conditions: PolicyCondition[];
  /** Reconcile again after this long even if nothing changes (cooldowns, backoffs, confirmation timeouts). */
  requeueAfterMs: number | null;
  /** The memory to keep. */
  memory: PodMemory;
  /** Why changes were held back or adjusted (reasons), for events and metrics. */
  reasons: string[];
  /**
   * How the patch ranks for the node's resize budget: `protective` (an
   * elastic pod's decrease, a protected pod's increase, a withdrawal or a
   * restore) before `deferrable` (the rest); null without a patch.
   */
  urgency: "protective" | "deferrable" | null;
}

/** Exponential backoff delay for the given attempt (1-based). */
export function backoffMs(attempt: number, range: { initial: number; max: number }): number {
  return Math.min(range.max, range.initial * 2 ** Math.max(0, attempt - 1));
}

/**
 * One more failure of the resize for `generation`: counted once per pod
 * generation (the same failure seen again does not count), with the backoff
 * that the count calls for.
 */
function countFailure(
  previous: { generation: number; attempts: number; untilMs: number } | null,
  generation: number,
  nowMs: number,
  range: { initial: number; max: number },
): { generation: number; attempts: number; untilMs: number } {
  if (previous?.generation === generation) return previous;
  const attempts = (previous?.attempts ?? 0) + 1;
  return { generation, attempts, untilMs: nowMs + backoffMs(attempts, range) };
}

/**
 * Whether the allocation was computed on the node its pod runs on: the
 * `NodeAgreement` condition of every PodAllocation the controller judges.
 * Unknown while the pod is missing or not scheduled.
 */
export function nodeAgreement(
  desired: Pick<DesiredAllocation, "nodeName">,
  pod: Pick<PodState, "nodeName"> | undefined,
): NodeAgreementCondition {
  if (pod === undefined || pod.nodeName === null) {
    return {
      type: "NodeAgreement",
      status: "Unknown",
      reason: "PodNotScheduled",
      message: `the allocation names node ${desired.nodeName}; the pod is not on a node`,
    };
  }
  return pod.nodeName === desired.nodeName
    ? {
      type: "NodeAgreement",
      status: "True",
      reason: "PodOnNode",
      message: `computed on node ${desired.nodeName}, where the pod runs`,
    }
    : {
      type: "NodeAgreement",
      status: "False",
      reason: "NodeMismatch",
      message:
        `the allocation was computed on node ${desired.nodeName}, the pod runs on ${pod.nodeName}`,
    };
}

/** The controller's check that an allocation and its pod are on the same node. */
export interface NodeAgreementCondition {
  /** Condition type. */
  type: "NodeAgreement";
  /** True: same node; False: another node; Unknown: the pod is not on a node. */
  status: "True" | "False" | "Unknown";
  /** `PodOnNode`, `NodeMismatch` or `PodNotScheduled`. */
  reason: "PodOnNode" | "NodeMismatch" | "PodNotScheduled";
  /** Human-readable detail. */
  message: string;
}

const NO_PENDING: PolicyCondition = {
  type: "ResizePending",
  status: "False",
  reason: "None",
  message: "no resize pending",
};

/**
 * Decides what to do for one PodAllocation and its pod at time `nowMs`.
 * `context` carries the recorded baseline and any restore the shell asks for.
 */
export function decide(
  nowMs: number,
  desired: DesiredAllocation,
  pod: PodState | undefined,
  memory: PodMemory,
  config: ResizePolicyConfig,
  context: PolicyContext = {},
): Decision {
  const recorded = context.baseline ?? null;
  const skip = (reason: string, message: string): Decision => ({
    patch: null,
    state: "Skipped",
    conditions: [
      { type: "Applied", status: "False", reason, message },
      NO_PENDING,
      { type: "Skipped", status: "True", reason, message },
    ],
    requeueAfterMs: null,
    memory,
    reasons: [reason],
    baseline: recorded,
    restoring: false,
    urgency: null,
  });
  if (pod === undefined) return skip("PodNotFound", "the pod does not exist");
  if (pod.uid !== desired.podUID) {
    return skip(
      "PodUIDMismatch",
      `allocation is for pod UID ${desired.podUID}, the live pod is ${pod.uid} (recreated); ignored until the agent updates it`,
    );
  }
  let restore: { reason: string; message: string } | null = context.restore ?? null;
  const agreement = nodeAgreement(desired, pod);
  if (agreement.status === "False") {
    // Defence in depth: an agent may only allocate the CPU of its own node. What
    // MBCAS changed under an earlier allocation goes back to the declared limits.
    if (recorded === null) return skip("NodeMismatch", `${agreement.message}; ignored`);
    restore = { reason: "NodeMismatch", message: agreement.message };
  }
  if (pod.ineligible !== null) {
    if (pod.ineligible.reason !== "NotOptedIn") {
      return skip(pod.ineligible.reason, pod.ineligible.message);
    }
    // Opted out: give back what MBCAS changed.
    restore = { reason: "NotOptedIn", message: pod.ineligible.message };
  }
  if (restore !== null && recorded === null) {
    // MBCAS never changed this pod: nothing to give back.
    return skip(restore.reason, `${restore.message}; MBCAS never changed this pod`);
  }
  if (pod.kubeletSupportsResize === false) {
    return skip(
      "KubeletTooOld",
      "the node's kubelet is older than 1.33 and does not apply in-place resizes",
    );
  }
  const reported = pod.containers.filter((c) => c.reported);
  if (pod.phase !== "Running" || reported.length === 0) {
    return {
      ...skip(
        "PodNotRunning",
        `pod is ${pod.phase}; waiting until the kubelet reports its resources`,
      ),
      state: "Pending",
      conditions: [
        {
          type: "Applied",
          status: "False",
          reason: "PodNotRunning",
          message: `pod is ${pod.phase}`,
        },
        NO_PENDING,
        { type: "Skipped", status: "False", reason: "Managed", message: "managed" },
      ],
    };
  }
  // The declared limits: recorded, or what the spec says now (first sight).
  const baseline: BaselineLimits = recorded ?? {
    recordedAtMs: nowMs,
    limits: Object.fromEntries(
      pod.containers.filter((c) => c.cpuLimitMillicores !== null).map((
        c,
      ) => [c.name, c.cpuLimitMillicores!]),
    ),
  };

  const reasons: string[] = [];
  const elastic = pod.tier === "elastic";
  let protective = false;
  let mem: PodMemory = { ...memory };
  let requeue: number | null = null;
  const later = (ms: number) => (requeue = requeue === null ? ms : Math.min(requeue, ms));

  // 1. A resize in flight: spec and kubelet-reported limits differ (of containers it reports).
  const inFlight = reported.some((c) => c.cpuLimitMillicores !== c.appliedCpuLimitMillicores);
  let pending: PolicyCondition = NO_PENDING;
  let failed = false;
  let blockUntilMs: number | null = null;
  // Changes are measured from the spec (what was last asked for), except after a
  // failed resize (Infeasible, Error), whose spec value is known not to be in force.
  let current = (c: ContainerState) => c.cpuLimitMillicores;
  if (!inFlight) {
    mem = { ...mem, patchedAtMs: null, errors: null };
  } else {
    const seen = (cond: ResizeCondition | null) =>
      cond !== null &&
      (cond.observedGeneration === null || cond.observedGeneration >= pod.generation);
    if (seen(pod.resizeInProgress) && pod.resizeInProgress!.reason === "Error") {
      mem = {
        ...mem,
        errors: countFailure(mem.errors, pod.generation, nowMs, config.errorBackoffMs),
      };
      failed = true;
      pending = {
        type: "ResizePending",
        status: "True",
        reason: "ResizeError",
        message: `kubelet failed to resize: ${pod.resizeInProgress!.message} (attempt ${
          mem.errors!.attempts
        }, retry after backoff)`,
      };
      if (nowMs < mem.errors!.untilMs) blockUntilMs = mem.errors!.untilMs;
      reasons.push("ResizeError");
    } else if (seen(pod.resizePending) && pod.resizePending!.reason === "Infeasible") {
      const limits = Object.fromEntries(
        pod.containers.map((c) => [c.name, c.cpuLimitMillicores ?? 0]),
      );
      if (mem.infeasible?.generation !== pod.generation) {
        mem = {
          ...mem,
          infeasible: {
            limits,
            ...countFailure(mem.infeasible, pod.generation, nowMs, config.infeasibleBackoffMs),
          },
        };
      }
      failed = true;
      pending = {
        type: "ResizePending",
        status: "True",
        reason: "Infeasible",
        message: `kubelet: ${
          pod.resizePending!.message
        }; backing off before trying a different value`,
      };
      if (nowMs < mem.infeasible!.untilMs) blockUntilMs = mem.infeasible!.untilMs;
      reasons.push("Infeasible");
    } else if (seen(pod.resizePending)) {
      // Deferred (or a pending resize without a reason): the kubelet retries it by
      // itself; a new desired value replaces it (the kubelet always works on the latest spec).
      pending = {
        type: "ResizePending",
        status: "True",
        reason: "Deferred",
        message: `kubelet deferred the resize: ${pod.resizePending!.message}`,
      };
      reasons.push("Deferred");
    } else {
      const since = mem.patchedAtMs ?? nowMs;
      if (mem.patchedAtMs === null) mem = { ...mem, patchedAtMs: nowMs };
      if (nowMs - since >= config.confirmTimeoutMs) {
        pending = {
          type: "ResizePending",
          status: "True",
          reason: "NotConfirmed",
          message: `the kubelet has not confirmed the resize after ${
            Math.round((nowMs - since) / 1000)
          } s`,
        };
        reasons.push("NotConfirmed");
      } else {
        pending = {
          type: "ResizePending",
          status: "True",
          reason: "InProgress",
          message: "waiting for the kubelet to apply the resize",
        };
        later(since + config.confirmTimeoutMs - nowMs);
      }
    }
  }

  if (failed) current = (c) => c.appliedCpuLimitMillicores ?? c.cpuLimitMillicores;

  // 2. Per-container targets: the declared limits when restoring, else the market's.
  const skipped: string[] = [];
  const patch = new Map<string, number>();
  const wants = restore !== null
    ? Object.entries(baseline.limits).map(([name, cpuLimitMillicores]) => ({
      name,
      cpuLimitMillicores,
      measured: true,
    }))
    : desired.containers;
  for (const want of wants) {
    const c = pod.containers.find((x) => x.name === want.name);
    if (c === undefined) {
      skipped.push(`${want.name}: no such container`);
      reasons.push("ContainerNotFound");
      continue;
    }
    if (c.ineligible !== null) {
      skipped.push(c.ineligible.message);
      reasons.push(c.ineligible.reason);
      continue;
    }
    if (!c.reported) {
      skipped.push(`${c.name}: the kubelet reports no resources for it (not running)`);
      reasons.push("ContainerNotRunning");
      continue;
    }
    const limit = current(c);
    if (limit === null) {
      skipped.push(`${c.name}: no CPU limit to adjust`);
      reasons.push("NoCPULimit");
      continue;
    }
    if (restore !== null) {
      // Back to the declared limit, at once, whichever the direction.
      if (c.cpuLimitMillicores !== want.cpuLimitMillicores) {
        patch.set(c.name, want.cpuLimitMillicores);
      }
      continue;
    }
    if (want.measured === false) {
      skipped.push(`${c.name}: no fresh measurement; its limit is kept`);
      reasons.push("NoMeasurement");
      continue;
    }
    let target = want.cpuLimitMillicores;
    const request = c.cpuRequestMillicores ?? 0;
    const floor = limitFloorMillicores(
      pod.minLimit,
      request,
      baseline.limits[c.name] ?? c.cpuLimitMillicores ?? request,
    );
    const caps = [config.maxLimitMillicores, pod.nodeAllocatableMillicores].filter((
      x,
    ): x is number => x !== null);
    const cap = caps.length > 0 ? Math.max(floor, Math.min(...caps)) : Number.POSITIVE_INFINITY;
    if (target < request) {
      target = request;
      reasons.push("ClampedToRequest");
    }
    if (target < floor) {
      target = floor;
      reasons.push("ClampedToMinLimit");
    }
    if (target > cap) {
      target = cap;
      reasons.push("ClampedToCap");
    }
    const minChange = Math.max(
      config.minChangeMillicores,
      config.minChangeFraction * limit,
      elastic ? config.elasticMinChangeFraction * (pod.nodeAllocatableMillicores ?? 0) : 0,
      !elastic && target < limit ? config.protectedMinDecreaseFraction * limit : 0,
    );
    if (Math.abs(target - limit) < minChange) {
      // After a failed resize, asking for (about) what is in force withdraws the failed request.
      if (failed && c.cpuLimitMillicores !== limit) {
        patch.set(c.name, target);
        reasons.push("WithdrawFailedResize");
        protective = true;
      }
      continue;
    }
    if (target < limit && elastic) {
      // An elastic pod gives CPU back at once and all the way: it protects the others.
      protective = true;
    } else if (target < limit) {
      // The cooldown counts from the last resize, or from when MBCAS first saw the pod.
      const heldUntil = (mem.lastResizeAtMs ?? baseline.recordedAtMs) + config.cooldownMs;
      if (nowMs < heldUntil) {
        reasons.push("Cooldown");
        later(heldUntil - nowMs);
        continue;
      }
      target = Math.max(target, floor, Math.ceil(limit * (1 - config.maxStepDownFraction)));
      if (target > floor) later(config.cooldownMs); // more steps may follow
    } else if (elastic) {
      // An elastic pod's increase is ramped: not too soon after its last resize,
      // and by at most a step of the node at a time.
      const heldUntil = (mem.lastResizeAtMs ?? Number.NEGATIVE_INFINITY) +
        config.elasticIncreaseDelayMs;
      if (nowMs < heldUntil) {
        reasons.push("ElasticRamp");
        later(heldUntil - nowMs);
        continue;
      }
      const step = config.elasticMaxStepUpFraction *
        (pod.nodeAllocatableMillicores ?? Number.POSITIVE_INFINITY);
      if (target > limit + step) {
        target = Math.floor(limit + step);
        reasons.push("ElasticRamp");
        later(config.elasticIncreaseDelayMs); // more steps may follow
      }
    } else {
      protective = true; // a protected pod's increase
    }
    patch.set(c.name, target);
  }

  // 3. Never turn the pod Guaranteed: requests == limits for every resource of every container.
  if (patch.size > 0) {
    const limitOf = (c: ContainerState) => patch.get(c.name) ?? c.cpuLimitMillicores;
    const guaranteed = pod.containers.every((c) =>
      c.cpuRequestMillicores !== null && limitOf(c) === c.cpuRequestMillicores &&
      c.memoryRequest !== null && c.memoryLimit !== null &&
      quantitiesEqual(c.memoryRequest, c.memoryLimit)
    );
    if (guaranteed) {
      const name = [...patch.keys()].find((n) =>
        patch.get(n) === pod.containers.find((c) => c.name === n)!.cpuRequestMillicores
      )!;
      const bumped = patch.get(name)! + 1;
      if (bumped === pod.containers.find((c) => c.name === name)!.cpuLimitMillicores) {
        patch.delete(name);
      } else patch.set(name, bumped);
      reasons.push("QoSGuard");
    }
  }

  // 4. The pod's resize budget: at most so many resizes in any minute, the
  // last two kept for protective changes. A restore is never held.
  const window = (mem.recentResizesAtMs ?? []).filter((t) =>
    t > nowMs - RESIZE_BUDGET_WINDOW_MS && t <= nowMs
  );
  const allowed = config.maxResizesPerPodPerMinute - (protective ? 0 : PROTECTIVE_RESIZE_RESERVE);
  if (patch.size > 0 && restore === null && window.length >= allowed) {
    reasons.push("ResizeBudget");
    // When enough of the minute's resizes have left the window.
    later(window[window.length - allowed] + RESIZE_BUDGET_WINDOW_MS - nowMs);
    patch.clear();
  }

  // 5. Backoffs: nothing new while one runs; never the same infeasible value again.
  // A restore goes through: the declared limits were in force before.
  let result: { name: string; cpuLimitMillicores: number }[] | null = null;
  if (patch.size > 0) {
    if (blockUntilMs !== null && restore === null) {
      later(blockUntilMs - nowMs);
      reasons.push("Backoff");
    } else {
      const next = Object.fromEntries(
        pod.containers.map((c) => [c.name, patch.get(c.name) ?? c.cpuLimitMillicores ?? 0]),
      );
      const sameAsInfeasible = restore === null && mem.infeasible !== null &&
        pod.containers.every((c) => mem.infeasible!.limits[c.name] === next[c.name]);
      if (sameAsInfeasible) reasons.push("KnownInfeasible");
      else result = [...patch].map(([name, cpuLimitMillicores]) => ({ name, cpuLimitMillicores }));
    }
  }

  const allSkipped = skipped.length === wants.length && wants.length > 0;
  if (restore !== null) return restoreDecision(restore, result, inFlight, pending, mem, baseline);
  const skippedCondition: PolicyCondition = skipped.length > 0
    ? {
      type: "Skipped",
      status: "True",
      reason: allSkipped ? firstSkipReason(reasons) : "SomeContainersSkipped",
      message: skipped.join("; "),
    }
    : { type: "Skipped", status: "False", reason: "Managed", message: "managed" };
  const applied: PolicyCondition = inFlight
    ? {
      type: "Applied",
      status: "False",
      reason: "ResizeInFlight",
      message: "the kubelet does not report the requested limits yet",
    }
    : result !== null
    ? {
      type: "Applied",
      status: "False",
      reason: "ResizeRequested",
      message: `resizing ${result.map((p) => `${p.name} to ${p.cpuLimitMillicores}m`).join(", ")}`,
    }
    : heldCondition(reasons);
  const state = allSkipped
    ? "Skipped"
    : failed
    ? "Failed"
    : inFlight || result !== null
    ? "Pending"
    : "Applied";
  return {
    patch: result,
    state,
    conditions: [applied, pending, skippedCondition],
    requeueAfterMs: requeue,
    memory: mem,
    reasons,
    baseline,
    restoring: false,
    urgency: result === null ? null : protective ? "protective" : "deferrable",
  };
}

/** The Applied condition when nothing is patched: in sync, or why a change waits. */
function heldCondition(reasons: string[]): PolicyCondition {
  const [reason, message] = reasons.includes("ResizeBudget")
    ? [
      "HeldByResizeBudget",
      "limits applied; a change waits until the pod's resizes of the last minute allow it",
    ]
    : reasons.includes("Cooldown")
    ? ["HeldByCooldown", "limits applied; a decrease waits for the cooldown"]
    : reasons.includes("ElasticRamp")
    ? ["HeldByRamp", "limits applied; an elastic pod's increase waits for its next step"]
    : ["InSync", "the kubelet reports the allocated limits"];
  return { type: "Applied", status: "True", reason, message };
}

/** The decision while giving the declared limits back. */
function restoreDecision(
  restore: { reason: string; message: string },
  result: { name: string; cpuLimitMillicores: number }[] | null,
  inFlight: boolean,
  pending: PolicyCondition,
  memory: PodMemory,
  baseline: BaselineLimits,
): Decision {
  const done = result === null && !inFlight;
  const message = done
    ? `${restore.message}; the declared CPU limits are back in force`
    : `${restore.message}; restoring the declared CPU limits`;
  return {
    patch: result,
    state: done ? "Restored" : "Pending",
    conditions: [
      {
        type: "Applied",
        status: done ? "True" : "False",
        reason: done ? "Restored" : "Restoring",
        message,
      },
      pending,
      { type: "Skipped", status: "True", reason: restore.reason, message },
    ],
    requeueAfterMs: null,
    memory,
    reasons: [restore.reason],
    baseline,
    restoring: result !== null,
    urgency: result === null ? null : "protective",
  };
}

function firstSkipReason(reasons: string[]): string {
  return reasons.find((r) =>
    r === "RestartRequired" || r === "NoCPULimit" || r === "ContainerNotFound" ||
    r === "NoMeasurement" || r === "ContainerNotRunning"
  ) ?? "Skipped";
}

/**
 * Records a successful `pods/resize` patch in the memory, with the pod
 * generation the API server gave it (when known).
 */
export function recordPatch(
  memory: PodMemory,
  nowMs: number,
  awaiting: { uid: string; generation: number } | null = null,
): PodMemory {
  const recent = newestResizes(
    [...(memory.recentResizesAtMs ?? []), nowMs].filter((t) => t > nowMs - RESIZE_BUDGET_WINDOW_MS),
  );
  return {
    ...memory,
    lastResizeAtMs: nowMs,
    patchedAtMs: nowMs,
    awaiting,
    recentResizesAtMs: recent,
  };
}

/**
 * Whether the pod cache is behind this controller's own last patch (it shows
 * an older generation than the patch produced): the pod must not be judged
 * from it, or the same resize would be sent twice.
 */
export function cacheBehind(
  memory: PodMemory,
  pod: { uid: string; generation: number },
): boolean {
  const awaited = memory.awaiting ?? null;
  return awaited !== null && awaited.uid === pod.uid && pod.generation < awaited.generation;
}
