/**
 * The MBCAS agent: one per node (DaemonSet). Samples every managed
 * container's cgroup, clears the node's CPU market and publishes
 * PodAllocations; serves probes and metrics.
 *
 * Run: `deno task agent -- --kubeconfig FILE --node-name NODE --cgroup-root DIR`.
 *
 * @module
 */
import * as k8s from "@kubernetes/client-node";
import { CgroupRootError } from "../cgroup/mod.ts";
import { KubeConfigError, loadKubeConfig } from "../k8s/mod.ts";
import { configureLogging, logger, logSink } from "../log/mod.ts";
import { Registry } from "../metrics/mod.ts";
import { serveProbes, stopSignal } from "../serve/mod.ts";
import { NodeAgent } from "./agent.ts";
import { ConfigError, programArgs } from "../config/mod.ts";
import { type AgentConfig, parseAgentConfig } from "./config.ts";

/** Runs the agent until SIGINT/SIGTERM; returns the exit code. */
export async function runAgent(config: AgentConfig): Promise<number> {
  await configureLogging(config.logLevel);
  const log = logger("agent");
  let kc: k8s.KubeConfig;
  try {
    kc = loadKubeConfig({ kubeconfig: config.kubeconfig });
  } catch (error) {
    if (error instanceof KubeConfigError) {
      console.error(`mbcas-agent: ${error.message}`);
      return 2;
    }
    throw error;
  }
  const registry = new Registry();
  const agent = new NodeAgent(kc, { ...config.agent, log: logSink(log), metrics: registry });
  const server = serveProbes({
    hostname: config.bindAddress,
    port: config.metricsPort,
    ready: () => agent.ready,
    notReadyMessage: "not ready",
    registry,
    onListen: (address) => log.info("serving probes and metrics", { address }),
  });
  try {
    await agent.start();
  } catch (error) {
    await server.shutdown();
    if (error instanceof CgroupRootError) {
      console.error(`mbcas-agent: ${error.message}`);
      return 2;
    }
    throw error;
  }
  log.info("started", { node: config.agent.nodeName, cgroupRoot: config.agent.cgroupRoot });
  log.info("stopping", { signal: await stopSignal() });
  await agent.stop();
  await server.shutdown();
  return 0;
}

if (import.meta.main) {
  let config: AgentConfig;
  try {
    config = parseAgentConfig(programArgs(), (name) => Deno.env.get(name));
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    console.error(`mbcas-agent: ${error.message}`);
    Deno.exit(2);
  }
  Deno.exit(await runAgent(config));
}
