/**
 * Plain data shapes of the cgroup module: what discovery finds, what one
 * sample of a container's counters holds, and the signals two samples give.
 *
 * @module
 */

/** cgroup v1 (separate controller hierarchies) or v2 (one unified hierarchy). */
export type CgroupVersion = 1 | 2;
/** Kubernetes QoS class, as encoded in the kubelet's cgroup layout. */
export type QosClass = "guaranteed" | "burstable" | "besteffort";
/** The kubelet's cgroup driver, as recognised from directory names. */
export type CgroupDriver = "systemd" | "cgroupfs";
/** The container runtime, from the container cgroup's name prefix. */
export type ContainerRuntime = "containerd" | "cri-o" | "docker" | "unknown";

/** Where a node's CPU counters live. All paths are absolute. */
export interface CgroupLayout {
  /** The root given to discovery (default `/sys/fs/cgroup`). */
  root: string;
  /** Version of the hierarchy that holds the CPU controller. */
  version: CgroupVersion;
  /** Hierarchy with `cpu.stat`/`cpu.max` (v2) or `cpu.stat`/`cpu.cfs_quota_us` (v1). */
  cpuDir: string;
  /** Hierarchy with `cpuacct.usage` (v1); the same as `cpuDir` on v2. */
  cpuacctDir: string;
  /** Hierarchy with `cpu.pressure`, or null when the kernel offers no PSI here. */
  psiDir: string | null;
}

/** One container's cgroup under a pod. */
export interface ContainerCgroup {
  /** Pod UID, with dashes (as in `metadata.uid`). */
  podUID: string;
  /** QoS class of the pod. */
  qos: QosClass;
  /** The kubelet's cgroup driver. */
  driver: CgroupDriver;
  /** Bare container id (64 hex digits). */
  id: string;
  /** As in pod status: `containerd://<id>`, `cri-o://<id>`, `docker://<id>`, or the bare id when unknown. */
  containerID: string;
  /** Runtime, from the cgroup's name. */
  runtime: ContainerRuntime;
  /** Path relative to each hierarchy root, starting with `/`. */
  relativePath: string;
  /**
   * Whether this is the pod's sandbox (pause) container: decided by the pod's
   * known container ids when given, otherwise from its CPU weight (runtimes give
   * the sandbox the minimum); null when that cannot tell.
   */
  sandbox: boolean | null;
}

/** One pod's cgroup and its containers. */
export interface PodCgroup {
  /** Pod UID, with dashes. */
  podUID: string;
  /** QoS class of the pod. */
  qos: QosClass;
  /** The kubelet's cgroup driver. */
  driver: CgroupDriver;
  /** Path relative to each hierarchy root, starting with `/`. */
  relativePath: string;
  /** The container cgroups found under the pod. */
  containers: ContainerCgroup[];
}

/** A directory inside the kubelet's tree that discovery could not classify. */
export interface Unclassified {
  /** Path relative to the hierarchy root. */
  relativePath: string;
  /** Why it was not classified. */
  reason: string;
}

/** What a discovery pass found. */
export interface Discovery {
  /** The hierarchies in use. */
  layout: CgroupLayout;
  /** The kubelet trees found (relative paths of their `kubepods` roots). */
  kubepodsRoots: string[];
  /** Every pod cgroup found. */
  pods: PodCgroup[];
  /** Directories inside the kubelet's tree that are neither QoS, pod nor container cgroups. */
  unclassified: Unclassified[];
}

/** One line of a PSI file. */
export interface PsiLine {
  /** Share of time stalled, percent, averaged over 10 s. */
  avg10: number;
  /** … over 60 s. */
  avg60: number;
  /** … over 300 s. */
  avg300: number;
  /** Total stall time, microseconds. */
  totalMicros: number;
}

/** A `cpu.pressure` file. */
export interface PsiSample {
  /** Some task runnable but not running. */
  some: PsiLine;
  /** All tasks stalled (absent on old kernels at cgroup level). */
  full: PsiLine | null;
}

/** One reading of a container's CPU counters. */
export interface CpuSample {
  /** Monotonic time of the reading, milliseconds (from the injected clock). */
  atMs: number;
  /** Cumulative CPU time, nanoseconds. */
  usageNanos: number;
  /** CFS enforcement periods elapsed (0 when no quota was ever set). */
  periods: number;
  /** Periods in which the cgroup was throttled. */
  throttledPeriods: number;
  /** Cumulative throttled time, nanoseconds. */
  throttledNanos: number;
  /** CFS quota per period, microseconds; null when unlimited. */
  quotaMicros: number | null;
  /** CFS period, microseconds. */
  periodMicros: number;
  /** `cpu.shares` (v1) or `cpu.weight` converted to shares (v2); null when absent. */
  shares: number | null;
  /** CPU pressure, null when the kernel offers none for this cgroup. */
  psi: PsiSample | null;
}

/** The result of reading a container's counters: a sample, or what went wrong. */
export type SampleResult =
  | { status: "ok"; sample: CpuSample }
  | { status: "vanished"; path: string }
  | { status: "missing-file"; file: string }
  | { status: "malformed"; file: string; detail: string }
  | { status: "unreadable"; file: string; detail: string };

/** CPU signals from two samples of one container. */
export interface CpuSignals {
  /** Time between the samples, milliseconds. */
  intervalMs: number;
  /** CPU used, millicores. */
  usageMillicores: number;
  /** Δnr_throttled / Δnr_periods; 0 when no period elapsed. */
  throttledRatio: number;
  /** Throttled time per second of wall time, in millicores (CPUs-worth of runnable time held back). */
  throttledMillicores: number;
  /** Current CFS limit, millicores; null when unlimited. */
  limitMillicores: number | null;
  /** Fraction of the interval in which some task stalled (PSI `some`), null without PSI. */
  psiSomeStallRatio: number | null;
  /** Fraction of the interval in which all tasks stalled (PSI `full`), null without it. */
  psiFullStallRatio: number | null;
  /** The kernel's own 10 s `some` average, percent; null without PSI. */
  psiSomeAvg10: number | null;
}

/** The result of comparing two samples: signals, or why there are none. */
export type SignalsResult =
  | { status: "ok"; signals: CpuSignals }
  | { status: "counter-reset"; counter: string; detail: string }
  | { status: "invalid-interval"; intervalMs: number };
