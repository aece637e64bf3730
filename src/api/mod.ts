/**
 * The API agent and controller share: the PodAllocation resource and CPU
 * quantities.
 *
 * @module
 */
export * from "./pod_allocation.ts";
export { formatMillicores, isQuantity, parseMillicores, quantitiesEqual } from "./quantity.ts";
