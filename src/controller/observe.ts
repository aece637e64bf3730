/**
 * Pure translations between Kubernetes objects and the policy's plain data:
 * pods and their opt-in into {@link PodState}, PodAllocations into
 * {@link DesiredAllocation}, and decisions into PodAllocation status.
 *
 * @module
 */
import type * as k8s from "@kubernetes/client-node";
import {
  type Condition,
  formatMillicores,
  parseMillicores,
  type PodAllocation,
  type PodAllocationStatus,
} from "../api/mod.ts";
import {
  containerIneligibility,
  kubeletSupportsResize,
  MBCAS_KEY_PREFIX,
  minLimitRule,
  MIRROR_POD_ANNOTATION,
  podIneligibility,
  tierOf,
} from "../managed/mod.ts";
import {
  type BaselineLimits,
  type Decision,
  type DesiredAllocation,
  MAX_RECENT_RESIZES,
  newestResizes,
  type NodeAgreementCondition,
  type PodMemory,
  type PodState,
  RESIZE_BUDGET_WINDOW_MS,
  type ResizeCondition,
  type RestoreIntent,
} from "./policy.ts";

export {
  ALLOW_RESTART_ANNOTATION,
  MANAGED_ANNOTATION,
  MANAGED_LABEL,
  MIN_CPU_LIMIT_ANNOTATION,
  optedIn,
} from "../managed/mod.ts";

function condition(pod: k8s.V1Pod, type: string): ResizeCondition | null {
  const c = pod.status?.conditions?.find((x) => x.type === type && x.status === "True") as
    | (k8s.V1PodCondition & { observedGeneration?: number })
    | undefined;
  if (c === undefined) return null;
  return {
    reason: c.reason ?? "",
    message: c.message ?? "",
    observedGeneration: c.observedGeneration ?? null,
  };
}

// deno-lint-ignore no-explicit-any
type Json = any;

/** Only the entries of `record` whose keys pass `keep`; undefined when none do. */
function pick(
  record: Record<string, string> | undefined,
  keep: (key: string) => boolean,
): Record<string, string> | undefined {
  const kept = Object.entries(record ?? {}).filter(([key]) => keep(key));
  return kept.length === 0 ? undefined : Object.fromEntries(kept);
}

/** CPU and memory of a `resources` block (requests, limits), the rest dropped. */
function slimResources(resources: Json): k8s.V1ResourceRequirements | undefined {
  if (resources === undefined || resources === null) return undefined;
  const part = (values: Json) =>
    values === undefined || values === null
      ? undefined
      : pick(values, (k) => k === "cpu" || k === "memory");
  return { requests: part(resources.requests), limits: part(resources.limits) };
}

/** The metadata every cached object keeps: identity and version. */
function slimMeta(meta: Json): k8s.V1ObjectMeta {
  return {
    name: meta?.name,
    namespace: meta?.namespace,
    uid: meta?.uid,
    resourceVersion: meta?.resourceVersion,
  };
}

/**
 * A pod reduced to what the controller reads ({@link podState},
 * {@link statusFor}, events, resizes): identity, generation, deletion, MBCAS's
 * own annotations and the mirror-pod one, the node, each app container's
 * name, CPU and memory resources and resize policy, and status phase, QoS
 * class, conditions and each container's reported resources. managedFields,
 * volumes, env, images, probes and the like are dropped before the cache
 * stores the pod. Idempotent.
 */
export function slimPod(object: unknown): k8s.V1Pod {
  const pod = object as Json;
  const meta = pod?.metadata;
  return {
    metadata: {
      ...slimMeta(meta),
      generation: meta?.generation,
      deletionTimestamp: meta?.deletionTimestamp,
      annotations: pick(
        meta?.annotations,
        (k) => k.startsWith(MBCAS_KEY_PREFIX) || k === MIRROR_POD_ANNOTATION,
      ),
    },
    spec: {
      nodeName: pod?.spec?.nodeName,
      containers: (pod?.spec?.containers ?? []).map((c: Json) => ({
        name: c.name,
        resources: slimResources(c.resources),
        resizePolicy: c.resizePolicy,
      })),
    },
    status: {
      phase: pod?.status?.phase,
      qosClass: pod?.status?.qosClass,
      conditions: pod?.status?.conditions?.map((c: Json) => ({
        type: c.type,
        status: c.status,
        reason: c.reason,
        message: c.message,
        observedGeneration: c.observedGeneration,
      })),
      containerStatuses: pod?.status?.containerStatuses?.map((c: Json) => ({
        name: c.name,
        resources: slimResources(c.resources),
      })),
    },
  } as k8s.V1Pod;
}

