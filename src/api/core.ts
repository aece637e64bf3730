/**
 * The zod-free part of the PodAllocation API: its names, its types and CPU
 * quantities. The agent imports this, not mod.ts, so that it never loads zod
 * (several MB of a process's memory, paid on every node); mod.ts is this plus
 * the zod schemas and `validatePodAllocation`, for the controller and the
 * CLIs, which validate what they read.
 *
 * @example
 * ```ts
 * import { API_VERSION, formatMillicores, parseMillicores } from "./core.ts";
 *
 * console.log(API_VERSION, formatMillicores(parseMillicores("1.5")! / 2)); // allocation.mbcas.io/v1alpha1 750m
 * ```
 *
 * @module
 */
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
export { formatMillicores, isQuantity, parseMillicores, quantitiesEqual } from "./quantity.ts";
export type {
  Baseline,
  Condition,
  ContainerAllocation,
  InfeasibleRecord,
  PodAllocation,
  PodAllocationSpec,
  PodAllocationStatus,
  Validated,
} from "./pod_allocation.ts";
