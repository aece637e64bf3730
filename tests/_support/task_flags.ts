/**
 * The `deno run` flags of a task in deno.json (permissions, V8 flags), so
 * tests and benchmarks run entry points exactly as users' tasks do.
 */
export function taskRunFlags(task: string): string[] {
  const config = JSON.parse(Deno.readTextFileSync(new URL("../../deno.json", import.meta.url)));
  const entry = config.tasks[task];
  const command: string = typeof entry === "string" ? entry : entry.command;
  const words = command.split(/\s+/);
  const run = words.indexOf("run");
  const script = words.findIndex((w, i) => i > run && w.endsWith(".ts"));
  if (run < 0 || script < 0) {
    throw new Error(`task ${task} is not "deno run ... <script>.ts": ${command}`);
  }
  return words.slice(run + 1, script);
}
