/**
 * The node agent: its pure core (the demand estimator, the construction of a
 * node's CPU market from its pods, the `explain` table) and the per-node loop
 * that samples cgroups, clears the market and publishes PodAllocations.
 *
 * @module
 */
export { DEFAULT_ESTIMATOR, measuredNeed, updateDemand } from "./estimator.ts";
export type { DemandState, EstimatorConfig, Observation } from "./estimator.ts";
export { buildMarket, MAX_CPU_ANNOTATION, PRIORITY_ANNOTATION, worthPublishing } from "./bids.ts";
export type { BidConfig, ContainerView, NodeMarket, PodView } from "./bids.ts";
export { AgentMetrics, NodeAgent } from "./agent.ts";
export { formatMarketTable } from "./explain.ts";
export { AGENT_OPTION_CHECKS, AGENT_OPTIONS, parseAgentConfig } from "./config.ts";
export type { AgentConfig } from "./config.ts";
export type { AgentOptions, AgentStats } from "./agent.ts";
