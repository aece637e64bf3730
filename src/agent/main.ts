/**
 * The MBCAS agent: one per node (DaemonSet). Samples every managed
 * container's cgroup, clears the node's CPU market and publishes
 * PodAllocations; serves probes and metrics.
 *
 * Run: `deno task agent -- --kubeconfig FILE --node-name NODE --cgroup-root DIR`.
 *
 * It loads neither `@kubernetes/client-node` (types only; the API goes
 * through src/k8s/lean/) nor zod (its configuration is checked by hand):
 * tests/agent/footprint_test.ts holds it to that.
 *
 * @module
 */
import { CgroupRootError } from "../cgroup/mod.ts";
import { KubeConfigError, type LeanConfig, loadLeanConfig } from "../k8s/lean/mod.ts";
import { configureLogging, logger, logSink } from "../log/mod.ts";
import { Registry } from "../metrics/mod.ts";
import { ProgressTracker, serveProbes, stopSignal } from "../serve/mod.ts";
import { AGENT_LOOPS, NodeAgent } from "./agent.ts";
import { ConfigError, programArgs } from "../config/mod.ts";
import { type AgentConfig, parseAgentConfig } from "./config.ts";

/**
 * The agent's progress loops ({@link AGENT_LOOPS}) and their bounds, ms:
 * `market` (a market cleared) within 3 market intervals + 10 s, `sampling` (a
 * sampling pass over the cgroups) within 10 sampling intervals + 10 s.
 */
export function agentProgressBounds(
  agent: { marketIntervalMs?: number; samplingIntervalMs?: number },
): Record<string, number> {
  return {
    [AGENT_LOOPS.market]: 3 * (agent.marketIntervalMs ?? 5_000) + 10_000,
    [AGENT_LOOPS.sampling]: 10 * (agent.samplingIntervalMs ?? 1_000) + 10_000,
  };
}

/** Runs the agent until SIGINT/SIGTERM; returns the exit code. */
export async function runAgent(config: AgentConfig): Promise<number> {
  configureLogging(config.logLevel);
  const log = logger("agent");
  let connection: LeanConfig;
  try {
    connection = await loadLeanConfig({ kubeconfig: config.kubeconfig });
  } catch (error) {
    if (error instanceof KubeConfigError) {
      console.error(`mbcas-agent: ${error.message}`);
      return 2;
    }
    throw error;
  }
  const registry = new Registry();
  // The agent beats its loops; /readyz turns false while one of them has stalled.
  const progress = new ProgressTracker();
  progress.exportMetrics(registry, "mbcas_agent");
  const agent = new NodeAgent(connection, {
    ...config.agent,
    log: logSink(log),
    metrics: registry,
    progress,
  });
  const server = serveProbes({
    hostname: config.bindAddress,
    port: config.metricsPort,
    ready: () => agent.ready && progress.stalled().length === 0,
    notReadyMessage: () => (agent.ready ? progress.stallMessage() : null) ?? "not ready",
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
  // Bounds count from here: starting (cache sync) is what `agent.ready` reports.
  for (const [loop, boundMs] of Object.entries(agentProgressBounds(config.agent))) {
    progress.register(loop, boundMs);
  }
  const stopWatchdog = progress.watchdog(logSink(log), 5_000);
  log.info("started", { node: config.agent.nodeName, cgroupRoot: config.agent.cgroupRoot });
  log.info("stopping", { signal: await stopSignal() });
  stopWatchdog();
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
