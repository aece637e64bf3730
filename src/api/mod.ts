/**
 * The API agent and controller share: the PodAllocation resource and CPU
 * quantities. core.ts is the zod-free part of it (names, types, quantities),
 * what the agent loads; this adds the zod schemas and `validatePodAllocation`.
 *
 * @module
 */
export * from "./pod_allocation.ts";
export { formatMillicores, isQuantity, parseMillicores, quantitiesEqual } from "./quantity.ts";
