/**
 * Agent configuration from flags and environment variables (flags win),
 * validated at start-up by hand-written checks (src/config: the agent does
 * not load zod).
 *
 * @module
 */
import {
  checkedOptions,
  choiceOption,
  numberOption,
  type OptionSpec,
  readOptions,
  textOption,
} from "../config/mod.ts";
import { parseMillicores } from "../api/core.ts";
import { LOG_LEVELS } from "../log/mod.ts";
import { ANY_ADDRESS } from "../serve/mod.ts";
import type { AgentOptions } from "./agent.ts";
import { DEFAULT_ESTIMATOR } from "./estimator.ts";

/** Every option: environment variable, default and meaning. */
export const AGENT_OPTIONS = {
  kubeconfig: {
    env: "KUBECONFIG",
    default: "",
    help: "kubeconfig file; empty: in-cluster service account",
  },
  "node-name": {
    env: "NODE_NAME",
    default: "",
    help: "this node's name (required; the DaemonSet sets it from spec.nodeName)",
  },
  namespace: {
    env: "POD_NAMESPACE",
    default: "mbcas-system",
    help:
      "namespace of the agent's heartbeat Lease (the DaemonSet sets it from metadata.namespace)",
  },
  "cgroup-root": {
    env: "MBCAS_CGROUP_ROOT",
    default: "/host/cgroup",
    help:
      "where the host's /sys/fs/cgroup is mounted (outside /sys: Deno reads /sys only with --allow-all)",
  },
  "sampling-interval-ms": {
    env: "MBCAS_SAMPLING_INTERVAL_MS",
    default: "1000",
    help: "how often every container is sampled",
  },
  "market-interval-ms": {
    env: "MBCAS_MARKET_INTERVAL_MS",
    default: "5000",
    help: "how often the node's market is cleared",
  },
  "heavy-throttle-ratio": {
    env: "MBCAS_HEAVY_THROTTLE_RATIO",
    default: "0.5",
    help: "a container throttled this much triggers an immediate clearing",
  },
  headroom: { env: "MBCAS_HEADROOM", default: "0.15", help: "fraction added to the measured need" },
  "release-half-life-seconds": {
    env: "MBCAS_RELEASE_HALF_LIFE_SECONDS",
    default: "60",
    help: "half-life of the decay towards a lower need",
  },
  "max-cpu": {
    env: "MBCAS_MAX_CPU",
    default: "",
    help: "largest allocation of any container (a CPU quantity); empty: node capacity",
  },
  "reserve-cpu": {
    env: "MBCAS_RESERVE_CPU",
    default: "0",
    help: "CPU kept out of the market (a CPU quantity)",
  },
  "elastic-headroom": {
    env: "MBCAS_ELASTIC_HEADROOM",
    default: "0.05",
    help: "share of the market's capacity the elastic limits leave free for protected pods",
  },
  "elastic-release-seconds": {
    env: "MBCAS_ELASTIC_RELEASE_SECONDS",
    default: "5",
    help: "a protected pod's CPU goes to elastic pods once it was unused this long",
  },
  "elastic-yield": {
    env: "MBCAS_ELASTIC_YIELD",
    default: "true",
    help:
      "lower elastic pods' cgroup CPU weight so every other pod goes first (needs the cgroup tree writable); false: elastic limits leave the protected pods' use free",
  },
  "protected-limit": {
    env: "MBCAS_PROTECTED_LIMIT",
    default: "target",
    help:
      "protected pods' limits: target (their estimated need, cut when they contend) or cap (their cap: never throttled below it; the kernel's weights share a contended node)",
  },
  "min-change-fraction": {
    env: "MBCAS_MIN_CHANGE_FRACTION",
    default: "0.05",
    help: "publish a change only if it is at least this fraction of the limit…",
  },
  "min-change-millicores": {
    env: "MBCAS_MIN_CHANGE_MILLICORES",
    default: "20",
    help: "…or this many millicores, whichever is larger",
  },
  "writes-per-second": {
    env: "MBCAS_WRITES_PER_SECOND",
    default: "5",
    help: "PodAllocation writes per second from this node",
  },
  "bind-address": {
    env: "MBCAS_BIND_ADDRESS",
    default: ANY_ADDRESS,
    help: "address for /healthz, /readyz and /metrics (:: is every address, IPv6 and IPv4)",
  },
  "metrics-port": {
    env: "MBCAS_METRICS_PORT",
    default: "8081",
    help: "port for /healthz, /readyz and /metrics",
  },
  "log-level": { env: "MBCAS_LOG_LEVEL", default: "info", help: "debug, info, warning or error" },
} as const satisfies Record<string, OptionSpec>;

const quantity = (allowEmpty: boolean) =>
  textOption({
    refine: [
      (v) => (allowEmpty && v === "") || (parseMillicores(v) ?? -1) >= 0,
      "must be a CPU quantity such as 500m or 2",
    ],
  });

