/**
 * What MBCAS manages, defined once for agent and controller: which pods are
 * opted in and eligible, which of their containers may be resized, how far
 * below its declared limit a container may go, and which other CPU users of
 * a pod (sidecars, init containers, pod overhead) the market must count.
 * Pure functions of Kubernetes objects.
 *
 * @module
 */
import type * as k8s from "@kubernetes/client-node";
import { parseMillicores } from "../api/core.ts";

/** Namespace label that opts every pod in the namespace in (`"true"`). */
export const MANAGED_LABEL = "mbcas.io/managed";
/** The prefix of every label and annotation key MBCAS reads or writes. */
export const MBCAS_KEY_PREFIX = "mbcas.io/";
/** Pod annotation that opts a pod in (`"true"`) or out (`"false"`), overriding its namespace. */
export const MANAGED_ANNOTATION = "mbcas.io/managed";
/** Pod annotation that allows resizing containers whose CPU resizePolicy restarts them (`"true"`). */
export const ALLOW_RESTART_ANNOTATION = "mbcas.io/allow-restart";
/**
 * Pod or namespace annotation: how far below its declared CPU limit MBCAS may
 * take a container. `request` (the default): down to the CPU request;
 * `declared`: never below the declared limit ("raise only"); `NN%`: never
 * below that share of the declared limit (nor below the request). A pod's
 * annotation wins over its namespace's.
 */
export const MIN_CPU_LIMIT_ANNOTATION = "mbcas.io/min-cpu-limit";
/** Annotation the kubelet puts on mirror pods (static pods), which the API never lets anyone resize. */
export const MIRROR_POD_ANNOTATION = "kubernetes.io/config.mirror";
/** The oldest kubelet minor version of 1.x that applies in-place resizes by default (beta in 1.33). */
export const MIN_KUBELET_MINOR = 33;

/** Why a pod is not managed; null when it is. */
export interface Ineligible {
  /** CamelCase reason, used in conditions, events and metrics. */
  reason:
    | "NotOptedIn"
    | "MirrorPod"
    | "Terminating"
    | "GuaranteedQoS"
    | "BestEffortQoS";
  /** Human-readable detail. */
  message: string;
}

/** Whether a pod is opted in: its annotation if set, else its namespace's label. */
export function optedIn(pod: k8s.V1Pod, namespace: k8s.V1Namespace | undefined): boolean {
  const annotation = pod.metadata?.annotations?.[MANAGED_ANNOTATION];
  if (annotation === "true" || annotation === "false") return annotation === "true";
  return namespace?.metadata?.labels?.[MANAGED_LABEL] === "true";
}

/**
 * Whether MBCAS manages a pod (whatever its phase): opted in, not a mirror
 * pod, not terminating, and Burstable. Returns null when it does, else why not.
 */
export function podIneligibility(
  pod: k8s.V1Pod,
  namespace: k8s.V1Namespace | undefined,
): Ineligible | null {
  if (!optedIn(pod, namespace)) {
    return {
      reason: "NotOptedIn",
      message: "neither the namespace label nor the pod annotation opts this pod in",
    };
  }
  if (pod.metadata?.annotations?.[MIRROR_POD_ANNOTATION] !== undefined) {
    return {
      reason: "MirrorPod",
      message: "a mirror (static) pod: its kubelet owns its spec and the API refuses resizes",
    };
  }
  if (pod.metadata?.deletionTimestamp !== undefined && pod.metadata.deletionTimestamp !== null) {
    return { reason: "Terminating", message: "the pod is terminating" };
  }
  const qos = pod.status?.qosClass;
  if (qos === "Guaranteed") {
    return {
      reason: "GuaranteedQoS",
      message: "Guaranteed pods are never resized: their limits must equal their requests",
    };
  }
  if (qos !== "Burstable") {
    return {
      reason: "BestEffortQoS",
      message: "BestEffort pods are never resized: they cannot gain resources",
    };
  }
  return null;
}

/** Why a container of a managed pod is left alone; null when MBCAS may resize it. */
export interface ContainerIneligible {
  /** CamelCase reason. */
  reason: "NoCPULimit" | "RestartRequired";
  /** Human-readable detail. */
  message: string;
}

