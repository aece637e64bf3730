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
import { METRICS_CONTENT_TYPE, Registry } from "../metrics/mod.ts";
import { ConfigError, type ControllerConfig, parseControllerConfig } from "./config.ts";
import { EventRecorder } from "./events.ts";
import { LeaderElector } from "./leader.ts";
import { ResizeController } from "./reconciler.ts";

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
  const server = Deno.serve({
    hostname: config.bindAddress,
    port: config.metricsPort,
    onListen: ({ hostname, port }) =>
      log.info("serving probes and metrics", { address: `${hostname}:${port}` }),
  }, (request) => {
    const path = new URL(request.url).pathname;
    if (path === "/healthz") return new Response("ok\n");
    if (path === "/readyz") {
      return ready()
        ? new Response("ok\n")
        : new Response("caches not synced or leader unknown\n", { status: 503 });
    }
    if (path === "/metrics") {
      return new Response(registry.render(), { headers: { "content-type": METRICS_CONTENT_TYPE } });
    }
    return new Response("not found\n", { status: 404 });
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
  const { promise: stopped, resolve } = Promise.withResolvers<string>();
  Deno.addSignalListener("SIGINT", () => resolve("SIGINT"));
  Deno.addSignalListener("SIGTERM", () => resolve("SIGTERM"));
  log.info("stopping", { signal: await stopped });
  await elector?.stop();
  await controller.stop();
  await server.shutdown();
  return 0;
}

if (import.meta.main) {
  let config: ControllerConfig;
  try {
    config = parseControllerConfig(Deno.args, (name) => Deno.env.get(name));
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    console.error(`mbcas-controller: ${error.message}`);
    Deno.exit(2);
  }
  Deno.exit(await runController(config));
}
