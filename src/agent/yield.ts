/**
 * Elastic pods yield in the kernel: the agent lowers an elastic pod's cgroup
 * CPU weight to the lowest the kernel takes, so that every other pod on the
 * node gets the CPU it wants first, within a scheduling period, whatever the
 * elastic pods' limits; and it puts the kubelet's weight back when the pod
 * stops being elastic or managed, or the agent stops.
 *
 * The weight the kubelet set is recorded in the pod's PodAllocation
 * (`spec.originalCpuWeight`) before the agent lowers it, so a restarted agent
 * (or one on a new version) still knows what to put back. This module is the
 * rule, a pure function of plain data; the agent reads and writes the files.
 *
 * @module
 */

/** What the agent knows of one pod's weight when it reconciles it. */
export interface WeightState {
  /** Whether the pod should yield: managed, elastic, and yielding enabled. */
  yields: boolean;
  /** The kubelet's weight as recorded in the pod's PodAllocation; null when none is. */
  recorded: number | null;
  /** The kubelet's weight as this agent process last knew it (recorded earlier, or read before lowering); null when unknown. */
  remembered: number | null;
  /** The pod cgroup's weight now. */
  current: number;
  /** The lowest weight of the node's hierarchy (2 on cgroup v1, 1 on v2). */
  lowest: number;
}

/** What to do about one pod's weight. */
export type WeightAction =
  /** Nothing: as it should be. */
  | { kind: "none" }
  /** Record this weight as the kubelet's in the PodAllocation; lower it only once that is written. */
  | { kind: "record"; original: number }
  /** Write the lowest weight (the record is in the PodAllocation). */
  | { kind: "lower" }
  /** Write the kubelet's weight back. */
  | { kind: "restore"; original: number }
  /** Drop the record: the weight is the kubelet's again. */
  | { kind: "forget" };

/**
 * The one rule for a pod's weight, level-based: it looks only at what should
 * be and what is, so applying it again changes nothing.
 *
 * - A pod that yields is lowered only once its PodAllocation records the
 *   kubelet's weight; a weight that is neither the record nor the lowest
 *   (the kubelet set a new one, after its requests changed) is recorded anew.
 * - A pod that does not yield and is at the lowest weight gets its record
 *   back; once its weight is anything else, the record is dropped.
 */
export function weightAction(state: WeightState): WeightAction {
  const { yields, recorded, remembered, current, lowest } = state;
  if (yields) {
    if (recorded === null) return { kind: "record", original: remembered ?? current };
    if (current === lowest) return { kind: "none" };
    if (current === recorded) return { kind: "lower" };
    return { kind: "record", original: current };
  }
  const original = recorded ?? remembered;
  if (original === null) return { kind: "none" };
  if (current === lowest && original !== lowest) return { kind: "restore", original };
  return { kind: "forget" };
}