/**
 * Whether MBCAS may resize one app container of a managed pod: it has a CPU
 * limit, and its CPU `resizePolicy` does not restart it (unless the pod allows
 * restarts with {@link ALLOW_RESTART_ANNOTATION}).
 */
export function containerIneligibility(
  container: k8s.V1Container,
  pod: k8s.V1Pod,
): ContainerIneligible | null {
  if (container.resources?.limits?.cpu === undefined) {
    return { reason: "NoCPULimit", message: `${container.name}: no CPU limit to adjust` };
  }
  const restarts = container.resizePolicy?.find((p) => p.resourceName === "cpu")
    ?.restartPolicy === "RestartContainer";
  if (restarts && pod.metadata?.annotations?.[ALLOW_RESTART_ANNOTATION] !== "true") {
    return {
      reason: "RestartRequired",
      message: `${container.name}: CPU resizePolicy is RestartContainer`,
    };
  }
  return null;
}

/** How far below its declared limit a container may go (see {@link MIN_CPU_LIMIT_ANNOTATION}). */
export type MinLimitRule =
  | { kind: "request" }
  | { kind: "declared" }
  | { kind: "fraction"; fraction: number };

/** The default rule: down to the request. */
export const DEFAULT_MIN_LIMIT: MinLimitRule = { kind: "request" };

/** Parses a {@link MIN_CPU_LIMIT_ANNOTATION} value; an error names the value. */
export function parseMinLimit(text: string): MinLimitRule | { error: string } {
  const value = text.trim();
  if (value === "request") return { kind: "request" };
  if (value === "declared") return { kind: "declared" };
  const match = /^(\d{1,3}(?:\.\d+)?)%$/.exec(value);
  if (match !== null) {
    const percent = Number(match[1]);
    if (percent >= 0 && percent <= 100) return { kind: "fraction", fraction: percent / 100 };
  }
  return {
    error: `annotation ${MIN_CPU_LIMIT_ANNOTATION}=${
      JSON.stringify(text)
    } is not "request", "declared" or a percentage such as "50%"`,
  };
}

/**
 * The rule for a pod: its annotation, else its namespace's, else the default.
 * An invalid value falls back to `declared` (raise only: a typo never lets
 * MBCAS cut deeper than the user meant), with a warning.
 */
export function minLimitRule(
  pod: k8s.V1Pod,
  namespace: k8s.V1Namespace | undefined,
): { rule: MinLimitRule; warning: string | null } {
  const text = pod.metadata?.annotations?.[MIN_CPU_LIMIT_ANNOTATION] ??
    namespace?.metadata?.annotations?.[MIN_CPU_LIMIT_ANNOTATION];
  if (text === undefined) return { rule: DEFAULT_MIN_LIMIT, warning: null };
  const parsed = parseMinLimit(text);
  if ("error" in parsed) {
    return { rule: { kind: "declared" }, warning: `${parsed.error}; using "declared"` };
  }
  return { rule: parsed, warning: null };
}

/**
 * Pod or namespace annotation: the pod's tier. `protected` (the default):
 * latency-sensitive; it keeps the CPU it needs, its limit rises at once and
 * comes down slowly. `elastic`: batch work; it runs on the CPU the protected
 * pods leave idle, its limit comes down at once when they need it back and
 * rises only in steps. A pod's annotation wins over its namespace's.
 */
export const TIER_ANNOTATION = "mbcas.io/tier";

/** The tiers of the market. */
export const TIERS = ["protected", "elastic"] as const;
/** A tier. */
export type Tier = typeof TIERS[number];

/**
 * A pod's tier from its (or its namespace's) `mbcas.io/tier` annotation. An
 * invalid value falls back to `protected` (a typo never exposes a pod to
 * immediate cuts), with a warning naming the value.
 */