/** A node reduced to what the controller reads: its name, allocatable CPU and kubelet version. Idempotent. */
export function slimNode(object: unknown): k8s.V1Node {
  const node = object as Json;
  return {
    metadata: slimMeta(node?.metadata),
    status: {
      allocatable: pick(node?.status?.allocatable, (k) => k === "cpu"),
      nodeInfo: { kubeletVersion: node?.status?.nodeInfo?.kubeletVersion },
    },
  } as k8s.V1Node;
}

/** A namespace reduced to its identity and MBCAS's labels and annotations (opt-in, tier, rules). Idempotent. */
export function slimNamespace(object: unknown): k8s.V1Namespace {
  const meta = (object as Json)?.metadata;
  const mbcas = (k: string) => k.startsWith(MBCAS_KEY_PREFIX);
  return {
    metadata: {
      ...slimMeta(meta),
      labels: pick(meta?.labels, mbcas),
      annotations: pick(meta?.annotations, mbcas),
    },
  };
}

/** The reason of a pod's `PodResizePending` condition (`Deferred`, `Infeasible`), or null without one. */
export function resizePendingReason(pod: k8s.V1Pod): string | null {
  return condition(pod, "PodResizePending")?.reason ?? null;
}

/** What {@link staleness} needs of a PodAllocation's spec. */
export interface FreshnessSpec {
  /** The node whose agent vouches for the allocation. */
  nodeName: string;
  /** When the agent computed it (RFC 3339) and its market interval, seconds (default 5). */
  market: { computedAt: string; intervalSeconds?: number };
}

/** The fields {@link staleness} reads from an unvalidated PodAllocation spec; null when they are missing or malformed. */
export function freshnessSpec(spec: unknown): FreshnessSpec | null {
  if (typeof spec !== "object" || spec === null) return null;
  const { nodeName, market } = spec as { nodeName?: unknown; market?: unknown };
  if (typeof nodeName !== "string" || typeof market !== "object" || market === null) return null;
  const { computedAt, intervalSeconds } = market as {
    computedAt?: unknown;
    intervalSeconds?: unknown;
  };
  if (typeof computedAt !== "string" || !Number.isFinite(Date.parse(computedAt))) return null;
  if (intervalSeconds !== undefined && typeof intervalSeconds !== "number") return null;
  return {
    nodeName,
    market: { computedAt, ...(intervalSeconds === undefined ? {} : { intervalSeconds }) },
  };
}

/**
 * Why a PodAllocation is stale, or null while its agent vouches for it:
 * stale when neither the allocation (`computedAt`) nor its node's agent
 * heartbeat (`heartbeatSeenAtMs`, the controller's clock when it last saw
 * the heartbeat renewed) is younger than `staleAfterIntervals` market
 * intervals, and never within 30 s.
 */
export function staleness(
  spec: FreshnessSpec,
  heartbeatSeenAtMs: number | undefined,
  staleAfterIntervals: number,
  nowMs: number,
): RestoreIntent | null {
  const intervalMs = (spec.market.intervalSeconds ?? 5) * 1000;
  const windowMs = Math.max(staleAfterIntervals * intervalMs, 30_000);
  const computedAt = Date.parse(spec.market.computedAt);
  const freshAt = Math.max(
    Number.isFinite(computedAt) ? computedAt : Number.NEGATIVE_INFINITY,
    heartbeatSeenAtMs ?? Number.NEGATIVE_INFINITY,
  );
  if (nowMs - freshAt <= windowMs) return null;
  const limit = `(limit ${Math.round(windowMs / 1000)} s)`;
  const since = Number.isFinite(freshAt)
    ? `was refreshed for ${Math.round((nowMs - freshAt) / 1000)} s`
    : "has a known refresh time";
  return {
    reason: "Stale",
    message:
      `neither the allocation nor the agent's heartbeat on node ${spec.nodeName} ${since} ${limit}`,
  };
}

/** The policy's view of a live pod. */
export function podState(
  pod: k8s.V1Pod,
  namespace: k8s.V1Namespace | undefined,
  node: k8s.V1Node | undefined,
): PodState {
  const statuses = pod.status?.containerStatuses ?? [];
  const millis = (q: string | undefined) => (q === undefined ? null : parseMillicores(q));
  const allocatable = millis(node?.status?.allocatable?.cpu);
  return {
    uid: pod.metadata?.uid ?? "",
    nodeName: pod.spec?.nodeName ?? null,
    phase: pod.status?.phase ?? "Unknown",
    ineligible: podIneligibility(pod, namespace),
    kubeletSupportsResize: node === undefined
      ? null
      : kubeletSupportsResize(node.status?.nodeInfo?.kubeletVersion),
    minLimit: minLimitRule(pod, namespace).rule,
    tier: tierOf(pod, namespace).tier,
    generation: pod.metadata?.generation ?? 1,
    nodeAllocatableMillicores: allocatable,
    resizePending: condition(pod, "PodResizePending"),
    resizeInProgress: condition(pod, "PodResizeInProgress"),
    containers: (pod.spec?.containers ?? []).map((c) => {
      const status = statuses.find((s) => s.name === c.name);
      return {
        name: c.name,
        cpuRequestMillicores: millis(c.resources?.requests?.cpu),
        cpuLimitMillicores: millis(c.resources?.limits?.cpu),
        appliedCpuLimitMillicores: millis(status?.resources?.limits?.cpu),
        reported: status?.resources !== undefined,
        memoryRequest: c.resources?.requests?.memory ?? null,
        memoryLimit: c.resources?.limits?.memory ?? null,
        ineligible: containerIneligibility(c, pod),
      };
    }),
  };
}

