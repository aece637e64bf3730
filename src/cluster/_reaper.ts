/**
 * The local cluster's reaper, a detached process: `_reaper.ts PID DIR`.
 * Once process PID (the one that started the cluster) is gone and DIR still
 * exists (so the cluster was not stopped), it kills every process listed in
 * `DIR/pids`, restores the machine from `DIR/host-before.json` and removes
 * DIR. A cluster stopped in order removes DIR itself, and the reaper exits.
 *
 * @module
 */
import { join } from "node:path";
import { type HostSnapshot, restoreHost, unmountBelow } from "./_host_state.ts";
import { defaultPlan, ownedByCluster, paths } from "./_plan.ts";
import { killShims } from "./_shims.ts";

function alive(pid: number): boolean {
  try {
    Deno.statSync(`/proc/${pid}`);
    return true;
  } catch {
    return false;
  }
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

if (import.meta.main) {
  const [pidText, dir] = Deno.args;
  const pid = Number(pidText);
  if (!Number.isInteger(pid) || pid <= 0 || dir === undefined) {
    console.error("usage: _reaper.ts PID DIR");
    Deno.exit(2);
  }
  while (alive(pid) && exists(dir)) await new Promise((r) => setTimeout(r, 1000));
  if (exists(dir)) {
    const pids = (() => {
      try {
        return Deno.readTextFileSync(join(dir, "pids")).split("\n").filter((l) => l !== "");
      } catch {
        return [];
      }
    })();
    for (const p of pids) {
      try {
        Deno.kill(Number(p), "SIGKILL");
      } catch {
        // gone
      }
    }
    await new Promise((r) => setTimeout(r, 500));
    await killShims(paths(dir).containerdSocket);
    const before: HostSnapshot = JSON.parse(
      Deno.readTextFileSync(join(dir, "host-before.json")),
    );
    await restoreHost(before, { filter: ownedByCluster(defaultPlan(dir)) });
    await unmountBelow(dir);
    Deno.removeSync(dir, { recursive: true });
  }
}
