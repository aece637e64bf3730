/**
 * Real cgroups on this machine's kernel, for tests run as root: a
 * kubelet-style cgroupfs tree (under a unique nested cgroup root, so nothing a
 * real kubelet owns is touched) in the v1 `cpu` and `cpuacct` hierarchies, and
 * in the v2 `unified` hierarchy when mounted (hybrid: PSI lives there), with
 * real CPU-burning processes in it. Everything is removed by `cleanup()`.
 */
import { join } from "node:path";

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

/** A real kubelet-style tree. */
export class RealCgroupTree {
  readonly prefix = `mbcas-test-${crypto.randomUUID().slice(0, 8)}`;
  readonly podUID = crypto.randomUUID();
  readonly hierarchies: string[];
  #children: Deno.ChildProcess[] = [];
  #dirs: string[] = []; // relative, in creation order
  #mountpoint: string | null = null;

  constructor() {
    this.hierarchies = ["cpu", "cpuacct"].map((h) => join(CGROUP, h));
    const unified = join(CGROUP, "unified");
    try {
      Deno.statSync(join(unified, "cgroup.procs"));
      this.hierarchies.push(unified);
    } catch {
      // pure v1: no PSI at cgroup level
    }
  }

  /** The nested kubelet root, relative. */
  get kubepodsRoot(): string {
    return `/${this.prefix}/kubepods`;
  }

  /** Creates `/prefix/kubepods/burstable/pod<uid>/<id>` in every hierarchy. */
  addContainer(
    id: string,
    quotaMicros: number | null,
    shares = 1024,
    podUID = this.podUID,
  ): RealContainer {
    const podPath = `${this.kubepodsRoot}/burstable/pod${podUID}`;
    for (
      const rel of [`/${this.prefix}`, this.kubepodsRoot, `${this.kubepodsRoot}/burstable`, podPath]
    ) {
      this.#mkdir(rel);
    }
    const relativePath = `${podPath}/${id}`;
    this.#mkdir(relativePath);
    const cpu = join(CGROUP, "cpu", relativePath);
    Deno.writeTextFileSync(join(cpu, "cpu.cfs_period_us"), "100000");
    Deno.writeTextFileSync(join(cpu, "cpu.shares"), String(shares));
    if (quotaMicros !== null) {
      Deno.writeTextFileSync(join(cpu, "cpu.cfs_quota_us"), String(quotaMicros));
    }
    return { id, relativePath };
  }

  /** Starts a single-threaded busy loop inside the container's cgroups. */
  startBurner(container: RealContainer): void {
    const joins = this.hierarchies.map((h) =>
      `echo $$ > '${join(h, container.relativePath, "cgroup.procs")}'`
    ).join(" && ");
    const child = new Deno.Command("/bin/sh", {
      args: ["-c", `${joins} && exec /bin/sh -c 'while :; do :; done'`],
      stdin: "null",
      stdout: "null",
      stderr: "inherit",
    }).spawn();
    this.#children.push(child);
    container.pid = child.pid;
  }

  /** Bind-mounts the whole cgroup tree at a path outside /sys (Deno reads /sys only with --allow-all). */
  bindMount(): string {
    const dir = Deno.makeTempDirSync({ prefix: "mbcas-cgroup-bind-" });
    run("mount", ["--rbind", CGROUP, dir]);
    run("mount", ["--make-rslave", dir]);
    this.#mountpoint = dir;
    return dir;
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
    if (this.#mountpoint !== null) {
      run("umount", ["-R", this.#mountpoint]);
      Deno.removeSync(this.#mountpoint);
      this.#mountpoint = null;
    }
    for (const rel of [...this.#dirs].reverse()) {
      for (const h of this.hierarchies) {
        for (let attempt = 0; attempt < 50; attempt++) {
          try {
            Deno.removeSync(join(h, rel));
            break;
          } catch (error) {
            if (error instanceof Deno.errors.NotFound) break;
            await new Promise((r) => setTimeout(r, 20)); // EBUSY until the killed task is reaped
          }
        }
      }
    }
    this.#dirs = [];
  }

  /** Whether any cgroup of this tree is still there. */
  leftovers(): string[] {
    return this.hierarchies.filter((h) => {
      try {
        Deno.statSync(join(h, this.prefix));
        return true;
      } catch {
        return false;
      }
    });
  }

  #mkdir(rel: string): void {
    if (this.#dirs.includes(rel)) return;
    for (const h of this.hierarchies) Deno.mkdirSync(join(h, rel));
    this.#dirs.push(rel);
  }
}

function run(command: string, args: string[]): void {
  const out = new Deno.Command(command, { args, stdout: "piped", stderr: "piped" }).outputSync();
  if (!out.success) {
    throw new Error(`${command} ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  }
}
