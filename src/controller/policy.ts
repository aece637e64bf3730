/**
 * The resize policy: a pure function from (what the agent wants, what the pod
 * is, what this controller remembers, the time) to what to do. It is where
 * MBCAS's safety lives; nothing here touches the API.
 *
 * Rules, in order: the pod must exist, be the pod the allocation was computed
 * for (UID), have opted in, and be Burstable; it must be running with
 * resources reported by the kubelet. A resize still in flight is followed, not
 * repeated: `Infeasible` backs off exponentially and never retries the same
 * value, `Deferred` waits, `Error` backs off, and a resize the kubelet has not
 * confirmed in time is reported as such. Then, per container: never below the
 * request, never above the configured cap or the node's allocatable; skip
 * containers whose CPU resize policy restarts them (unless allowed) and those
 * without a CPU limit; ignore changes smaller than the minimum; apply increases
 * at once; hold decreases for a cooldown after the last resize and cut at most
 * a fraction per step. Finally, never let the pod become Guaranteed.
 *
 * @module
 */

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
};

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
  /** Memory request and limit as written (only compared, for the QoS guard). */
  memoryRequest: string | null;
  /** Memory limit as written. */
  memoryLimit: string | null;
  /** The container's `resizePolicy` for CPU. */
  cpuRestartPolicy: "NotRequired" | "RestartContainer";
}

