/**
 * The `deno run` flags of the project's tasks, read from deno.json, so the
 * lab starts the agent and the controller exactly as `deno task agent` and
 * `deno task controller` do (permission set, V8 flags).
 *
 * @module
 */

/** The project's deno.json. */
export const DENO_JSON: string = new URL("../../deno.json", import.meta.url).pathname;

/** A task's words between `deno run` and its entry point, and the entry point. */
export function taskRun(task: string): { flags: string[]; entry: string } {
  const config = JSON.parse(Deno.readTextFileSync(DENO_JSON));
  const entry = config.tasks?.[task];
  if (entry === undefined) throw new Error(`deno.json has no task ${task}`);
  const command: string = typeof entry === "string" ? entry : entry.command;
  const words = command.split(/\s+/);
  const run = words.indexOf("run");
  const script = words.findIndex((w, i) => i > run && w.endsWith(".ts"));
  if (words[0] !== "deno" || run !== 1 || script < 0) {
    throw new Error(`task ${task} is not "deno run ... <script>.ts": ${command}`);
  }
  return {
    flags: words.slice(run + 1, script),
    entry: new URL(`../../${words[script]}`, import.meta.url).pathname,
  };
}
