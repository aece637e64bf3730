/**
 * The MBCAS controller: applies PodAllocations to pods in place through
 * `pods/resize`, with leader election, probes and metrics.
 *
 * Run: `deno task controller -- --kubeconfig FILE` (docs/configuration.md lists every flag).
 *
 * @module
 */
import {
  DEFAULT_REQUEST_TIMEOUT_MS,
  KubeConfigError,
  LeanClient,
  type LeanConfig,
  loadLeanConfig,
} from "../k8s/lean/mod.ts";
import { configureLogging, logger, logSink } from "../log/mod.ts";
import { Registry } from "../metrics/mod.ts";
import { ProgressTracker, serveProbes, stopSignal } from "../serve/mod.ts";
import { ConfigError, type ControllerConfig, parseControllerConfig } from "./config.ts";
import { EventRecorder } from "./events.ts";
import { LEADER_ELECTION_LOOP, LeaderElector } from "./leader.ts";
import { CONTROLLER_LOOPS, ResizeController } from "./reconciler.ts";
import { programArgs } from "../config/mod.ts";

/** The controller's informer resync period, ms (passed to the controller, and the base of its progress bound). */
export const CONTROLLER_RESYNC_MS = 30_000;

/**
 * The controller's progress loops ({@link CONTROLLER_LOOPS} and
 * {@link LEADER_ELECTION_LOOP}) and their bounds, ms: `informers` (every
 * informer heard from the API server: an event, a bookmark, which the API
 * server sends about every minute, or a list) within 2 resync periods + 120 s; with leader election, `leader-election` (a round that
 * read the Lease and decided) within 3 retry periods + the lease duration.
 */
export function controllerProgressBounds(
  config: Pick<ControllerConfig, "leaderElect" | "leaseDurationMs" | "retryPeriodMs">,
  resyncMs: number = CONTROLLER_RESYNC_MS,
): Record<string, number> {
  return {
    [CONTROLLER_LOOPS.informers]: 2 * resyncMs + 120_000,
    ...(config.leaderElect
      ? { [LEADER_ELECTION_LOOP]: 3 * config.retryPeriodMs + config.leaseDurationMs }
      : {}),
  };
}

/** Runs the controller until SIGINT/SIGTERM; returns the exit code. */
export async function runController(config: ControllerConfig): Promise<number> {
  configureLogging(config.logLevel);
  const log = logger("controller");
  let connection: LeanConfig;
  try {
    // The lean client (src/k8s/lean/), not client-node: a kubeconfig it cannot
    // use (an exec plugin, an auth provider) fails here, with exit 2.
    connection = await loadLeanConfig({ kubeconfig: config.kubeconfig, context: config.context });
  } catch (error) {
    if (error instanceof KubeConfigError) {
      console.error(`mbcas-controller: ${error.message}`);
      return 2;
    }
    throw error;
  }
  const registry = new Registry();
  // The controller and the elector beat their loops; /readyz turns false while one has stalled.
  const progress = new ProgressTracker();
  progress.exportMetrics(registry, "mbcas_controller");
  const bounds = controllerProgressBounds(config);
  let elector: LeaderElector | null = null;
  const eventClient = new LeanClient(connection);
  const controller = new ResizeController(connection, {
    policy: config.policy,
    dryRun: config.dryRun,
    rateLimit: config.rateLimit,
    workers: config.workers,
    resyncMs: CONTROLLER_RESYNC_MS,
    progress,
    // Fenced: write only with more than 1 s left before a standby could have taken the Lease,
    // and let no write outlive that time.
    canWrite: () => elector === null || elector.writeBudgetMs() > 1_000,
    writeTimeoutMs: () =>
      elector === null
        ? DEFAULT_REQUEST_TIMEOUT_MS
        : Math.min(DEFAULT_REQUEST_TIMEOUT_MS, elector.writeBudgetMs()),
    staleAfterIntervals: config.staleAfterIntervals,
    heartbeatNamespace: config.namespace,
    events: new EventRecorder(eventClient, "mbcas-controller", config.identity),
    metrics: registry,
    log: logSink(log),
  });
  const ready = () =>
    controller.synced && (elector === null || elector.holder !== null) &&
    progress.stalled().length === 0;
  const server = serveProbes({
    hostname: config.bindAddress,
    port: config.metricsPort,
    ready: ready,
    notReadyMessage: () => progress.stallMessage() ?? "caches not synced or leader unknown",
    registry,
    onListen: (address) => log.info("serving probes and metrics", { address }),
  });
  log.info("starting", {
    identity: config.identity,
    dryRun: config.dryRun,
    leaderElect: config.leaderElect,
  });
  await controller.start();
  log.info("caches synced");
  progress.register(CONTROLLER_LOOPS.informers, bounds[CONTROLLER_LOOPS.informers]);
  controller.metrics.leader.set(0);
  if (config.leaderElect) {
    elector = new LeaderElector(connection, {
      namespace: config.namespace,
      name: "mbcas-controller",
      identity: config.identity,
      leaseDurationMs: config.leaseDurationMs,
      renewDeadlineMs: config.renewDeadlineMs,
      retryPeriodMs: config.retryPeriodMs,
      log: logSink(log),
      progress, // registers and beats the "leader-election" loop
    });
    progress.register(LEADER_ELECTION_LOOP, bounds[LEADER_ELECTION_LOOP]);
    elector.start((leading) => {
      controller.metrics.leader.set(leading ? 1 : 0);
      if (leading) {
        // What a previous term remembered may be out of date: rebuild it from status.
        controller.forgetMemory();
        controller.resyncAll();
      }
    });
  } else {
    controller.metrics.leader.set(1);
    controller.resyncAll();
  }
  const stopWatchdog = progress.watchdog(logSink(log), 5_000);
  log.info("stopping", { signal: await stopSignal() });
  stopWatchdog();
  await elector?.stop();
  await controller.stop();
  eventClient.close();
  await server.shutdown();
  return 0;
}

if (import.meta.main) {
  let config: ControllerConfig;
  try {
    config = parseControllerConfig(programArgs(), (name) => Deno.env.get(name));
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    console.error(`mbcas-controller: ${error.message}`);
    Deno.exit(2);
  }
  Deno.exit(await runController(config));
}