/** What a (validated) PodAllocation asks for, in millicores. */
export function desiredAllocation(pa: PodAllocation): DesiredAllocation {
  return {
    podUID: pa.spec.podUID,
    nodeName: pa.spec.nodeName,
    containers: pa.spec.containers.map((c) => ({
      name: c.name,
      cpuLimitMillicores: parseMillicores(c.cpuLimit)!,
      ...(c.evidence?.measured === false ? { measured: false } : {}),
    })),
  };
}

/** The recorded baseline of a PodAllocation's status; null when none was recorded. */
export function baselineFromStatus(status: PodAllocationStatus | undefined): BaselineLimits | null {
  const baseline = status?.baseline;
  if (baseline === undefined) return null;
  return {
    recordedAtMs: Date.parse(baseline.recordedAt),
    limits: Object.fromEntries(
      baseline.containers.map((c) => [c.name, parseMillicores(c.cpuLimit)!]),
    ),
  };
}

/**
 * What a controller that has not reconciled this PodAllocation before (a new
 * leader, a restart) knows of it: the last resize time, the resizes of the
 * budget's window and the Infeasible limits, from status. In-flight
 * bookkeeping (when a patch was sent, error backoffs) starts afresh.
 *
 * `live` is the pod as the cache shows it now: every generation past the one
 * status recorded is a resize no status recorded (a leader killed between its
 * patch and its status write, or someone else's change), counted at `nowMs`,
 * so the budget and the cooldown hold across the failover.
 */
export function memoryFromStatus(
  status: PodAllocationStatus | undefined,
  live?: { generation: number; nowMs: number },
): PodMemory {
  const recorded = (status?.recentResizeTimes ?? []).map((t) => Date.parse(t));
  const unrecorded = live === undefined || status?.podGeneration === undefined
    ? 0
    : Math.min(Math.max(0, live.generation - status.podGeneration), MAX_RECENT_RESIZES);
  const unrecordedAt = Array.from({ length: unrecorded }, () => live!.nowMs);
  const lastResize = unrecorded > 0
    ? live!.nowMs
    : status?.lastResizeTime
    ? Date.parse(status.lastResizeTime)
    : null;
  const infeasible = status?.infeasible;
  return {
    lastResizeAtMs: lastResize,
    recentResizesAtMs: newestResizes([...recorded, ...unrecordedAt]),
    patchedAtMs: null,
    infeasible: infeasible === undefined ? null : {
      limits: Object.fromEntries(
        infeasible.containers.map((c) => [c.name, parseMillicores(c.cpuLimit)!]),
      ),
      generation: infeasible.observedGeneration,
      attempts: infeasible.attempts,
      untilMs: Date.parse(infeasible.retryAfter),
    },
    errors: null,
  };
}

/**
 * The status to record for a decision: applied values as the kubelet reports
 * them, conditions whose transition times only move when their status does,
 * the last resize time, the baseline (once recorded, never changed) and the
 * Infeasible limits to remember, and the pod's generation it was written
 * against. `nodeAgreement`, when given, is recorded after the decision's
 * conditions.
 */
