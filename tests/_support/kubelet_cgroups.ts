/**
 * Real cgroups for the cgroup module's real-kernel tests and benchmark, laid
 * out as the kubelet's cgroupfs driver lays them out: `<root>/kubepods/<qos>/pod<uid>/<container id>` for
 * Burstable and BestEffort pods, `<root>/kubepods/pod<uid>/<id>` for
 * Guaranteed ones, under a lab-owned `<root>` (like the kubelet's
 * `--cgroup-root`), so nothing a real kubelet owns is touched.
 *
 * cgroup v1: the `cpu` and `cpuacct` hierarchies (joined or separate), plus the
 * `unified` hierarchy when mounted (hybrid: PSI lives there); v2: the unified
 * hierarchy with the cpu controller enabled down the tree. CPU shares/weight
 * come from requests and the CFS quota from limits, with the kubelet's
 * formulas. (The lab ran its own kubelet on these before it moved to the real
 * node; tests/cluster shows the real kubelet's tree to the cgroup module.)
 *
 * @module
 */
import { join } from "node:path";

/** Where cgroup hierarchies are mounted. */
export const CGROUP_MOUNT = "/sys/fs/cgroup";
/** CFS period the kubelet uses, microseconds. */
export const CFS_PERIOD_MICROS = 100_000;

/** The machine's cgroup layout. */
export type CgroupMode = "v1" | "v2";

/** The kubelet's cpu.shares for a CPU request (`MilliCPUToShares`). */
export function sharesFromRequest(requestMillicores: number): number {
  return Math.max(2, Math.floor((requestMillicores * 1024) / 1000));
}

/** cgroup v2 cpu.weight for v1 shares (the conversion runc and the kubelet use). */
export function weightFromShares(shares: number): number {
  return 1 + Math.floor(((shares - 2) * 9999) / 262142);
}

/** The CFS quota for a CPU limit, microseconds per period; null when unlimited (`MilliCPUToQuota`). */
export function quotaFromLimit(limitMillicores: number | null): number | null {
  if (limitMillicores === null) return null;
  return Math.max(1000, Math.floor((limitMillicores * CFS_PERIOD_MICROS) / 1000));
}

/** The QoS directory a pod lives in (`""` for Guaranteed). */
export type QosDir = "burstable" | "besteffort" | "";

/** The cgroup mode of this machine. */
export function detectMode(): CgroupMode {
  const exists = (p: string) => {
    try {
      Deno.statSync(p);
      return true;
    } catch {
      return false;
    }
  };
  if (exists(join(CGROUP_MOUNT, "cpu", "cgroup.procs"))) {
    if (!exists(join(CGROUP_MOUNT, "cpuacct", "cgroup.procs"))) {
      throw new Error(`cgroup v1 cpuacct hierarchy not mounted at ${CGROUP_MOUNT}/cpuacct`);
    }
    return "v1";
  }
  try {
    const controllers = Deno.readTextFileSync(join(CGROUP_MOUNT, "cgroup.controllers"));
    if (controllers.split(/\s+/).includes("cpu")) return "v2";
  } catch {
    // neither layout
  }
  throw new Error(`no cgroup v1 cpu hierarchy nor cgroup v2 cpu controller at ${CGROUP_MOUNT}`);
}

/** A lab-owned cgroup tree. */
export class LabCgroups {
  /** v1 or v2. */
  readonly mode: CgroupMode;
  /** The lab's cgroup root, relative to each hierarchy (e.g. `/mbcas-lab-1a2b`). */
  readonly root: string;
  /** Absolute hierarchy roots written to (deduplicated when v1 joins cpu and cpuacct). */
  readonly hierarchies: string[];
  /** Where `cpu.*` files live: the unified root (v2) or the v1 `cpu` hierarchy. */
  readonly #cpuDir: string;
  #dirs: string[] = [];
  #mountpoint: string | null = null;

  /** Creates the root (`/<name>/kubepods/{burstable,besteffort}`) in every hierarchy. */
  constructor(name = `mbcas-lab-${crypto.randomUUID().slice(0, 8)}`) {
    this.mode = detectMode();
    this.root = `/${name}`;
    if (this.mode === "v1") {
      const dirs = ["cpu", "cpuacct"].map((h) => Deno.realPathSync(join(CGROUP_MOUNT, h)));
      const unified = join(CGROUP_MOUNT, "unified");
      try {
        Deno.statSync(join(unified, "cgroup.procs"));
        dirs.push(unified);
      } catch {
        // pure v1: no PSI per cgroup
      }
      this.hierarchies = [...new Set(dirs)];
      this.#cpuDir = dirs[0];
    } else {
      this.hierarchies = [CGROUP_MOUNT];
      this.#cpuDir = CGROUP_MOUNT;
    }
    for (const rel of [this.root, this.kubepods, `${this.kubepods}/burstable`]) this.#mkdir(rel);
    this.#mkdir(`${this.kubepods}/besteffort`);
  }

  /** `<root>/kubepods`, relative. */
  get kubepods(): string {
    return `${this.root}/kubepods`;
  }

  /** The pod's cgroup, relative. */
  podPath(qos: QosDir, uid: string): string {
    return qos === "" ? `${this.kubepods}/pod${uid}` : `${this.kubepods}/${qos}/pod${uid}`;
  }

  /** Creates the pod's cgroup (idempotent). */
  addPod(qos: QosDir, uid: string): string {
    const path = this.podPath(qos, uid);
    this.#mkdir(path);
    return path;
  }