/**
 * The checks of every option, in the order they are reported. Hand-written,
 * not zod, so the agent never loads zod; tests/agent/config_test.ts checks
 * they accept and reject what the zod schema they replace did.
 */
export const AGENT_OPTION_CHECKS = checkedOptions({
  kubeconfig: textOption(),
  "node-name": textOption({ minLength: [1, "must be set (the DaemonSet passes spec.nodeName)"] }),
  namespace: textOption({
    pattern: [
      /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/,
      "must be a namespace name (lower-case letters, digits and '-')",
    ],
    maxLength: 63,
  }),
  "cgroup-root": textOption({ minLength: [1, "must not be empty"] }),
  "sampling-interval-ms": numberOption({
    notNumber: "must be a number of milliseconds",
    integer: true,
    min: [100, "must be at least 100"],
    max: 60_000,
  }),
  "market-interval-ms": numberOption({
    notNumber: "must be a number of milliseconds",
    integer: true,
    min: [200, "must be at least 200"],
    max: 600_000,
  }),
  "heavy-throttle-ratio": numberOption({
    notNumber: "must be a number",
    above: [0, "must be above 0"],
    max: [1, "must be at most 1"],
  }),
  headroom: numberOption({
    notNumber: "must be a number",
    min: [0, "must be at least 0"],
    max: [10, "must be at most 10"],
  }),
  "release-half-life-seconds": numberOption({
    notNumber: "must be a number of seconds",
    above: [0, "must be above 0"],
    max: 86_400,
  }),
  "max-cpu": quantity(true),
  "reserve-cpu": quantity(false),
  "elastic-headroom": numberOption({
    notNumber: "must be a number",
    min: [0, "must be at least 0"],
    max: [1, "must be at most 1"],
  }),
  "elastic-release-seconds": numberOption({
    notNumber: "must be a number of seconds",
    min: [0, "must be at least 0"],
    max: [3600, "must be at most 3600"],
  }),
  "elastic-yield": choiceOption(["true", "false"], 'must be "true" or "false"'),
  "protected-limit": choiceOption(["target", "cap"], 'must be "target" or "cap"'),
  "min-change-fraction": numberOption({
    notNumber: "must be a number",
    min: 0,
    max: [1, "must be at most 1"],
  }),
  "min-change-millicores": numberOption({
    notNumber: "must be a number",
    integer: true,
    min: 0,
    max: 100_000,
  }),
  "writes-per-second": numberOption({
    notNumber: "must be a number",
    above: [0, "must be above 0"],
    max: 1000,
  }),
  "bind-address": textOption({ minLength: 1 }),
  "metrics-port": numberOption({
    notNumber: "must be a port number",
    integer: true,
    min: 0,
    max: 65535,
  }),
  "log-level": choiceOption(LOG_LEVELS, `must be one of ${LOG_LEVELS.join(", ")}`),
});

/** Validated agent configuration. */
export interface AgentConfig {
  /** kubeconfig path, or undefined for in-cluster. */
  kubeconfig?: string;
  /** Agent options. */
  agent: Omit<AgentOptions, "now" | "log" | "progress" | "metrics">;
  /** HTTP bind address. */
  bindAddress: string;
  /** HTTP port. */
  metricsPort: number;
  /** Log level. */
  logLevel: (typeof LOG_LEVELS)[number];
}

/** Reads flags over environment variables over defaults and validates them. */
export function parseAgentConfig(
  args: string[],
  env: (name: string) => string | undefined,
): AgentConfig {
  const c = readOptions(AGENT_OPTIONS, AGENT_OPTION_CHECKS, args, env);
  const writes = c["writes-per-second"];
  return {
    kubeconfig: c.kubeconfig || undefined,
    agent: {
      nodeName: c["node-name"],
      namespace: c.namespace,
      cgroupRoot: c["cgroup-root"],
      samplingIntervalMs: c["sampling-interval-ms"],
      marketIntervalMs: c["market-interval-ms"],
      heavyThrottleRatio: c["heavy-throttle-ratio"],
      estimator: {
        headroom: c.headroom,
        releaseHalfLifeMs: c["release-half-life-seconds"] * 1000,
        psiThrottleThreshold: DEFAULT_ESTIMATOR.psiThrottleThreshold,
        maxStallRatio: 0.9,
      },
      bids: {
        maxPerContainerMillicores: c["max-cpu"] === "" ? null : parseMillicores(c["max-cpu"]),
        reserveMillicores: parseMillicores(c["reserve-cpu"])!,
        elasticHeadroomFraction: c["elastic-headroom"],
      },
      elasticReleaseMs: c["elastic-release-seconds"] * 1000,
      elasticYield: c["elastic-yield"] === "true",
      protectedLimit: c["protected-limit"],
      publish: {
        minChangeFraction: c["min-change-fraction"],
        minChangeMillicores: c["min-change-millicores"],
        writesPerSecond: writes,
        burst: Math.max(1, Math.ceil(writes * 4)),
      },
    },
    bindAddress: c["bind-address"],
    metricsPort: c["metrics-port"],
    logLevel: c["log-level"],
  };
}
