/**
 * Real cgroups on this machine's kernel, for tests run as root: a
 * kubelet-style cgroupfs tree (under a unique nested cgroup root, so nothing a
 * real kubelet owns is touched) in the v1 `cpu` and `cpuacct` hierarchies, and
 * in the v2 `unified` hierarchy when mounted (hybrid: PSI lives there), with
 * real CPU-burning processes in it. Everything is removed by `cleanup()`.
 */
import { join } from "node:path";
import { LabCgroups } from "../_support/kubelet_cgroups.ts";

const CGROUP = "/sys/fs/cgroup";

/** Why real-kernel cgroup v1 tests cannot run here, or null when they can. */
export function realCgroupV1Missing(): string | null {
  if (Deno.build.os !== "linux") return "not Linux";
  if (Deno.uid() !== 0) return "not running as root";
  for (const h of ["cpu", "cpuacct"]) {
    try {
      Deno.statSync(join(CGROUP, h, "cgroup.procs"));
    } catch {
      return `cgroup v1 ${h} hierarchy not mounted at ${join(CGROUP, h)}`;
    }
  }
  return null;
}

/** A container cgroup with a burner in it. */
export interface RealContainer {
  /** Bare 64-hex id. */
  id: string;
  /** Relative path below each hierarchy root. */
  relativePath: string;
  /** The burner's pid, once started. */
  pid?: number;
}

/** A real kubelet-style tree: the lab's {@link LabCgroups} with burners in it. */
export class RealCgroupTree {
  readonly cgroups = new LabCgroups(`mbcas-test-${crypto.randomUUID().slice(0, 8)}`);
  readonly podUID = crypto.randomUUID();
  #children: Deno.ChildProcess[] = [];

  /** The tree's top directory name. */
  get prefix(): string {
    return this.cgroups.root.slice(1);
  }

  /** The hierarchy roots written to. */
  get hierarchies(): string[] {
    return this.cgroups.hierarchies;
  }

  /** The nested kubelet root, relative. */
  get kubepodsRoot(): string {
    return this.cgroups.kubepods;
  }

  /** Creates `/prefix/kubepods/burstable/pod<uid>/<id>` in every hierarchy. */
  addContainer(
    id: string,
    quotaMicros: number | null,
    shares = 1024,
    podUID = this.podUID,
  ): RealContainer {
    const podPath = this.cgroups.addPod("burstable", podUID);
    const relativePath = this.cgroups.addContainer(podPath, id, (shares * 1000) / 1024);
    this.cgroups.setLimit(relativePath, quotaMicros === null ? null : quotaMicros / 100);
    return { id, relativePath };
  }

  /** Starts a single-threaded busy loop inside the container's cgroups, pinned to `cpus` when given (taskset's list). */
  startBurner(container: RealContainer, cpus?: string): void {
    const pin = cpus === undefined ? "" : `taskset -c ${cpus} `;
    const child = new Deno.Command("/bin/sh", {
      args: [
        "-c",
        `${
          this.cgroups.joinCommand(container.relativePath)
        } && exec ${pin}/bin/sh -c 'while :; do :; done'`,
      ],
      stdin: "null",
      stdout: "null",
      stderr: "inherit",
    }).spawn();
    this.#children.push(child);
    container.pid = child.pid;
  }

  /** Bind-mounts the whole cgroup tree at a path outside /sys (Deno reads /sys only with --allow-all). */
  bindMount(): string {
    return this.cgroups.bindMount();
  }

  /** Kills the burners and removes every cgroup and mount this tree made. */
  async cleanup(): Promise<void> {
    for (const child of this.#children) {
      try {
        child.kill("SIGKILL");
      } catch {
        // already gone
      }
      await child.status;
    }
    this.#children = [];
    await this.cgroups.cleanup();
  }

  /** Hierarchies in which the tree still exists. */
  leftovers(): string[] {
    return this.cgroups.leftovers();
  }
}