export function statusFor(
  decision: Pick<Decision, "state" | "conditions"> & {
    baseline?: BaselineLimits | null;
    memory?: PodMemory;
    nodeAgreement?: NodeAgreementCondition;
  },
  pod: k8s.V1Pod | undefined,
  generation: number,
  previous: PodAllocationStatus | undefined,
  now: Date,
  resizedAt: Date | null,
): PodAllocationStatus {
  const judged = decision.nodeAgreement === undefined
    ? decision.conditions
    : [...decision.conditions, decision.nodeAgreement];
  const conditions: Condition[] = judged.map((c) => {
    const old = previous?.conditions?.find((p) => p.type === c.type);
    return {
      ...c,
      observedGeneration: generation,
      lastTransitionTime: old !== undefined && old.status === c.status
        ? old.lastTransitionTime
        : now.toISOString(),
    };
  });
  const containers = (pod?.status?.containerStatuses ?? [])
    .filter((s) => s.resources?.limits?.cpu !== undefined)
    .map((s) => ({
      name: s.name,
      cpuLimit: formatMillicores(parseMillicores(s.resources!.limits!.cpu!)!),
      ...(s.resources?.requests?.cpu ? { cpuRequest: s.resources.requests.cpu } : {}),
    }));
  const lastResizeTime = resizedAt?.toISOString() ?? previous?.lastResizeTime;
  const baseline = previous?.baseline ?? baselineStatus(decision.baseline ?? null);
  const infeasible = decision.memory === undefined
    ? previous?.infeasible
    : infeasibleStatus(decision.memory);
  // The per-pod resize budget's window, so a new leader counts the same resizes.
  const inWindow = (t: number) => t > now.getTime() - RESIZE_BUDGET_WINDOW_MS;
  const fresh = decision.memory?.recentResizesAtMs
    ?.filter(inWindow)
    .map((t) => new Date(t).toISOString()) ??
    previous?.recentResizeTimes?.filter((t) => inWindow(Date.parse(t)));
  const status = (recent: string[] | undefined): PodAllocationStatus => ({
    observedGeneration: generation,
    state: decision.state,
    ...(containers.length > 0 ? { containers } : {}),
    conditions,
    ...(lastResizeTime ? { lastResizeTime } : {}),
    ...(baseline ? { baseline } : {}),
    ...(infeasible ? { infeasible } : {}),
    ...(recent !== undefined && recent.length > 0 ? { recentResizeTimes: recent } : {}),
    ...(pod?.metadata?.generation !== undefined
      ? { podGeneration: pod.metadata.generation }
      : previous?.podGeneration !== undefined
      ? { podGeneration: previous.podGeneration }
      : {}),
  });
  // Resizes that only aged out of the window are no reason to write (every reader filters
  // by the window): when nothing else changed, the recorded list stays as it is.
  const recorded = previous?.recentResizeTimes;
  if (
    fresh !== undefined && recorded !== undefined &&
    sameTimes(fresh, recorded.filter((t) => inWindow(Date.parse(t))))
  ) {
    const unchanged = status(recorded);
    if (!statusChanged(previous, unchanged)) return unchanged;
  }
  return status(fresh);
}

/** A status this replica wrote, and the resourceVersion its cache showed when it wrote it. */
export interface WrittenStatus {
  /** The cached PodAllocation's resourceVersion at the time of the write. */
  basedOn: string | undefined;
  /** The status written. */
  status: PodAllocationStatus;
}

/**
 * The status to compare a new one with: what this replica wrote, while its
 * cache still shows the version it wrote against (the write is not in the
 * cache yet); otherwise the cached status. Without it, a reconcile between a
 * write and its watch event writes the same status again.
 */
export function lastKnownStatus(
  written: WrittenStatus | undefined,
  cachedResourceVersion: string | undefined,
  cached: PodAllocationStatus | undefined,
): PodAllocationStatus | undefined {
  return written !== undefined && written.basedOn === cachedResourceVersion
    ? written.status
    : cached;
}

/** Whether two lists of RFC 3339 times name the same instants, in order. */
function sameTimes(a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((t, i) => Date.parse(t) === Date.parse(b[i]));
}

/** A baseline as status records it. */
export function baselineStatus(baseline: BaselineLimits | null): PodAllocationStatus["baseline"] {
  if (baseline === null) return undefined;
  return {
    recordedAt: new Date(baseline.recordedAtMs).toISOString(),
    containers: Object.entries(baseline.limits).map(([name, millicores]) => ({
      name,
      cpuLimit: formatMillicores(millicores),
    })),
  };
}

function infeasibleStatus(memory: PodMemory): PodAllocationStatus["infeasible"] {
  const record = memory.infeasible;
  if (record === null) return undefined;
  return {
    containers: Object.entries(record.limits).filter(([, m]) => m > 0).map(([name, m]) => ({
      name,
      cpuLimit: formatMillicores(m),
    })),
    observedGeneration: record.generation,
    attempts: record.attempts,
    retryAfter: new Date(record.untilMs).toISOString(),
  };
}

/**
 * Whether two statuses differ in anything but condition timestamps. Key order
 * does not count: the API server returns a custom resource's fields sorted,
 * not in the order they were written.
 */
export function statusChanged(a: PodAllocationStatus | undefined, b: PodAllocationStatus): boolean {
  const strip = (s: PodAllocationStatus | undefined) =>
    JSON.stringify(sortedKeys({
      ...s,
      conditions: s?.conditions?.map(({ lastTransitionTime: _t, ...rest }) => rest),
    }));
  return strip(a) !== strip(b);
}

/** `value` with every object's keys in sorted order (arrays keep theirs). */
function sortedKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortedKeys);
  if (value === null || typeof value !== "object") return value;
  return Object.fromEntries(
    Object.keys(value).sort().map((k) => [k, sortedKeys((value as Record<string, unknown>)[k])]),
  );
}