/** A kubelet resize condition on the pod. */
export interface ResizeCondition {
  /** `Deferred`, `Infeasible` (pending) or `Error` (in progress); unknown reasons count as `Deferred`. */
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
  /** `status.qosClass`. */
  qosClass: "Guaranteed" | "Burstable" | "BestEffort";
  /** `status.phase`. */
  phase: string;
  /** Opted in by namespace label or pod annotation. */
  optedIn: boolean;
  /** The pod allows resizes that restart containers (annotation). */
  allowRestart: boolean;
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
  /** Desired CPU limit per container. */
  containers: { name: string; cpuLimitMillicores: number }[];
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
  /** Summary state for status. */
  state: "Applied" | "Pending" | "Skipped" | "Failed";
  /** The three conditions. */
  conditions: PolicyCondition[];
  /** Reconcile again after this long even if nothing changes (cooldowns, backoffs, confirmation timeouts). */
  requeueAfterMs: number | null;
  /** The memory to keep. */
  memory: PodMemory;
  /** Why changes were held back or adjusted (reasons), for events and metrics. */
  reasons: string[];
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

/** Decides what to do for one PodAllocation and its pod at time `nowMs`. */
export function decide(
  nowMs: number,
  desired: DesiredAllocation,
  pod: PodState | undefined,
  memory: PodMemory,
  config: ResizePolicyConfig,
): Decision {
  const skip = (reason: string, message: string): Decision => ({
    patch: null,
    state: "Skipped",
    conditions: [
      { type: "Applied", status: "False", reason, message },
      { type: "ResizePending", status: "False", reason: "None", message: "no resize pending" },
      { type: "Skipped", status: "True", reason, message },
    ],
    requeueAfterMs: null,
    memory,
    reasons: [reason],
  });
  if (pod === undefined) return skip("PodNotFound", "the pod does not exist");
  if (pod.uid !== desired.podUID) {
    return skip(
      "PodUIDMismatch",
      `allocation is for pod UID ${desired.podUID}, the live pod is ${pod.uid} (recreated); ignored until the agent updates it`,
    );
  }
  if (!pod.optedIn) {
    return skip(
      "NotOptedIn",
      "neither the namespace label nor the pod annotation opts this pod in",
    );
  }
  if (pod.qosClass === "Guaranteed") {
    return skip(
      "GuaranteedQoS",
      "Guaranteed pods are never resized: their limits must equal their requests",
    );
  }
  if (pod.qosClass === "BestEffort") {
    return skip("BestEffortQoS", "BestEffort pods are never resized: they cannot gain resources");
  }
  if (pod.phase !== "Running" || pod.containers.some((c) => !c.reported)) {
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
        { type: "ResizePending", status: "False", reason: "None", message: "no resize pending" },
        { type: "Skipped", status: "False", reason: "Managed", message: "managed" },
      ],
    };
  }

  const reasons: string[] = [];
  let mem: PodMemory = { ...memory };
  let requeue: number | null = null;
  const later = (ms: number) => (requeue = requeue === null ? ms : Math.min(requeue, ms));

  // 1. A resize in flight: spec and kubelet-reported limits differ.
  const inFlight = pod.containers.some((c) => c.cpuLimitMillicores !== c.appliedCpuLimitMillicores);
  let pending: PolicyCondition = {
    type: "ResizePending",
    status: "False",
    reason: "None",
    message: "no resize pending",
  };
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

  // 2. Per-container targets.
  const skipped: string[] = [];
  const patch = new Map<string, number>();
  for (const want of desired.containers) {
    const c = pod.containers.find((x) => x.name === want.name);
    if (c === undefined) {
      skipped.push(`${want.name}: no such container`);
      reasons.push("ContainerNotFound");
      continue;
    }
    if (c.cpuRestartPolicy === "RestartContainer" && !pod.allowRestart) {
      skipped.push(`${c.name}: CPU resizePolicy is RestartContainer`);
      reasons.push("RestartRequired");
      continue;
    }
    const limit = current(c);
    if (limit === null) {
      skipped.push(`${c.name}: no CPU limit to adjust`);
      reasons.push("NoCPULimit");
      continue;
    }
    let target = want.cpuLimitMillicores;
    const request = c.cpuRequestMillicores ?? 0;
    const caps = [config.maxLimitMillicores, pod.nodeAllocatableMillicores].filter((
      x,
    ): x is number => x !== null);
    const cap = caps.length > 0 ? Math.max(request, Math.min(...caps)) : Number.POSITIVE_INFINITY;
    if (target < request) {
      target = request;
      reasons.push("ClampedToRequest");
    }
    if (target > cap) {
      target = cap;
      reasons.push("ClampedToCap");
    }
    const minChange = Math.max(config.minChangeMillicores, config.minChangeFraction * limit);
    if (Math.abs(target - limit) < minChange) {
      // After a failed resize, asking for (about) what is in force withdraws the failed request.
      if (failed && c.cpuLimitMillicores !== limit) {
        patch.set(c.name, target);
        reasons.push("WithdrawFailedResize");
      }
      continue;
    }
    if (target < limit) {
      const heldUntil = mem.lastResizeAtMs === null
        ? nowMs
        : mem.lastResizeAtMs + config.cooldownMs;
      if (nowMs < heldUntil) {
        reasons.push("Cooldown");
        later(heldUntil - nowMs);
        continue;
      }
      target = Math.max(target, Math.ceil(limit * (1 - config.maxStepDownFraction)));
      if (target > request) later(config.cooldownMs); // more steps may follow
    }
    patch.set(c.name, target);
  }

  // 3. Never turn the pod Guaranteed: requests == limits for every resource of every container.
  if (patch.size > 0) {
    const limitOf = (c: ContainerState) => patch.get(c.name) ?? c.cpuLimitMillicores;
    const guaranteed = pod.containers.every((c) =>
      c.cpuRequestMillicores !== null && limitOf(c) === c.cpuRequestMillicores &&
      c.memoryRequest !== null && c.memoryRequest === c.memoryLimit
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

  // 4. Backoffs: nothing new while one runs; never the same infeasible value again.
  let result: { name: string; cpuLimitMillicores: number }[] | null = null;
  if (patch.size > 0) {
    if (blockUntilMs !== null) {
      later(blockUntilMs - nowMs);
      reasons.push("Backoff");
    } else {
      const next = Object.fromEntries(
        pod.containers.map((c) => [c.name, patch.get(c.name) ?? c.cpuLimitMillicores ?? 0]),
      );
      const sameAsInfeasible = mem.infeasible !== null &&
        pod.containers.every((c) => mem.infeasible!.limits[c.name] === next[c.name]);
      if (sameAsInfeasible) reasons.push("KnownInfeasible");
      else result = [...patch].map(([name, cpuLimitMillicores]) => ({ name, cpuLimitMillicores }));
    }
  }

  const allSkipped = skipped.length === desired.containers.length && desired.containers.length > 0;
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
    : {
      type: "Applied",
      status: "True",
      reason: reasons.includes("Cooldown") ? "HeldByCooldown" : "InSync",
      message: reasons.includes("Cooldown")
        ? "limits applied; a decrease waits for the cooldown"
        : "the kubelet reports the allocated limits",
    };
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
  };
}

function firstSkipReason(reasons: string[]): string {
  return reasons.find((r) =>
    r === "RestartRequired" || r === "NoCPULimit" || r === "ContainerNotFound"
  ) ?? "Skipped";
}

/** Records a successful `pods/resize` patch in the memory. */
export function recordPatch(memory: PodMemory, nowMs: number): PodMemory {
  return { ...memory, lastResizeAtMs: nowMs, patchedAtMs: nowMs };
}
