/**
 * The plain data shapes of the per-node CPU market. They are exactly the JSON
 * shapes the `solve` CLI reads and writes.
 *
 * @module
 */

/** What happens to capacity left over once every bid has its target. */
export type SurplusMode = "distribute" | "retain";

/**
 * How a protected bid's limit is set by the tiered settlement.
 * `target`: its target, cut under contention of the protected tier (the
 * default). `cap`: its cap, so it is never throttled below it; the kernel's
 * CPU weights share the node between the pods that want more than it has.
 */
export type ProtectedLimitMode = "target" | "cap";

/**
 * A bid's tier. `protected` (the default) bids are served first: their
 * guarantees come out of the capacity before the elastic tier's (beyond the
 * elastic floors). `elastic` bids run on what the protected bids leave idle.
 */
export type BidTier = "protected" | "elastic";

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
  /** Its tier; `protected` when absent (read by the tiered settlement only). */
  tier?: BidTier;
  /**
   * The CPU it uses now, millicores (for a protected bid: what the elastic
   * limits must leave it); its target when absent.
   */
  usage?: number;
}

/** A market to clear: one node's CPU capacity and the bids for it. */
export interface Market {
  /** Capacity C ≥ 0 in millicores. */
  capacity: number;
  /** Surplus handling when the market is uncontended; `distribute` when absent. */
  surplus?: SurplusMode;
  /** The bids; ids are unique. */
  bids: Bid[];
  /** CPU the elastic limits leave free for the protected bids to grow into, millicores (default 0). */
  headroom?: number;
  /**
   * Whether the elastic bids yield in the kernel: every elastic bid's pod runs
   * at the lowest CPU weight, so the kernel gives the protected pods (and
   * everything else on the node) the CPU they want first, within a
   * scheduling period. The elastic limits then need not leave the protected
   * bids' live use free: the elastic budget is the capacity (or the
   * `yieldingCapacity`) minus the headroom. Default false (the budget leaves
   * the protected usage free).
   */
  elasticYields?: boolean;
  /**
   * CPU the elastic limits may add up to (before the headroom) when the
   * elastic bids yield in the kernel, millicores, at least `capacity`
   * (default `capacity`; ignored without `elasticYields`). A yielding elastic
   * pod is outranked by every other pod's CPU weight, managed or not, so its
   * limit may reach into the CPU the market keeps out of its capacity for the
   * pods it does not manage (the agent passes the node's allocatable CPU less
   * the reserve): what those pods leave idle, elastic pods may use.
   */
  yieldingCapacity?: number;
  /**
   * How the protected bids' limits are set: `target` (default) or `cap`
   * (every protected limit is its bid's cap: a limit is a cap, not a
   * reservation, and the kernel's weights share a contended node). The
   * guarantees and the elastic limits do not depend on it.
   */
  protectedLimit?: ProtectedLimitMode;
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

/**
 * The two outputs of the tiered market (see `settleMarket`): what each bid is
 * guaranteed under contention, and the limit it runs under. Guarantees add
 * up to at most the capacity; limits may add up to more (a limit is a cap,
 * not a reservation).
 */
export interface Settlement {
  /** Guarantee per bid id, integer millicores: what it gets when every bid wants its target. */
  guarantees: Record<string, number>;
  /** Limit per bid id, integer millicores: never below the guarantee, never above the cap. */
  limits: Record<string, number>;
  /**
   * CPU the elastic tier may run on: the capacity minus the headroom minus
   * what the protected bids use (when the elastic bids yield: the yielding
   * capacity minus the headroom), never below the elastic guarantees,
   * millicores.
   */
  elasticBudget: number;
  /**
   * Weight per millicore at the margin of the first contended tier (the
   * protected tier's when it is contended, else the elastic tier's); 0 when
   * no tier is contended; `null` when unbounded.
   */
  price: number | null;
  /** True when the targets of all bids add up to more than the capacity. */
  contended: boolean;
  /** True when the floors alone add up to more than the capacity. */
  oversubscribed: boolean;
}
