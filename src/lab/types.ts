/**
 * Plain data of the lab: what a lab run records (the input of the report)
 * and what the workloads write. Shared by the scenario runner, the workloads
 * and the report.
 *
 * @module
 */

/** Workload kinds, chosen by the pod annotation `lab.mbcas.io/workload`. */
export type WorkloadKind = "latency" | "bursty" | "batch" | "idle";

/** CPU policies compared by the lab bench. */
export type LabPolicy = "static" | "none" | "vpa" | "mbcas";

/** One pod of a run, as declared. */
export interface LabPod {
  /** Pod name. */
  name: string;
  /** Its workload. */
  workload: WorkloadKind;
  /** CPU request, millicores (the market floor). */
  requestMillicores: number;
  /** CPU limit as declared, millicores; null when the pod has none. */
  limitMillicores: number | null;
  /** Its MBCAS tier (`mbcas.io/tier`); absent in runs recorded before tiers (protected). */
  tier?: "protected" | "elastic";
}

/** One per-second observation of one pod. */
export interface LabSample {
  /** Seconds since the run started. */
  t: number;
  /** Pod name. */
  pod: string;
  /** CPU used over the last second, millicores (from the pod's cgroup). */
  usageMillicores: number;
  /** Fraction of CFS periods throttled over the last second, 0..1. */
  throttledRatio: number;
  /** CPU time throttled over the last second, in millicores (ms per s). */
  throttledMillicores: number;
  /** The agent's demand estimate, millicores; null without MBCAS. */
  demandMillicores: number | null;
  /** The limit the market published (PodAllocation `cpuLimit`), millicores; null without MBCAS. */
  allocationMillicores: number | null;
  /**
   * What the market guarantees the pod under contention (PodAllocation
   * `cpuGuarantee`), millicores; null without MBCAS (and absent in runs
   * recorded before guarantees).
   */
  guaranteeMillicores?: number | null;
  /** The CPU limit in the kernel (CFS quota), millicores; null when unlimited. */
  limitMillicores: number | null;
  /**
   * The pod cgroup's CPU weight in the kernel (`cpu.shares` on cgroup v1,
   * `cpu.weight` on v2): the kubelet's, or the lowest while MBCAS has an
   * elastic pod yield; absent in runs recorded before it was.
   */
  cpuWeight?: number | null;
}

/** The node's market price at one time (MBCAS only). */
export interface LabPrice {
  /** Seconds since the run started. */
  t: number;
  /** Price (weight per millicore at the margin); null when unbounded or not contended. */
  price: number | null;
}

/** Latencies of a latency-sensitive pod's requests completed in one second. */
export interface LabLatencies {
  /** Seconds since the run started. */
  t: number;
  /** Pod name. */
  pod: string;
  /** Request latencies, milliseconds (arrival to completion). */
  latenciesMs: number[];
}

/** A limit change applied in the kernel. */
export interface LabResize {
  /** Seconds since the run started. */
  t: number;
  /** Pod name. */
  pod: string;
  /** Limit before, millicores; null when unlimited. */
  fromMillicores: number | null;
  /** Limit after, millicores; null when unlimited. */
  toMillicores: number | null;
}

/** Everything one lab run recorded: the report's input. */
export interface LabRun {
  /** Scenario name. */
  scenario: string;
  /** Policy in force. */
  policy: LabPolicy;
  /** Seed of the workloads' random schedules. */
  seed: number;
  /** ISO time the run started. */
  startedAt: string;
  /** Length of the run, seconds. */
  durationSeconds: number;
  /** The node's CPU capacity, millicores. */
  nodeCapacityMillicores: number;
  /** The pods. */
  pods: LabPod[];
  /** Per-second samples of every pod. */
  samples: LabSample[];
  /** Market prices over time. */
  prices: LabPrice[];
  /** Latencies of the latency-sensitive pods. */
  latencies: LabLatencies[];
  /** Limit changes in the kernel. */
  resizes: LabResize[];
  /**
   * The agent's writes that the API server took while the run recorded
   * (MBCAS runs; absent otherwise, and in runs recorded before it was).
   */
  agentWrites?: LabAgentWrites;
  /**
   * Where the machine's CPU went over the recorded seconds (absent in runs
   * recorded before it was): the scenario's pods, MBCAS's own pods, the
   * lab's own process, and everything else.
   */
  cpuAccount?: LabCpuAccount;
}

/**
 * CPU-seconds the machine used over part of a run, by who used them. The
 * parts need not add up to the whole: the rest is
 * {@link LabCpuAccount.machineCpuSeconds} less the others (the control plane,
 * the kubelet, containerd, other pods, the kernel).
 */
export interface LabCpuAccount {
  /** Seconds between the two readings. */
  seconds: number;
  /** Every CPU-second the machine used (`/proc/stat`: all but idle and iowait). */
  machineCpuSeconds: number;
  /** The scenario's pods (their pod cgroups). */
  scenarioPodsCpuSeconds: number;
  /** MBCAS's pods: the agent and the controller replicas (0 without MBCAS). */
  mbcasPodsCpuSeconds: number;
  /** The lab's own process: sampling, and under MBCAS reading the market and the agent's metrics every second. */
  harnessCpuSeconds: number;
  /**
   * The processes outside the pods (the rest, less the kernel's own work),
   * CPU-seconds by command, largest first; absent in runs recorded before it
   * was.
   */
  restByCommand?: Record<string, number>;
}

/** Writes of the node's agent over part of a run, from its `mbcas_agent_api_writes_total` (result ok). */
export interface LabAgentWrites {
  /** Seconds between the first and the last reading of the counters. */
  seconds: number;
  /** PodAllocations created. */
  creates: number;
  /** PodAllocations updated (merge patches of their spec). */
  updates: number;
  /** Heartbeat Lease renewals. */
  heartbeats: number;
}
