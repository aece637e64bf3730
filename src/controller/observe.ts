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
import type { Decision, DesiredAllocation, PodState, ResizeCondition } from "./policy.ts";

/** Namespace label that opts every pod in the namespace in (`"true"`). */
export const MANAGED_LABEL = "mbcas.io/managed";
/** Pod annotation that opts a pod in (`"true"`) or out (`"false"`), overriding its namespace. */
export const MANAGED_ANNOTATION = "mbcas.io/managed";
/** Pod annotation that allows resizing containers whose CPU resizePolicy restarts them (`"true"`). */
export const ALLOW_RESTART_ANNOTATION = "mbcas.io/allow-restart";

/** Whether a pod is opted in: its annotation if set, else its namespace's label. */
export function optedIn(pod: k8s.V1Pod, namespace: k8s.V1Namespace | undefined): boolean {
  const annotation = pod.metadata?.annotations?.[MANAGED_ANNOTATION];
  if (annotation === "true" || annotation === "false") return annotation === "true";
  return namespace?.metadata?.labels?.[MANAGED_LABEL] === "true";
}

function condition(pod: k8s.V1Pod, type: string): ResizeCondition | null {
  const c = pod.status?.conditions?.find((x) => x.type === type && x.status === "True") as
    | (k8s.V1PodCondition & { observedGeneration?: number })
    | undefined;
  if (c === undefined) return null;
  return {
    reason: c.reason ?? "Deferred",
    message: c.message ?? "",
    observedGeneration: c.observedGeneration ?? null,
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
    qosClass: (pod.status?.qosClass ?? "BestEffort") as PodState["qosClass"],
    phase: pod.status?.phase ?? "Unknown",
    optedIn: optedIn(pod, namespace),
    allowRestart: pod.metadata?.annotations?.[ALLOW_RESTART_ANNOTATION] === "true",
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
        cpuRestartPolicy: c.resizePolicy?.find((p) =>
            p.resourceName === "cpu"
          )?.restartPolicy === "RestartContainer"
          ? "RestartContainer"
          : "NotRequired",
      };
    }),
  };
}

/** What a (validated) PodAllocation asks for, in millicores. */
export function desiredAllocation(pa: PodAllocation): DesiredAllocation {
  return {
    podUID: pa.spec.podUID,
    containers: pa.spec.containers.map((c) => ({
      name: c.name,
      cpuLimitMillicores: parseMillicores(c.cpuLimit)!,
    })),
  };
}

/**
 * The status to record for a decision: applied values as the kubelet reports
 * them, conditions whose transition times only move when their status does,
 * and the last resize time.
 */
export function statusFor(
  decision: Pick<Decision, "state" | "conditions">,
  pod: k8s.V1Pod | undefined,
  generation: number,
  previous: PodAllocationStatus | undefined,
  now: Date,
  resizedAt: Date | null,
): PodAllocationStatus {
  const conditions: Condition[] = decision.conditions.map((c) => {
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
  return {
    observedGeneration: generation,
    state: decision.state,
    ...(containers.length > 0 ? { containers } : {}),
    conditions,
    ...(lastResizeTime ? { lastResizeTime } : {}),
  };
}

/** Whether two statuses differ in anything but condition timestamps. */
export function statusChanged(a: PodAllocationStatus | undefined, b: PodAllocationStatus): boolean {
  const strip = (s: PodAllocationStatus | undefined) =>
    JSON.stringify({
      ...s,
      conditions: s?.conditions?.map(({ lastTransitionTime: _t, ...rest }) => rest),
    });
  return strip(a) !== strip(b);
}