export function tierOf(
  pod: k8s.V1Pod,
  namespace: k8s.V1Namespace | undefined,
): { tier: Tier; warning: string | null } {
  const text = pod.metadata?.annotations?.[TIER_ANNOTATION] ??
    namespace?.metadata?.annotations?.[TIER_ANNOTATION];
  if (text === undefined) return { tier: "protected", warning: null };
  if ((TIERS as readonly string[]).includes(text)) return { tier: text as Tier, warning: null };
  return {
    tier: "protected",
    warning: `annotation ${TIER_ANNOTATION}=${JSON.stringify(text)} is not one of ${
      TIERS.join(", ")
    }; using "protected"`,
  };
}

/** The lowest limit a container may get, millicores: never below its request. */
export function limitFloorMillicores(
  rule: MinLimitRule,
  requestMillicores: number,
  declaredLimitMillicores: number,
): number {
  switch (rule.kind) {
    case "request":
      return requestMillicores;
    case "declared":
      return Math.max(requestMillicores, declaredLimitMillicores);
    case "fraction":
      return Math.max(requestMillicores, Math.ceil(declaredLimitMillicores * rule.fraction));
  }
}

/** A CPU user of a pod that is not one of its app containers. */
export interface OtherCpuUser {
  /** Container name, or `overhead`. */
  name: string;
  /** What it is. */
  kind: "sidecar" | "init" | "overhead";
  /** CPU request, millicores (0 when none). */
  requestMillicores: number;
}

/**
 * The pod's CPU users besides its app containers, which the market counts but
 * never resizes: sidecars (init containers with `restartPolicy: Always`, which
 * run beside the app), init containers while the pod is not yet running, and
 * the pod's overhead (RuntimeClass).
 */
export function otherCpuUsers(pod: k8s.V1Pod): OtherCpuUser[] {
  const users: OtherCpuUser[] = [];
  const millis = (q: string | undefined) => (q === undefined ? 0 : parseMillicores(q) ?? 0);
  const starting = pod.status?.phase === "Pending";
  for (const c of pod.spec?.initContainers ?? []) {
    const sidecar = c.restartPolicy === "Always";
    if (!sidecar && !starting) continue;
    users.push({
      name: c.name,
      kind: sidecar ? "sidecar" : "init",
      requestMillicores: millis(c.resources?.requests?.cpu),
    });
  }
  const overhead = pod.spec?.overhead?.cpu;
  if (overhead !== undefined) {
    users.push({ name: "overhead", kind: "overhead", requestMillicores: millis(overhead) });
  }
  return users;
}

/**
 * Whether a kubelet version applies in-place resizes (1.33 or later); null
 * when the version cannot be read (then it is given the benefit of the doubt).
 */
export function kubeletSupportsResize(kubeletVersion: string | undefined): boolean | null {
  const match = /^v?(\d+)\.(\d+)/.exec(kubeletVersion ?? "");
  if (match === null) return null;
  const major = Number(match[1]);
  const minor = Number(match[2]);
  return major > 1 || (major === 1 && minor >= MIN_KUBELET_MINOR);
}

/** Label of the agents' heartbeat Leases (one per node, in the agents' namespace). */
export const HEARTBEAT_LABELS = {
  "app.kubernetes.io/name": "mbcas",
  "app.kubernetes.io/component": "agent-heartbeat",
} as const;
/** Label selector of the agents' heartbeat Leases. */
export const HEARTBEAT_LABEL_SELECTOR = Object.entries(HEARTBEAT_LABELS).map(([k, v]) =>
  `${k}=${v}`
)
  .join(",");
/**
 * How often an agent renews its heartbeat Lease, ms. While the agent clears
 * its market, the Lease vouches for every PodAllocation of its node, so an
 * allocation that did not change need not be rewritten to stay fresh.
 */
export const HEARTBEAT_PERIOD_MS = 10_000;

/** The heartbeat Lease's name for a node. */
export function heartbeatLeaseName(nodeName: string): string {
  return `mbcas-agent-${nodeName}`.slice(0, 253);
}

/** The node a heartbeat Lease speaks for (its holder), or null when it is not one. */
export function heartbeatNode(lease: k8s.V1Lease): string | null {
  const labels = lease.metadata?.labels ?? {};
  const isHeartbeat = Object.entries(HEARTBEAT_LABELS).every(([k, v]) => labels[k] === v);
  return isHeartbeat ? lease.spec?.holderIdentity ?? null : null;
}
