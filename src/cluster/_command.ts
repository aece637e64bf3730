/**
 * Running one command of the host (ip, nft, iptables-save, …) for the local
 * cluster: its output, or why it failed, never a hang (every run has a
 * timeout).
 *
 * @module
 */

/** What a command printed and whether it succeeded. */
export interface CommandResult {
  /** Exit status 0. */
  ok: boolean;
  /** Standard output. */
  stdout: string;
  /** Standard error, trimmed (or why the command could not run). */
  stderr: string;
}

/** Runs `command` with `args` (and `stdin`, when given); never throws. */
export async function runCommand(
  command: string,
  args: string[],
  options: { stdin?: string; timeoutMs?: number } = {},
): Promise<CommandResult> {
  const decoder = new TextDecoder();
  try {
    const child = new Deno.Command(command, {
      args,
      stdin: options.stdin === undefined ? "null" : "piped",
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(options.timeoutMs ?? 60_000),
    }).spawn();
    if (options.stdin !== undefined) {
      const writer = child.stdin.getWriter();
      await writer.write(new TextEncoder().encode(options.stdin));
      await writer.close();
    }
    const out = await child.output();
    return {
      ok: out.success,
      stdout: decoder.decode(out.stdout),
      stderr: decoder.decode(out.stderr).trim(),
    };
  } catch (error) {
    return { ok: false, stdout: "", stderr: `${command}: ${(error as Error).message}` };
  }
}
