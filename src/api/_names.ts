/**
 * The PodAllocation resource's names, apart from its zod schemas so that
 * code which must not load zod (the agent, through core.ts) can use them.
 *
 * @module
 */

/** API group. */
export const GROUP = "allocation.mbcas.io";
/** API version. */
export const VERSION = "v1alpha1";
/** `apiVersion` field value. */
export const API_VERSION = `${GROUP}/${VERSION}`;
/** Resource plural. */
export const PLURAL = "podallocations";
/** Kind. */
export const KIND = "PodAllocation";

/** The URL path of a namespace's PodAllocations, or of one of them (`/status` etc. appended by the caller). */
export function podAllocationPath(namespace: string, name?: string): string {
  const collection = `/apis/${GROUP}/${VERSION}/namespaces/${
    encodeURIComponent(namespace)
  }/${PLURAL}`;
  return name === undefined ? collection : `${collection}/${encodeURIComponent(name)}`;
}
/**
 * Finalizer the controller puts on a PodAllocation before it first changes
 * the pod: deleting the PodAllocation then restores the pod's declared limits
 * (`status.baseline`) before the object goes.
 */
export const RESTORE_FINALIZER = "allocation.mbcas.io/restore";

/** The pod tiers of the market (see `mbcas.io/tier` in src/managed). */
export const TIER_VALUES = ["protected", "elastic"] as const;
