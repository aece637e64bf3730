/**
 * The controller: applies PodAllocations to pods in place through
 * `pods/resize`, with the safety rules of the resize policy.
 *
 * @module
 */
export * from "./policy.ts";
export {
  ALLOW_RESTART_ANNOTATION,
  desiredAllocation,
  type FreshnessSpec,
  freshnessSpec,
  MANAGED_ANNOTATION,
  MANAGED_LABEL,
  optedIn,
  podState,
  resizePendingReason,
  slimNamespace,
  slimNode,
  slimPod,
  staleness,
  statusChanged,
  statusFor,
} from "./observe.ts";
export { CONTROLLER_OPTIONS } from "./config.ts";
export { ResizeRateLimiter, TokenBucket } from "./rate_limit.ts";
export { ResizeController } from "./reconciler.ts";
export type { ControllerOptions, ControllerStats } from "./reconciler.ts";
