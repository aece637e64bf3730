/**
 * Controller configuration from flags and environment variables (flags win),
 * validated with zod at start-up: an invalid value stops the process with a
 * message naming the flag, its variable and the value.
 *
 * @module
 */
import { z } from "zod";
import { ConfigError, type OptionSpec, readOptions } from "../config/mod.ts";
import { parseMillicores } from "../api/mod.ts";
import { LOG_LEVELS } from "../log/mod.ts";
import { ANY_ADDRESS } from "../serve/mod.ts";
import type { ResizePolicyConfig } from "./policy.ts";

/** Every option: flag name, environment variable, default, and meaning (a test keeps the reference table of docs/configuration.md in step with this). */
export const CONTROLLER_OPTIONS = {
  kubeconfig: {
    env: "KUBECONFIG",
    default: "",
    help: "kubeconfig file; empty: in-cluster service account",
  },
  context: {
    env: "MBCAS_CONTEXT",
    default: "",
    help: "kubeconfig context; empty: the current one",
  },
  namespace: {
    env: "POD_NAMESPACE",
    default: "mbcas-system",
    help: "namespace of the leader-election Lease",
  },
  identity: {
    env: "POD_NAME",
    default: "",
    help: "this replica's identity in the Lease; empty: hostname plus a random suffix",
  },
  "leader-elect": {
    env: "MBCAS_LEADER_ELECT",
    default: "true",
    help: "elect a leader among replicas (true/false)",
  },
  "lease-duration-seconds": {
    env: "MBCAS_LEASE_DURATION_SECONDS",
    default: "10",
    help: "Lease validity; a standby takes over within this plus 2 s",
  },
  "renew-deadline-seconds": {
    env: "MBCAS_RENEW_DEADLINE_SECONDS",
    default: "",
    help: "a leader unable to renew for this long stops writing; empty: 2/3 of lease duration",
  },
  "retry-period-seconds": {
    env: "MBCAS_RETRY_PERIOD_SECONDS",
    default: "2",
    help: "how often the Lease is renewed or retried (must be under renew deadline ÷ 1.2)",
  },
  "dry-run": {
    env: "MBCAS_DRY_RUN",
    default: "false",
    help: "compute and record everything, patch nothing (true/false)",
  },
  "bind-address": {
    env: "MBCAS_BIND_ADDRESS",
    default: ANY_ADDRESS,
    help: "address for /healthz, /readyz and /metrics (:: is every address, IPv6 and IPv4)",
  },
  "metrics-port": {
    env: "MBCAS_METRICS_PORT",
    default: "8080",
    help: "port for /healthz, /readyz and /metrics (0: any free port)",
  },
  "cooldown-seconds": {
    env: "MBCAS_COOLDOWN_SECONDS",
    default: "30",
    help: "a decrease waits this long after the pod's last resize",
  },
  "max-step-down": {
    env: "MBCAS_MAX_STEP_DOWN",
    default: "0.5",
    help: "largest fraction of a limit one decrease removes",
  },
  "min-change-fraction": {
    env: "MBCAS_MIN_CHANGE_FRACTION",
    default: "0.05",
    help: "ignore changes below this fraction of the limit…",
  },
  "min-change-millicores": {
    env: "MBCAS_MIN_CHANGE_MILLICORES",
    default: "20",
    help: "…or below this many millicores, whichever is larger",
  },
  "max-limit": {
    env: "MBCAS_MAX_LIMIT",
    default: "",
    help: "highest CPU limit ever set (a quantity such as 8 or 3500m); empty: node allocatable",
  },
  "elastic-increase-delay-seconds": {
    env: "MBCAS_ELASTIC_INCREASE_DELAY_SECONDS",
    default: "5",
    help: "an elastic pod's increase waits this long after its last resize",
  },
  "elastic-min-change": {
    env: "MBCAS_ELASTIC_MIN_CHANGE",
    default: "0.1",
    help: "an elastic pod's limit changes by at least this share of the node's allocatable CPU",
  },
  "protected-min-decrease": {
    env: "MBCAS_PROTECTED_MIN_DECREASE",
    default: "0.25",
    help: "a protected pod's limit comes down only by at least this share of itself",
  },
  "elastic-max-step-up": {
    env: "MBCAS_ELASTIC_MAX_STEP_UP",
    default: "0.5",
    help: "largest share of the node's allocatable CPU one elastic increase adds",
  },
  "max-resizes-per-pod-per-minute": {
    env: "MBCAS_MAX_RESIZES_PER_POD_PER_MINUTE",
    default: "4",
    help: "resizes of one pod in any minute (the last two kept for protective changes)",
  },
  "confirm-timeout-seconds": {
    env: "MBCAS_CONFIRM_TIMEOUT_SECONDS",
    default: "60",
    help: "report a resize the kubelet has not confirmed after this long",
  },
  "infeasible-backoff-seconds": {
    env: "MBCAS_INFEASIBLE_BACKOFF_SECONDS",
    default: "30",
    help: "first backoff after Infeasible (doubles, up to 20×)",
  },
  "error-backoff-seconds": {
    env: "MBCAS_ERROR_BACKOFF_SECONDS",
    default: "10",
    help: "first backoff after a resize Error (doubles, up to 30×)",
  },
  "rate-limit-qps": {
    env: "MBCAS_RATE_LIMIT_QPS",
    default: "20",
    help: "resizes per second, cluster-wide",
  },
  "rate-limit-burst": {
    env: "MBCAS_RATE_LIMIT_BURST",
    default: "50",
    help: "resize burst, cluster-wide",
  },
  "node-rate-limit-qps": {
    env: "MBCAS_NODE_RATE_LIMIT_QPS",
    default: "5",
    help: "resizes per second per node",
  },
  "node-rate-limit-burst": {
    env: "MBCAS_NODE_RATE_LIMIT_BURST",
    default: "10",
    help: "resize burst per node",
  },
  "stale-after-intervals": {
    env: "MBCAS_STALE_AFTER_INTERVALS",
    default: "12",
    help:
      "restore a pod's declared limits when neither its PodAllocation nor its agent's heartbeat was refreshed for this many market intervals (at least 30 s)",
  },
  workers: {
    env: "MBCAS_WORKERS",
    default: "32",
    help: "PodAllocations reconciled concurrently (one key never twice at once)",
  },
  "log-level": { env: "MBCAS_LOG_LEVEL", default: "info", help: "debug, info, warning or error" },
} as const satisfies Record<string, OptionSpec>;

