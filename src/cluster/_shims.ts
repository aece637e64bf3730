/**
 * containerd's runc shims outlive containerd by design; the local cluster's
 * teardown (and its reaper) kill the ones of its own containerd.
 *
 * @module
 */

/** Kills every containerd shim whose command line names `socket`; resolves once they are signalled. */
export async function killShims(socket: string): Promise<number> {
  let killed = 0;
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    let cmdline = "";
    try {
      cmdline = Deno.readTextFileSync(`/proc/${entry.name}/cmdline`);
    } catch {
      continue;
    }
    if (cmdline.includes("containerd-shim") && cmdline.includes(socket)) {
      try {
        Deno.kill(Number(entry.name), "SIGKILL");
        killed++;
      } catch {
        // gone
      }
    }
  }
  if (killed > 0) await new Promise((r) => setTimeout(r, 200));
  return killed;
}
