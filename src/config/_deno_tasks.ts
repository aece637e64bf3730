/**
 * The `deno run` and `deno compile` flags of the project's tasks, read from
 * deno.json, so the local images run the entry points exactly as the compile
 * tasks build them and the tests start the agent and the controller exactly
 * as `deno task agent` and `deno task controller` do (permission set, V8
 * flags).
 *
 * @module
 */

/** The project's deno.json. */
export const DENO_JSON: string = new URL("../../deno.json", import.meta.url).pathname;

/**
 * A `deno run` or `deno compile` task of deno.json taken apart: the
 * subcommand, the words between it and the entry point, and the entry point
 * as written (relative to the project).
 */
export function taskParts(task: string): { verb: string; flags: string[]; entry: string } {
  const config = JSON.parse(Deno.readTextFileSync(DENO_JSON));
  const spec = config.tasks?.[task];
  if (spec === undefined) throw new Error(`deno.json has no task ${task}`);
  const command: string = typeof spec === "string" ? spec : spec.command;
  const words = command.split(/\s+/);
  const entry = words.findLastIndex((w) => w.endsWith(".ts"));
  if (words[0] !== "deno" || !["run", "compile"].includes(words[1]) || entry < 2) {
    throw new Error(`task ${task} is not "deno run|compile ... <script>.ts": ${command}`);
  }
  return { verb: words[1], flags: words.slice(2, entry), entry: words[entry] };
}

/** A `deno run` task's flags and its entry point (absolute path). */
export function taskRun(task: string): { flags: string[]; entry: string } {
  const { verb, flags, entry } = taskParts(task);
  if (verb !== "run") throw new Error(`task ${task} is not a "deno run" task`);
  return { flags, entry: new URL(`../../${entry}`, import.meta.url).pathname };
}