const bool = z.enum(["true", "false"], { error: "must be true or false" }).transform((v) =>
  v === "true"
);
const seconds = (min: number, max: number) =>
  z.coerce.number({ error: "must be a number of seconds" }).min(min, `must be at least ${min}`).max(
    max,
    `must be at most ${max}`,
  );
const positive = (max: number) =>
  z.coerce.number({ error: "must be a number" }).int("must be a whole number").min(
    1,
    "must be at least 1",
  ).max(max, `must be at most ${max}`);
const positiveSeconds = (max: number) =>
  z.coerce.number({ error: "must be a number of seconds" }).gt(0, "must be above 0").max(
    max,
    `must be at most ${max}`,
  );
const fraction = z.coerce.number({ error: "must be a number" }).gt(0, "must be above 0").max(
  1,
  "must be at most 1",
);

const schema = z.object({
  kubeconfig: z.string(),
  context: z.string(),
  namespace: z.string().min(1, "must not be empty"),
  identity: z.string(),
  "leader-elect": bool,
  "lease-duration-seconds": seconds(2, 300),
  "renew-deadline-seconds": z.preprocess(
    (v) => (v === "" ? undefined : v),
    positiveSeconds(300).optional(),
  ),
  "retry-period-seconds": positiveSeconds(60),
  "dry-run": bool,
  "bind-address": z.string().min(1, "must not be empty"),
  "metrics-port": z.coerce.number({ error: "must be a port number" }).int("must be a port number")
    .min(0).max(65535),
  "cooldown-seconds": seconds(0, 86_400),
  "max-step-down": fraction,
  "min-change-fraction": z.coerce.number({ error: "must be a number" }).min(0).max(
    1,
    "must be at most 1",
  ),
  "min-change-millicores": z.coerce.number({ error: "must be a number" }).int().min(0).max(100_000),
  "max-limit": z.string().refine(
    (v) => v === "" || (parseMillicores(v) ?? 0) > 0,
    "must be empty or a positive CPU quantity such as 8 or 3500m",
  ),
  "elastic-increase-delay-seconds": seconds(0, 3600),
  "elastic-max-step-up": fraction,
  "elastic-min-change": z.coerce.number({ error: "must be a number" }).min(0, "must be at least 0")
    .max(1, "must be at most 1"),
  "protected-min-decrease": z.coerce.number({ error: "must be a number" }).min(
    0,
    "must be at least 0",
  ).max(1, "must be at most 1"),
  "max-resizes-per-pod-per-minute": z.coerce.number({ error: "must be a whole number" }).int(
    "must be a whole number",
  ).min(3, "must be at least 3 (one for any change, two kept for protective changes)").max(
    16,
    "must be at most 16",
  ),
  "confirm-timeout-seconds": seconds(1, 3600),
  "infeasible-backoff-seconds": seconds(1, 3600),
  "error-backoff-seconds": seconds(1, 3600),
  "rate-limit-qps": z.coerce.number({ error: "must be a number" }).gt(0, "must be above 0").max(
    10_000,
  ),
  "rate-limit-burst": positive(100_000),
  "node-rate-limit-qps": z.coerce.number({ error: "must be a number" }).gt(0, "must be above 0")
    .max(10_000),
  "node-rate-limit-burst": positive(100_000),
  "stale-after-intervals": positive(10_000),
  workers: positive(256),
  "log-level": z.enum(LOG_LEVELS, { error: `must be one of ${LOG_LEVELS.join(", ")}` }),
});

