/**
 * The `deno run` flags of a task in deno.json (permissions, V8 flags), so
 * tests and benchmarks run entry points exactly as users' tasks do. A task's
 * `-P=<set>` is expanded into the equivalent `--allow-*` flags from the
 * `permissions` section of deno.json (tests narrow some of them further).
 */
import { taskRun } from "../../src/config/mod.ts";

/** One permission of a set: everything (`true`), nothing (`false`), or a list. */
export type PermissionValue = boolean | string[];

/** A permission set as deno.json declares it. */
export type PermissionSet = Partial<
  Record<"read" | "write" | "net" | "env" | "sys" | "run" | "ffi" | "import", PermissionValue>
>;

/** The project's deno.json, parsed. */
export function denoConfig(): {
  tasks: Record<string, string | { command: string }>;
  permissions: Record<string, PermissionSet>;
} {
  return JSON.parse(Deno.readTextFileSync(new URL("../../deno.json", import.meta.url)));
}

/** The `--allow-*` flags equivalent to the permission set `name` of deno.json. */
export function permissionFlags(name: string): string[] {
  const set = denoConfig().permissions[name];
  if (set === undefined) throw new Error(`deno.json has no permission set ${name}`);
  const flags: string[] = [];
  for (const [kind, value] of Object.entries(set)) {
    if (value === true) flags.push(`--allow-${kind}`);
    else if (Array.isArray(value) && value.length > 0) {
      flags.push(`--allow-${kind}=${value.join(",")}`);
    }
  }
  return flags;
}

/** The flags between `run` and the script of a task, with `-P=<set>` expanded. */
export function taskRunFlags(task: string): string[] {
  return taskRun(task).flags.flatMap((w) => {
    const set = /^(?:-P|--permission-set)=(.+)$/.exec(w);
    return set === null ? [w] : permissionFlags(set[1]);
  });
}

/**
 * The `DENO_V8_FLAGS` the shipped manifest of `component` sets
 * (deploy/base/<component>.yaml), so benchmarks run with the heap users get.
 */
export function manifestV8Flags(component: "controller" | "agent"): string {
  const yaml = Deno.readTextFileSync(
    new URL(`../../deploy/base/${component}.yaml`, import.meta.url),
  );
  const value = /- name: DENO_V8_FLAGS\n\s+value: "?([^"\n]+)"?/.exec(yaml)?.[1];
  if (value === undefined) throw new Error(`deploy/base/${component}.yaml sets no DENO_V8_FLAGS`);
  return value.trim();
}
