/**
 * The plain data shapes of the per-node CPU market. They are exactly the JSON
 * shapes the `solve` CLI reads and writes.
 *
 * @module
 */

/** What happens to capacity left over once every bid has its target. */
export type SurplusMode = "distribute" | "retain";

/** One managed container's bid for CPU. All CPU amounts are integer millicores. */
export interface Bid {
  /** Unique within the market, conventionally `namespace/pod/container`. */
  id: string;
  /** Budget w > 0: how strongly this bid competes for CPU (the agent derives it from the CPU request). */
  weight: number;
  /** Floor f ≥ 0: the least this bid may get (its CPU request). */
  floor: number;
  /** Estimated need d ≥ 0. */
  demand: number;
  /** Cap M ≥ f: the most this bid may get. */
  cap: number;
}

/** A market to clear: one node's CPU capacity and the bids for it. */
export interface Market {
  /** Capacity C ≥ 0 in millicores. */
  capacity: number;
  /** Surplus handling when the market is uncontended; `distribute` when absent. */
  surplus?: SurplusMode;
  /** The bids; ids are unique. */
  bids: Bid[];
}

/** The result of clearing a market. */
export interface Clearing {
  /** Allocation per bid id, integer millicores. */
  allocations: Record<string, number>;
  /**
   * Weight paid per millicore at the margin (1/λ). 0 when uncontended; `null`
   * when the price is unbounded (floors exhaust capacity while a bid whose floor
   * is 0 still wants CPU).
   */
  price: number | null;
  /** True when the bids' targets add up to more than the capacity. */
  contended: boolean;
  /** True when the floors alone add up to more than the capacity (floors are still granted). */
  oversubscribed: boolean;
}
