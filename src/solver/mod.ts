/**
 * The per-node CPU market: an exact, deterministic clearing of one divisible
 * good (a node's CPU, in integer millicores) among weighted bids with floors
 * and caps.
 *
 * ## The rules
 *
 * Each bid i has a weight w_i > 0, a floor f_i ≥ 0, a demand d_i ≥ 0 and a cap
 * M_i ≥ f_i; its target is t_i = clamp(d_i, f_i, M_i). With capacity C:
 *
 * 1. **Floors exhaust capacity** (Σf ≥ C): every bid gets its floor; floors are
 *    never cut. `oversubscribed` says whether Σf > C.
 * 2. **Uncontended** (Σt ≤ C, price 0): every bid gets its target. In the
 *    default `distribute` mode the rest of C is water-filled on top,
 *    x_i = clamp(μ·w_i, t_i, M_i) with μ such that Σx = C, or every bid at its
 *    cap where even that cannot fill C. In `retain` mode the rest is left
 *    unallocated.
 * 3. **Contended** (Σf < C < Σt): find λ with Σ clamp(λ·w_i, f_i, t_i) = C and
 *    give each bid clamp(λ·w_i, f_i, t_i). The price is 1/λ: the weight a bid
 *    pays per millicore at the margin.
 *
 * `contended` is Σt > C: demand exceeds capacity.
 *
 * ## Why this allocation
 *
 * Case 3 is the competitive equilibrium of a single-good Fisher market in
 * which bid i spends a budget w_i, values CPU linearly up to its target and not
 * at all beyond it, and is guaranteed its floor. At price p = 1/λ an unconstrained
 * buyer spends its whole budget and buys w_i/p = λ·w_i; a buyer whose budget
 * buys more than it wants stops at t_i; one whose guarantee exceeds what its
 * budget buys keeps f_i. The market clears when supply equals demand, which is
 * the equation for λ above. The same point is:
 *
 * - the **Eisenberg–Gale optimum**, the weighted Nash bargaining solution: it
 *   maximises Σ w_i·log x_i over f_i ≤ x_i ≤ t_i and Σx_i ≤ C. The KKT
 *   conditions of that concave program say w_i/x_i = p for every bid strictly
 *   between its bounds, w_i/x_i ≥ p for bids held at t_i and ≤ p for bids held
 *   at f_i, which is exactly x_i = clamp(w_i/p, f_i, t_i);
 * - **weighted max-min fairness**: the normalised share x_i/w_i of every bid
 *   between its bounds is the same λ; no bid can gain in x/w without taking
 *   from a bid whose x/w is no larger (it is at its floor) or from nobody (it is
 *   at its target). Hence weighted envy-freeness: x_i/w_i ≥ x_j/w_j unless i is
 *   at its target or j at its floor.
 *
 * The solution is unique, continuous and non-decreasing in C (resource
 * monotonicity), and unchanged when every weight is scaled by the same factor.
 *
 * ## How it is computed
 *
 * Exactly, not by iteration or bisection: Σ clamp(λ·w_i, lo_i, hi_i) is
 * piecewise linear in λ with breakpoints lo_i/w_i and hi_i/w_i. Sorting the 2n
 * breakpoints and sweeping them once finds the linear segment that reaches C
 * and solves it in closed form: O(n log n). The real solution is then rounded
 * to integer millicores by largest remainder: each allocation is the real one
 * rounded down or up, the sum is exactly C (or Σ of the granted bounds), every
 * bound is kept, ties go to the smaller id, and the result does not depend on
 * the order of the bids. The input is never mutated.
 *
 * ## Tiers: guarantees and limits ({@link settleMarket})
 *
 * The agent's market has two outputs per bid, because a CPU limit is a cap,
 * not a reservation: the kernel's CPU weights (from requests) already share a
 * contended node, so limits may add up to more than the node.
 *
 * - **Guarantee** g_i: what the bid gets when every bid wants its target.
 *   Protected bids are cleared first, by the rules above (retain mode),
 *   against the capacity minus the elastic floors; elastic bids are cleared
 *   against what the protected guarantees leave. Σg ≤ C (unless the floors
 *   alone exceed it: then every bid gets its floor).
 * - **Limit** ℓ_i ≥ g_i: a protected bid runs under its target whenever its
 *   tier is not contended; when it is, under its guarantee plus a share by
 *   weight of what the protected bids leave idle (C − elastic floors −
 *   headroom − Σ protected usage), up to its target. The elastic tier runs on its
 *   budget B = max(Σ elastic guarantees, C − headroom − Σ protected usage):
 *   the CPU the protected bids leave idle. B is water-filled by weight over
 *   the elastic bids between guarantee and target, so only a bid whose
 *   target exceeds its guarantee (unmet demand) gets more than its
 *   guarantee, and no bid more than its target.
 * - **Yielding elastic bids** (`elasticYields`): when every elastic bid's pod
 *   runs at the kernel's lowest CPU weight, the kernel itself gives the
 *   protected pods the CPU they want before the elastic pods get any, so
 *   B = max(Σ elastic guarantees, C' − headroom), where C' ≥ C is the
 *   `yieldingCapacity` (C by default): the CPU the market keeps out of C for
 *   the pods it does not manage, which outrank a yielding pod by weight as
 *   the protected ones do. The elastic limits reach into all the CPU the
 *   other pods might leave idle and need not move when their usage does.
 * - **Open protected limits** (`protectedLimit: "cap"`): every protected
 *   limit is its bid's cap (≥ its target ≥ its guarantee). A protected pod is
 *   then never throttled below its cap, and when the protected pods want more
 *   than the node has, the kernel shares it by their CPU weights (requests),
 *   not the limits by the market's weights. The guarantees and the elastic
 *   budget do not depend on the protected limits, so nothing else moves;
 *   with yielding elastic bids, it costs the elastic tier nothing.
 *
 * Both steps are the exact clearing above, so settlements are exact,
 * deterministic and independent of the order of the bids.
 *
 * @example
 * ```ts
 * import { clearMarket } from "./mod.ts";
 * const clearing = clearMarket({
 *   capacity: 2000,
 *   bids: [
 *     { id: "a", weight: 500, floor: 500, demand: 1800, cap: 2000 },
 *     { id: "b", weight: 250, floor: 250, demand: 1800, cap: 2000 },
 *   ],
 * });
 * // clearing.allocations: { a: 1333, b: 667 }, clearing.price: 0.375
 * ```
 *
 * @module
 */
// core.ts exports the same without parse.ts (zod), for the agent.
export { clearMarket } from "./_clearing.ts";
export { settleMarket } from "./_settle.ts";
export { MarketInputError, parseMarket, parseMarketJson } from "./parse.ts";
export type {
  Bid,
  BidTier,
  Clearing,
  Market,
  ProtectedLimitMode,
  Settlement,
  SurplusMode,
} from "./types.ts";
