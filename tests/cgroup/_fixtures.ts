/**
 * Generated cgroup trees that mimic what the kubelet and container runtimes
 * lay out on real nodes, with realistic file contents for v1 and v2, and
 * helpers to advance counters, garble files and remove cgroups.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";

/** The node layouts covered. */
export type FixtureLayout =
  | "v2-systemd" // unified, systemd driver (most current distributions)
  | "v2-cgroupfs" // unified, cgroupfs driver
  | "v2-kind" // kind: kubelet under kubelet.slice with the systemd driver
  | "v1-cgroupfs" // v1, separate cpu and cpuacct hierarchies, cgroupfs driver
  | "v1-joined-systemd" // v1, joined cpu,cpuacct hierarchy (with cpu and cpuacct symlinks), systemd driver
  | "hybrid-systemd" // v1 controllers plus a v2 "unified" mount that carries PSI
  | "v1-cgroup-root"; // v1 cgroupfs with kubelet --cgroup-root=/mbcas-test/nested

/** A container to lay out. */
export interface FixtureContainer {
  /** 64 hex digits. */
  id: string;
  /** Name prefix runtime. */
  runtime?: "containerd" | "cri-o" | "docker";
  /** v1 CPU shares (v2 weight is derived). */
  shares: number;
  /** Quota µs per 100 ms period, or null for unlimited. */
  quotaMicros: number | null;
}

/** A pod to lay out. */
export interface FixturePod {
  /** Pod UID with dashes. */
  uid: string;
  /** QoS class. */
  qos: "guaranteed" | "burstable" | "besteffort";
  /** Containers, the sandbox included if wanted. */
  containers: FixtureContainer[];
}

/** Counters of one container, advanced by tests. */
export interface Counters {
  /** ns */
  usageNanos: number;
  /** periods */
  periods: number;
  /** throttled periods */
  throttledPeriods: number;
  /** ns */
  throttledNanos: number;
  /** PSI some total, µs */
  psiSomeMicros: number;
  /** PSI some avg10, percent */
  psiSomeAvg10: number;
}

const V2_PSI = (c: Counters) =>
  `some avg10=${c.psiSomeAvg10.toFixed(2)} avg60=0.00 avg300=0.00 total=${c.psiSomeMicros}\n` +
  `full avg10=0.00 avg60=0.00 avg300=0.00 total=${Math.floor(c.psiSomeMicros / 2)}\n`;

/** A generated tree in a temporary directory. */
export class CgroupFixture {
  readonly root: string;
  readonly layout: FixtureLayout;
  readonly counters = new Map<string, Counters>();
  readonly containerDirs = new Map<string, string>();
  #pods = new Map<string, FixturePod>();

  private constructor(root: string, layout: FixtureLayout) {
    this.root = root;
    this.layout = layout;
  }

  /** Creates an empty node of the given layout, with some unrelated system cgroups. */
  static create(layout: FixtureLayout): CgroupFixture {
    const root = Deno.makeTempDirSync({ prefix: `mbcas-cgroup-${layout}-` });
    const fixture = new CgroupFixture(root, layout);
    fixture.#skeleton();
    return fixture;
  }

  get isV2(): boolean {
    return this.layout.startsWith("v2");
  }

  /** The hierarchy directory holding cpu files. */
  get cpuDir(): string {
    if (this.isV2) return this.root;
    if (this.layout === "v1-joined-systemd") return join(this.root, "cpu,cpuacct");
    return join(this.root, "cpu");
  }

  /** The hierarchy directory holding cpuacct files. */
  get cpuacctDir(): string {
    if (this.isV2) return this.root;
    if (this.layout === "v1-joined-systemd") return join(this.root, "cpu,cpuacct");
    return join(this.root, "cpuacct");
  }