  /** Creates a container cgroup below its pod with shares from the request (idempotent). */
  addContainer(podPath: string, id: string, requestMillicores: number): string {
    const path = `${podPath}/${id}`;
    this.#mkdir(path, false);
    this.setShares(path, requestMillicores);
    return path;
  }

  /** Sets cpu.shares (v1) or cpu.weight (v2) from a CPU request. */
  setShares(path: string, requestMillicores: number): void {
    const shares = sharesFromRequest(requestMillicores);
    if (this.mode === "v1") this.#write(path, "cpu.shares", String(shares));
    else this.#write(path, "cpu.weight", String(weightFromShares(shares)));
  }

  /** Sets the CFS quota for a CPU limit (null: unlimited). */
  setLimit(path: string, limitMillicores: number | null): void {
    const quota = quotaFromLimit(limitMillicores);
    if (this.mode === "v1") {
      this.#write(path, "cpu.cfs_period_us", String(CFS_PERIOD_MICROS));
      this.#write(path, "cpu.cfs_quota_us", String(quota ?? -1));
    } else {
      this.#write(path, "cpu.max", `${quota ?? "max"} ${CFS_PERIOD_MICROS}`);
    }
  }

  /** The CPU limit in the kernel, millicores; null when unlimited. */
  readLimit(path: string): number | null {
    if (this.mode === "v1") {
      const quota = Number(this.#read(path, "cpu.cfs_quota_us"));
      const period = Number(this.#read(path, "cpu.cfs_period_us"));
      return quota < 0 ? null : Math.round((quota * 1000) / period);
    }
    const [quota, period] = this.#read(path, "cpu.max").trim().split(/\s+/);
    return quota === "max" ? null : Math.round((Number(quota) * 1000) / Number(period));
  }

  /** Shell commands that move the calling shell (`$$`) into the cgroup in every hierarchy. */
  joinCommand(path: string): string {
    return this.hierarchies.map((h) => `echo $$ > '${join(h, path, "cgroup.procs")}'`).join(
      " && ",
    );
  }

  /** Process ids in a cgroup (from the first hierarchy). */
  pids(path: string): number[] {
    try {
      return Deno.readTextFileSync(join(this.hierarchies[0], path, "cgroup.procs"))
        .split("\n").filter((l) => l !== "").map(Number);
    } catch {
      return [];
    }
  }

  /** Bind-mounts the whole cgroup tree outside /sys (Deno reads /sys only with --allow-all). */
  bindMount(): string {
    if (this.#mountpoint !== null) return this.#mountpoint;
    const dir = Deno.makeTempDirSync({ prefix: "mbcas-lab-cgroup-" });
    run("mount", ["--rbind", CGROUP_MOUNT, dir]);
    run("mount", ["--make-rslave", dir]);
    this.#mountpoint = dir;
    return dir;
  }

  /** Removes a cgroup subtree (its processes must be gone), deepest first. */
  async remove(path: string): Promise<void> {
    const doomed = this.#dirs.filter((d) => d === path || d.startsWith(`${path}/`));
    for (const rel of doomed.reverse()) await this.#rmdir(rel);
    this.#dirs = this.#dirs.filter((d) => !doomed.includes(d));
  }

  /** Kills every process left in the tree, removes every cgroup and the mount. */
  async cleanup(): Promise<void> {
    for (const rel of this.#dirs) {
      for (const pid of this.pids(rel)) {
        try {
          Deno.kill(pid, "SIGKILL");
        } catch {
          // already gone
        }
      }
    }
    if (this.#mountpoint !== null) {
      run("umount", ["-R", this.#mountpoint]);
      Deno.removeSync(this.#mountpoint);
      this.#mountpoint = null;
    }
    for (const rel of [...this.#dirs].reverse()) await this.#rmdir(rel);
    this.#dirs = [];
  }

  /** Hierarchies in which the lab root still exists (empty after cleanup). */
  leftovers(): string[] {
    return this.hierarchies.filter((h) => {
      try {
        Deno.statSync(join(h, this.root));
        return true;
      } catch {
        return false;
      }
    });
  }

  #write(path: string, file: string, value: string): void {
    Deno.writeTextFileSync(join(this.#cpuDir, path, file), value);
  }

  #read(path: string, file: string): string {
    return Deno.readTextFileSync(join(this.#cpuDir, path, file));
  }

  #mkdir(rel: string, parent = true): void {
    if (this.#dirs.includes(rel)) return;
    for (const h of this.hierarchies) {
      try {
        Deno.mkdirSync(join(h, rel));
      } catch (error) {
        if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
      }
      if (this.mode === "v2" && parent) {
        // The cpu controller for the children (containers are leaves: processes live there).
        Deno.writeTextFileSync(join(h, rel, "cgroup.subtree_control"), "+cpu");
      }
    }
    this.#dirs.push(rel);
  }

  async #rmdir(rel: string): Promise<void> {
    for (const h of this.hierarchies) {
      for (let attempt = 0; attempt < 100; attempt++) {
        try {
          Deno.removeSync(join(h, rel));
          break;
        } catch (error) {
          if (error instanceof Deno.errors.NotFound) break;
          await new Promise((r) => setTimeout(r, 20)); // EBUSY until killed tasks are reaped
        }
      }
    }
  }
}

function run(command: string, args: string[]): void {
  const out = new Deno.Command(command, { args, stdout: "piped", stderr: "piped" }).outputSync();
  if (!out.success) {
    throw new Error(`${command} ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  }
}
