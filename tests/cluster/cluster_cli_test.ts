/**
 * `deno task cluster` as a person uses it, on the real node: bad options
 * exit 2 naming the option; Ctrl-C (SIGINT) stops everything and restores
 * the machine; and when the process is killed outright (SIGKILL, no
 * teardown of its own), its reaper restores the machine within seconds.
 * Both check the whole host state against a snapshot taken before.
 */
import assert from "node:assert/strict";
import {
  diffHost,
  foreignCgroupPatterns,
  type HostSnapshot,
  snapshotHost,
} from "../../src/cluster/mod.ts";
import { requireOrSkip } from "../_support/requirements.ts";
import { realNodeMissing, runningNodeProcesses } from "../_support/real_node.ts";

const CLI = new URL("../../src/cli/cluster.ts", import.meta.url).pathname;

/** The CLI started; `log()` is what it has written to stderr so far, for failure messages. */
function startCli(
  args: string[],
): { child: Deno.ChildProcess; ready: Promise<string>; log: () => string } {
  const timeout = AbortSignal.timeout(180_000);
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", "--allow-all", CLI, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let stderr = "";
  child.stderr.pipeThrough(new TextDecoderStream()).pipeTo(
    new WritableStream({ write: (chunk) => void (stderr += chunk) }),
  ).catch(() => {});
  const log = () => `\n--- deno task cluster's stderr ---\n${stderr}`;
  const ready = (async () => {
    let text = "";
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      text += chunk;
      if (text.includes("Ctrl-C stops everything")) return text;
      if (timeout.aborted) break;
    }
    throw new Error(`deno task cluster ended before it was ready:\n${text}${log()}`);
  })();
  return { child, ready, log };
}

async function restoredWithin(before: HostSnapshot, timeoutMs: number): Promise<string[]> {
  const ignoreCgroups = await foreignCgroupPatterns(before);
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    // A node component still exiting counts too: the next test checks that none runs.
    const diff = [
      ...diffHost(before, await snapshotHost(), { ignoreCgroups }),
      ...runningNodeProcesses().map((p) => `process still running: ${p}`),
    ];
    if (diff.length === 0 || performance.now() >= deadline) return diff;
    await new Promise((r) => setTimeout(r, 1000));
  }
}

/** After a failed step: the CLI killed, and its reaper given time to restore the machine. */
async function killAndRestore(child: Deno.ChildProcess, before: HostSnapshot): Promise<void> {
  try {
    child.kill("SIGKILL");
  } catch {
    return; // it had exited: whatever it left was checked
  }
  await child.status;
  await restoredWithin(before, 60_000);
}

Deno.test("deno task cluster: an unknown option exits 2 naming it", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", "--allow-all", CLI, "--nodes", "3"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 2);
  assert.match(new TextDecoder().decode(out.stderr), /cluster: .*'--nodes'/);
});

requireOrSkip(
  "deno task cluster (real node): Ctrl-C restores the machine, and so does the reaper after SIGKILL",
  realNodeMissing(),
  async (t) => {
    await t.step(
      "SIGINT, twice as deno task passes it: the cluster stops in order, exit 0",
      async () => {
        const before = await snapshotHost();
        const { child, ready, log } = startCli(["--no-images"]);
        try {
          const printed = await ready;
          assert.match(printed, /export KUBECONFIG=\/\S+admin\.kubeconfig/);
          child.kill("SIGINT");
          child.kill("SIGINT");
          const status = await child.status;
          assert.equal(status.code, 0, log());
          assert.deepEqual(
            await restoredWithin(before, 10_000),
            [],
            `the machine is as before${log()}`,
          );
        } finally {
          await killAndRestore(child, before);
        }
      },
    );
    await t.step("SIGKILL: the reaper restores the machine", async () => {
      const before = await snapshotHost();
      const { child, ready, log } = startCli(["--no-images"]);
      try {
        await ready;
        child.kill("SIGKILL");
        await child.status;
        assert.deepEqual(await restoredWithin(before, 60_000), [], `restored within 60 s${log()}`);
      } finally {
        await killAndRestore(child, before);
      }
    });
  },
);