  #skeleton(): void {
    const write = (path: string, text: string) => {
      Deno.mkdirSync(join(path, ".."), { recursive: true });
      Deno.writeTextFileSync(path, text);
    };
    if (this.isV2) {
      write(join(this.root, "cgroup.controllers"), "cpuset cpu io memory hugetlb pids rdma misc\n");
      write(join(this.root, "cgroup.subtree_control"), "cpuset cpu io memory pids\n");
      write(join(this.root, "cpu.pressure"), V2_PSI(zeroCounters()));
      write(
        join(this.root, "cpu.stat"),
        "usage_usec 123456789\nuser_usec 100000000\nsystem_usec 23456789\n",
      );
    } else {
      const cpu = this.cpuDir;
      const cpuacct = this.cpuacctDir;
      write(join(cpu, "cpu.shares"), "1024\n");
      write(join(cpu, "cpu.cfs_quota_us"), "-1\n");
      write(join(cpu, "cpu.cfs_period_us"), "100000\n");
      write(join(cpu, "cpu.stat"), "nr_periods 0\nnr_throttled 0\nthrottled_time 0\n");
      write(join(cpuacct, "cpuacct.usage"), "987654321000\n");
      if (this.layout === "v1-joined-systemd") {
        Deno.symlinkSync("cpu,cpuacct", join(this.root, "cpu"));
        Deno.symlinkSync("cpu,cpuacct", join(this.root, "cpuacct"));
      }
      for (const other of ["memory", "pids", "systemd"]) Deno.mkdirSync(join(this.root, other));
      if (this.layout === "hybrid-systemd") {
        write(join(this.root, "unified", "cgroup.controllers"), "\n");
        write(join(this.root, "unified", "cpu.pressure"), V2_PSI(zeroCounters()));
      }
    }
    // Unrelated system cgroups discovery must walk past.
    for (
      const dir of [
        "system.slice/containerd.service",
        "system.slice/kubelet.service",
        "user.slice/user-0.slice",
      ]
    ) {
      this.#mkCgroup(dir, null, 1024);
    }
  }

  /** Relative path of the kubelet tree's root for this layout. */
  get kubepodsRoot(): string {
    switch (this.layout) {
      case "v2-kind":
        return "/kubelet.slice/kubelet-kubepods.slice";
      case "v1-cgroup-root":
        return "/mbcas-test/nested/kubepods";
      case "v2-cgroupfs":
      case "v1-cgroupfs":
        return "/kubepods";
    }
    return "/kubepods.slice";
  }

  get #systemd(): boolean {
    return this.kubepodsRoot.endsWith(".slice");
  }

  /** Relative path of a pod's cgroup. */
  podPath(uid: string, qos: FixturePod["qos"]): string {
    const rootPath = this.kubepodsRoot;
    if (!this.#systemd) {
      return qos === "guaranteed" ? `${rootPath}/pod${uid}` : `${rootPath}/${qos}/pod${uid}`;
    }
    const prefix = rootPath.split("/").pop()!.replace(/\.slice$/, ""); // kubepods or kubelet-kubepods
    const escaped = uid.replaceAll("-", "_");
    return qos === "guaranteed"
      ? `${rootPath}/${prefix}-pod${escaped}.slice`
      : `${rootPath}/${prefix}-${qos}.slice/${prefix}-${qos}-pod${escaped}.slice`;
  }

  /** Relative path of a container's cgroup. */
  containerPath(pod: FixturePod, container: FixtureContainer): string {
    const runtime = container.runtime ?? "containerd";
    const name = this.#systemd
      ? `${
        { containerd: "cri-containerd", "cri-o": "crio", docker: "docker" }[runtime]
      }-${container.id}.scope`
      : container.id;
    return `${this.podPath(pod.uid, pod.qos)}/${name}`;
  }

  /** Lays out a pod and its containers, with zeroed counters. */
  addPod(pod: FixturePod): void {
    this.#pods.set(pod.uid, pod);
    const podPath = this.podPath(pod.uid, pod.qos);
    const podShares = pod.containers.reduce((s, c) => s + c.shares, 0);
    this.#mkCgroup(podPath, null, podShares);
    for (const container of pod.containers) {
      const path = this.containerPath(pod, container);
      this.containerDirs.set(container.id, path);
      this.counters.set(container.id, zeroCounters());
      this.#mkCgroup(path, container.quotaMicros, container.shares);
      this.#writeCounters(container.id);
    }
  }

  /** Adds to a container's counters and rewrites its files. */
  advance(id: string, delta: Partial<Counters>): void {
    const c = this.counters.get(id)!;
    for (const [key, value] of Object.entries(delta) as [keyof Counters, number][]) {
      c[key] = key === "psiSomeAvg10" ? value : c[key] + value;
    }
    this.#writeCounters(id);
  }

  /** Replaces a container's counters (e.g. to simulate a reset) and rewrites its files. */
  setCounters(id: string, counters: Counters): void {
    this.counters.set(id, { ...counters });
    this.#writeCounters(id);
  }

  /** Sets a container's quota (µs per 100 ms) or removes it (null). */
  setQuota(id: string, quotaMicros: number | null): void {
    const dir = this.containerDirs.get(id)!;
    if (this.isV2) {
      Deno.writeTextFileSync(join(this.cpuDir, dir, "cpu.max"), `${quotaMicros ?? "max"} 100000\n`);
    } else {Deno.writeTextFileSync(
        join(this.cpuDir, dir, "cpu.cfs_quota_us"),
        `${quotaMicros ?? -1}\n`,
      );}
  }

  /** Overwrites one of a container's files with arbitrary text. */
  garble(id: string, file: string, text: string): void {
    const hierarchy = file === "cpuacct.usage" ? this.cpuacctDir : this.cpuDir;
    Deno.writeTextFileSync(join(hierarchy, this.containerDirs.get(id)!, file), text);
  }

  /** Removes one of a container's files. */
  removeFile(id: string, file: string): void {
    const hierarchy = file === "cpuacct.usage" ? this.cpuacctDir : this.cpuDir;
    Deno.removeSync(join(hierarchy, this.containerDirs.get(id)!, file));
  }

  /** Removes a container's cgroup from every hierarchy (the container exited). */
  removeContainer(id: string): void {
    const path = this.containerDirs.get(id)!;
    for (const dir of this.#hierarchies()) {
      Deno.removeSync(join(dir, path), { recursive: true });
    }
  }

  /** Creates an arbitrary directory (in every hierarchy) below the root. */
  mkdir(relativePath: string): void {
    for (const dir of this.#hierarchies()) {
      Deno.mkdirSync(join(dir, relativePath), { recursive: true });
    }
  }

  /** Deletes the whole tree. */
  cleanup(): void {
    Deno.removeSync(this.root, { recursive: true });
  }

  #hierarchies(): string[] {
    const dirs = new Set([this.cpuDir, this.cpuacctDir]);
    if (this.layout === "hybrid-systemd") dirs.add(join(this.root, "unified"));
    return [...dirs];
  }

  #mkCgroup(path: string, quotaMicros: number | null, shares: number): void {
    for (const dir of this.#hierarchies()) Deno.mkdirSync(join(dir, path), { recursive: true });
    // Like the kernel's, every cgroup on the way (kubepods, the QoS classes) has its files.
    const parts = path.split("/").filter(Boolean);
    for (let i = 1; i < parts.length; i++) {
      const ancestor = parts.slice(0, i).join("/");
      if (!existsSync(join(this.cpuDir, ancestor, "cgroup.procs"))) {
        this.#writeCgroupFiles(ancestor, null, 1024);
      }
    }
    this.#writeCgroupFiles(path, quotaMicros, shares);
  }

  /** The files of the cgroup at `path` (which exists in every hierarchy), counters at zero. */
  #writeCgroupFiles(path: string, quotaMicros: number | null, shares: number): void {
    const cpu = join(this.cpuDir, path);
    Deno.writeTextFileSync(join(cpu, "cgroup.procs"), "");
    if (this.isV2) {
      Deno.writeTextFileSync(join(cpu, "cpu.max"), `${quotaMicros ?? "max"} 100000\n`);
      const weight = 1 + Math.floor(((shares - 2) * 9999) / 262142); // the kubelet's integer mapping
      Deno.writeTextFileSync(join(cpu, "cpu.weight"), `${weight}\n`);
      Deno.writeTextFileSync(
        join(cpu, "cpu.stat"),
        "usage_usec 0\nuser_usec 0\nsystem_usec 0\nnr_periods 0\nnr_throttled 0\nthrottled_usec 0\nnr_bursts 0\nburst_usec 0\n",
      );
      Deno.writeTextFileSync(join(cpu, "cpu.pressure"), V2_PSI(zeroCounters()));
    } else {
      Deno.writeTextFileSync(join(cpu, "cpu.shares"), `${shares}\n`);
      Deno.writeTextFileSync(join(cpu, "cpu.cfs_quota_us"), `${quotaMicros ?? -1}\n`);
      Deno.writeTextFileSync(join(cpu, "cpu.cfs_period_us"), "100000\n");
      Deno.writeTextFileSync(
        join(cpu, "cpu.stat"),
        "nr_periods 0\nnr_throttled 0\nthrottled_time 0\nnr_bursts 0\nburst_time 0\n",
      );
      Deno.writeTextFileSync(join(this.cpuacctDir, path, "cpuacct.usage"), "0\n");
      if (this.layout === "hybrid-systemd") {
        Deno.writeTextFileSync(
          join(this.root, "unified", path, "cpu.pressure"),
          V2_PSI(zeroCounters()),
        );
      }
    }
  }

  #writeCounters(id: string): void {
    const c = this.counters.get(id)!;
    const path = this.containerDirs.get(id)!;
    const cpu = join(this.cpuDir, path);
    if (this.isV2) {
      const usageMicros = Math.floor(c.usageNanos / 1000);
      Deno.writeTextFileSync(
        join(cpu, "cpu.stat"),
        `usage_usec ${usageMicros}\nuser_usec ${Math.floor(usageMicros * 0.8)}\nsystem_usec ${
          usageMicros - Math.floor(usageMicros * 0.8)
        }\n` +
          `nr_periods ${c.periods}\nnr_throttled ${c.throttledPeriods}\nthrottled_usec ${
            Math.floor(c.throttledNanos / 1000)
          }\nnr_bursts 0\nburst_usec 0\n`,
      );
      Deno.writeTextFileSync(join(cpu, "cpu.pressure"), V2_PSI(c));
    } else {
      Deno.writeTextFileSync(join(this.cpuacctDir, path, "cpuacct.usage"), `${c.usageNanos}\n`);
      Deno.writeTextFileSync(
        join(cpu, "cpu.stat"),
        `nr_periods ${c.periods}\nnr_throttled ${c.throttledPeriods}\nthrottled_time ${c.throttledNanos}\nnr_bursts 0\nburst_time 0\n`,
      );
      if (this.layout === "hybrid-systemd") {
        Deno.writeTextFileSync(join(this.root, "unified", path, "cpu.pressure"), V2_PSI(c));
      }
    }
  }
}

/** Counters of a container that has not run yet (or whose counters were reset). */
export function zeroCounters(): Counters {
  return {
    usageNanos: 0,
    periods: 0,
    throttledPeriods: 0,
    throttledNanos: 0,
    psiSomeMicros: 0,
    psiSomeAvg10: 0,
  };
}

/** A deterministic 64-hex container id. */
export function containerId(seed: number): string {
  let s = seed * 2654435761 % 4294967296;
  let hex = "";
  while (hex.length < 64) {
    s = (s * 1103515245 + 12345) % 2147483648;
    hex += s.toString(16).padStart(8, "0");
  }
  return hex.slice(0, 64);
}

/** A deterministic pod UID. */
export function podUid(seed: number): string {
  const h = containerId(seed + 7777);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${
    h.slice(20, 32)
  }`;
}

/** Every layout. */
export const ALL_LAYOUTS: FixtureLayout[] = [
  "v2-systemd",
  "v2-cgroupfs",
  "v2-kind",
  "v1-cgroupfs",
  "v1-joined-systemd",
  "hybrid-systemd",
  "v1-cgroup-root",
];
