/**
 * The `PodAllocation` custom resource (`allocation.mbcas.io/v1alpha1`): types
 * and zod schemas, the single TypeScript source of truth for the CRD in
 * `deploy/crd/`. A test checks both accept and reject the same objects.
 *
 * @module
 */
import { z } from "zod";
import { isQuantity, parseMillicores } from "./quantity.ts";
import { API_VERSION, KIND, TIER_VALUES } from "./_names.ts";
export {
  API_VERSION,
  GROUP,
  KIND,
  PLURAL,
  podAllocationPath,
  RESTORE_FINALIZER,
  TIER_VALUES,
  VERSION,
} from "./_names.ts";

const POD_UID = /^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{32})$/;
const REASON = /^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$/;

const cpuQuantity = (field: string) =>
  z.string().max(32).refine((text) => isQuantity(text) && (parseMillicores(text) ?? 0) > 0, {
    error: (issue) =>
      `${field} must be a positive CPU quantity such as 250m or 1.5, got ${
        JSON.stringify(issue.input)
      }`,
  });

const cpuAmount = (field: string) =>
  z.string().max(32).refine((text) => isQuantity(text) && (parseMillicores(text) ?? -1) >= 0, {
    error: (issue) =>
      `${field} must be a non-negative CPU quantity such as 0, 250m or 1.5, got ${
        JSON.stringify(issue.input)
      }`,
  });

/** Market evidence behind one container's allocation. */
export const evidenceSchema = z.object({
  demandMillicores: z.number().int().min(0),
  weight: z.number().gt(0),
  floorMillicores: z.number().int().min(0),
  capMillicores: z.number().int().min(0),
  usageMillicores: z.number().int().min(0).optional(),
  throttledRatio: z.number().min(0).max(1).optional(),
  measured: z.boolean().optional(),
}).refine((e) => e.floorMillicores <= e.capMillicores, {
  message: "floorMillicores must not exceed capMillicores",
});

/** One container's desired CPU. */
export const containerAllocationSchema = z.object({
  name: z.string().min(1).max(63),
  cpuLimit: cpuQuantity("cpuLimit"),
  cpuGuarantee: cpuAmount("cpuGuarantee").optional(),
  cpuRequest: cpuQuantity("cpuRequest").optional(),
  evidence: evidenceSchema.optional(),
}).refine(
  (c) =>
    c.cpuRequest === undefined || parseMillicores(c.cpuLimit)! >= parseMillicores(c.cpuRequest)!,
  { message: "cpuLimit must not be below cpuRequest" },
).refine(
  (c) =>
    c.cpuGuarantee === undefined ||
    parseMillicores(c.cpuLimit)! >= parseMillicores(c.cpuGuarantee)!,
  { message: "cpuLimit must not be below cpuGuarantee" },
);

/** The spec, written by the agent. */
export const podAllocationSpecSchema = z.object({
  podName: z.string().min(1).max(253),
  podUID: z.string().regex(POD_UID, "podUID must be a pod UID"),
  nodeName: z.string().min(1).max(253),
  tier: z.enum(TIER_VALUES).optional(),
  containers: z.array(containerAllocationSchema).min(1).max(64).refine(
    (list) => new Set(list.map((c) => c.name)).size === list.length,
    { message: "container names must be unique" },
  ),
  market: z.object({
    price: z.number().min(0).nullable().optional(),
    capacityMillicores: z.number().int().min(0),
    contended: z.boolean(),
    computedAt: z.iso.datetime({ offset: true }),
    intervalSeconds: z.number().gt(0).max(3600).optional(),
    elasticBudgetMillicores: z.number().int().min(0).optional(),
  }),
  originalCpuWeight: z.number().int().min(1).max(262_144).optional(),
});

