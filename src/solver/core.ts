/**
 * The solver without boundary validation: {@link clearMarket},
 * {@link settleMarket} and the types, for the agent, which builds its
 * markets itself and so never loads zod. mod.ts is this plus `parseMarket`
 * and `parseMarketJson` (zod), for markets read from outside; its
 * documentation describes the rules.
 *
 * @example
 * ```ts
 * import { settleMarket } from "./core.ts";
 *
 * const settlement = settleMarket({
 *   capacity: 1000,
 *   bids: [{ id: "a", weight: 1, floor: 100, demand: 800, cap: 1000 }],
 * });
 * console.log(settlement.limits.a); // 800: a protected bid gets its demand
 * ```
 *
 * @module
 */
export { clearMarket } from "./_clearing.ts";
export { settleMarket } from "./_settle.ts";
export type {
  Bid,
  BidTier,
  Clearing,
  Market,
  ProtectedLimitMode,
  Settlement,
  SurplusMode,
} from "./types.ts";