/** Validated configuration. */
export interface ControllerConfig {
  /** kubeconfig path, or undefined for in-cluster. */
  kubeconfig?: string;
  /** Context override. */
  context?: string;
  /** Lease namespace. */
  namespace: string;
  /** Replica identity. */
  identity: string;
  /** Leader election on. */
  leaderElect: boolean;
  /** Lease duration. */
  leaseDurationMs: number;
  /** A leader that has not renewed for this long stops leading (and writing). */
  renewDeadlineMs: number;
  /** How often the Lease is renewed or tried. */
  retryPeriodMs: number;
  /** Patch nothing. */
  dryRun: boolean;
  /** HTTP bind address. */
  bindAddress: string;
  /** HTTP port. */
  metricsPort: number;
  /** Resize policy. */
  policy: ResizePolicyConfig;
  /** Rate limits. */
  rateLimit: {
    global: { perSecond: number; burst: number };
    perNode: { perSecond: number; burst: number };
  };
  /** Concurrent reconciles. */
  workers: number;
  /** Market intervals after which an unrefreshed PodAllocation is stale. */
  staleAfterIntervals: number;
  /** Log level. */
  logLevel: (typeof LOG_LEVELS)[number];
}

export { ConfigError };

/**
 * Reads flags (`--name value` or `--name=value`) over environment variables
 * over defaults, and validates them.
 *
 * @throws {ConfigError} naming the first invalid option, or the leader-election
 * flags and values when their combination breaks client-go's rules (lease
 * duration > renew deadline > 1.2 × retry period).
 */
export function parseControllerConfig(
  args: string[],
  env: (name: string) => string | undefined,
): ControllerConfig {
  const c = readOptions(CONTROLLER_OPTIONS, schema, args, env);
  const lease = c["lease-duration-seconds"];
  const renew = c["renew-deadline-seconds"] ?? Math.floor((lease * 1000 * 2) / 3) / 1000;
  const retry = c["retry-period-seconds"];
  const renewText = c["renew-deadline-seconds"] === undefined
    ? `--renew-deadline-seconds (${renew}, 2/3 of --lease-duration-seconds)`
    : `--renew-deadline-seconds (${renew})`;
  if (!(lease > renew)) {
    throw new ConfigError(
      `invalid leader election timing: --lease-duration-seconds (${lease}) must be greater than ${renewText}`,
    );
  }
  if (!(renew > 1.2 * retry)) {
    throw new ConfigError(
      `invalid leader election timing: ${renewText} must be greater than 1.2 × --retry-period-seconds (${retry}), that is ${
        Math.round(1.2 * retry * 1000) / 1000
      }`,
    );
  }
  return {
    kubeconfig: c.kubeconfig || undefined,
    context: c.context || undefined,
    namespace: c.namespace,
    identity: c.identity || `${Deno.hostname()}-${crypto.randomUUID().slice(0, 8)}`,
    leaderElect: c["leader-elect"],
    leaseDurationMs: lease * 1000,
    renewDeadlineMs: Math.round(renew * 1000),
    retryPeriodMs: Math.round(retry * 1000),
    dryRun: c["dry-run"],
    bindAddress: c["bind-address"],
    metricsPort: c["metrics-port"],
    policy: {
      cooldownMs: c["cooldown-seconds"] * 1000,
      maxStepDownFraction: c["max-step-down"],
      minChangeFraction: c["min-change-fraction"],
      minChangeMillicores: c["min-change-millicores"],
      maxLimitMillicores: c["max-limit"] === "" ? null : parseMillicores(c["max-limit"]),
      infeasibleBackoffMs: {
        initial: c["infeasible-backoff-seconds"] * 1000,
        max: c["infeasible-backoff-seconds"] * 20_000,
      },
      errorBackoffMs: {
        initial: c["error-backoff-seconds"] * 1000,
        max: c["error-backoff-seconds"] * 30_000,
      },
      confirmTimeoutMs: c["confirm-timeout-seconds"] * 1000,
      elasticIncreaseDelayMs: c["elastic-increase-delay-seconds"] * 1000,
      elasticMaxStepUpFraction: c["elastic-max-step-up"],
      elasticMinChangeFraction: c["elastic-min-change"],
      protectedMinDecreaseFraction: c["protected-min-decrease"],
      maxResizesPerPodPerMinute: c["max-resizes-per-pod-per-minute"],
    },
    rateLimit: {
      global: { perSecond: c["rate-limit-qps"], burst: c["rate-limit-burst"] },
      perNode: { perSecond: c["node-rate-limit-qps"], burst: c["node-rate-limit-burst"] },
    },
    workers: c.workers,
    staleAfterIntervals: c["stale-after-intervals"],
    logLevel: c["log-level"],
  };
}