/** A status condition. */
export const conditionSchema = z.object({
  type: z.enum(["Applied", "ResizePending", "Skipped", "NodeAgreement"]),
  status: z.enum(["True", "False", "Unknown"]),
  reason: z.string().max(1024).regex(REASON),
  message: z.string().max(32768),
  lastTransitionTime: z.iso.datetime({ offset: true }),
  observedGeneration: z.number().int().min(0).optional(),
});

const containerLimitsSchema = z.array(z.object({
  name: z.string().min(1).max(63),
  cpuLimit: cpuQuantity("cpuLimit"),
})).max(64);

/** The declared CPU limits, recorded before MBCAS first changes a pod: what every restore goes back to. */
export const baselineSchema = z.object({
  recordedAt: z.iso.datetime({ offset: true }),
  containers: containerLimitsSchema,
});

/** Limits the kubelet found Infeasible: never asked for again, and a backoff before any other value. */
export const infeasibleSchema = z.object({
  containers: containerLimitsSchema,
  observedGeneration: z.number().int().min(0),
  attempts: z.number().int().min(1),
  retryAfter: z.iso.datetime({ offset: true }),
});

/** The status, written by the controller. */
export const podAllocationStatusSchema = z.object({
  observedGeneration: z.number().int().min(0).optional(),
  state: z.enum(["Applied", "Pending", "Skipped", "Failed", "Restored"]).optional(),
  baseline: baselineSchema.optional(),
  infeasible: infeasibleSchema.optional(),
  lastResizeTime: z.iso.datetime({ offset: true }).optional(),
  recentResizeTimes: z.array(z.iso.datetime({ offset: true })).max(16).optional(),
  podGeneration: z.number().int().min(0).optional(),
  containers: z.array(z.object({
    name: z.string(),
    cpuLimit: z.string().optional(),
    cpuRequest: z.string().optional(),
  })).optional(),
  conditions: z.array(conditionSchema).refine(
    (list) => new Set(list.map((c) => c.type)).size === list.length,
    { message: "condition types must be unique" },
  ).optional(),
});

/** A whole PodAllocation object. */
export const podAllocationSchema = z.object({
  apiVersion: z.literal(API_VERSION),
  kind: z.literal(KIND),
  metadata: z.looseObject({
    name: z.string().min(1),
    namespace: z.string().min(1).optional(),
    uid: z.string().optional(),
    resourceVersion: z.string().optional(),
    generation: z.number().int().optional(),
  }),
  spec: podAllocationSpecSchema,
  status: podAllocationStatusSchema.optional(),
}).refine((pa) => pa.metadata.name === pa.spec.podName, {
  message: "metadata.name must equal spec.podName: a PodAllocation is named after its pod",
  path: ["metadata", "name"],
});

/** A PodAllocation. */
export type PodAllocation = z.infer<typeof podAllocationSchema>;
/** Its spec. */
export type PodAllocationSpec = z.infer<typeof podAllocationSpecSchema>;
/** Its status. */
export type PodAllocationStatus = z.infer<typeof podAllocationStatusSchema>;
/** One container's desired CPU. */
export type ContainerAllocation = z.infer<typeof containerAllocationSchema>;
/** The recorded declared limits. */
export type Baseline = z.infer<typeof baselineSchema>;
/** A remembered Infeasible resize. */
export type InfeasibleRecord = z.infer<typeof infeasibleSchema>;
/** A status condition. */
export type Condition = z.infer<typeof conditionSchema>;

/** The outcome of validating untrusted data as a PodAllocation. */
export type Validated = { ok: true; value: PodAllocation } | { ok: false; error: string };

/** Validates untrusted data (e.g. from a watch) as a PodAllocation; the error names the field path and problem. */
export function validatePodAllocation(raw: unknown): Validated {
  const result = podAllocationSchema.safeParse(raw);
  if (result.success) return { ok: true, value: result.data };
  const issue = result.error.issues[0];
  const path = issue.path.map((p) => (typeof p === "number" ? `[${p}]` : `.${String(p)}`)).join("");
  return { ok: false, error: `${path.replace(/^\./, "") || "object"}: ${issue.message}` };
}
