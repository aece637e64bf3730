/**
 * The MBCAS controller: applies PodAllocations to pods in place through
 * `pods/resize`, with leader election, probes and metrics.
 *
 * Run: `deno task controller -- --kubeconfig FILE` (see README for every flag).
 *
 * @module
 */
import * as k8s from "@kubernetes/client-node";
import { KubeConfigError, loadKubeConfig, makeApiClient } from "../k8s/mod.ts";
import { configureLogging, logger, logSink } from "../log/mod.ts";
import { Registry } from "../metrics/mod.ts";
import { serveProbes, stopSignal } from "../serve/mod.ts";
import { ConfigError, type ControllerConfig, parseControllerConfig } from "./config.ts";
import { EventRecorder } from "./events.ts";
import { LeaderElector } from "./leader.ts";
import { ResizeController } from "./reconciler.ts";
import { programArgs } from "../config/mod.ts";

/** Runs the controller until SIGINT/SIGTERM; returns the exit code. */
export async function runController(config: ControllerConfig): Promise<number> {
  await configureLogging(config.logLevel);
  const log = logger("controller");
  let kc: k8s.KubeConfig;
  try {
    kc = loadKubeConfig({ kubeconfig: config.kubeconfig, context: config.context });
  } catch (error) {
    if (error instanceof KubeConfigError) {
      console.error(`mbcas-controller: ${error.message}`);
      return 2;
    }
    throw error;
  }
  const registry = new Registry();
  let elector: LeaderElector | null = null;
  const controller = new ResizeController(kc, {
    policy: config.policy,
    dryRun: config.dryRun,
    rateLimit: config.rateLimit,
    workers: config.workers,
    canWrite: () => elector === null || elector.isLeader(),
    events: new EventRecorder(
      makeApiClient(kc, k8s.CoreV1Api),
      "mbcas-controller",
      config.identity,
    ),
    metrics: registry,
    log: logSink(log),
  });
  const ready = () => controller.synced && (elector === null || elector.holder !== null);
  const server = serveProbes({
    hostname: config.bindAddress,
    port: config.metricsPort,
    ready: ready,
    notReadyMessage: "caches not synced or leader unknown",
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
  controller.metrics.leader.set(0);
  if (config.leaderElect) {
    elector = new LeaderElector(kc, {
      namespace: config.namespace,
      name: "mbcas-controller",
      identity: config.identity,
      leaseDurationMs: config.leaseDurationMs,
      log: logSink(log),
    });
    elector.start((leading) => {
      controller.metrics.leader.set(leading ? 1 : 0);
      if (leading) controller.resyncAll();
    });
  } else {
    controller.metrics.leader.set(1);
    controller.resyncAll();
  }
  log.info("stopping", { signal: await stopSignal() });
  await elector?.stop();
  await controller.stop();
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
