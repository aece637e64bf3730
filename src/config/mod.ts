/**
 * Reading and validating configuration for agent and controller: flags
 * (`--name value` or `--name=value`) over environment variables over
 * defaults, checked with a zod schema or hand-written checks (`checkedOptions`:
 * the agent's, which must not load zod); an invalid value names the flag, its
 * variable and the value.
 *
 * @module
 */
import { parseArgs } from "node:util";
export { DENO_JSON, taskParts, taskRun } from "./_deno_tasks.ts";
import type { OptionsSchema } from "./_checks.ts";
export { checkedOptions, choiceOption, numberOption, textOption } from "./_checks.ts";
export type {
  CheckResult,
  CheckValue,
  NumberRules,
  OptionCheck,
  OptionIssue,
  OptionsSchema,
  TextRules,
} from "./_checks.ts";

/** One option: its environment variable, default (as text) and meaning. */
export interface OptionSpec {
  /** Environment variable. */
  env: string;
  /** Default, as it would be written on the command line; "" for none. */
  default: string;
  /** What it means, for the reference tables of docs/configuration.md. */
  help: string;
}

/** Configuration that failed validation; the message names the flag, variable and value. */
export class ConfigError extends Error {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

/**
 * Reads every option in `options` from `args` (flags win), then `env`, then
 * its default, and validates the texts with `schema` (keyed by option name):
 * a zod schema or {@link checkedOptions}.
 *
 * @throws {ConfigError} for an unknown flag or the first invalid value.
 */
export function readOptions<T>(
  options: Record<string, OptionSpec>,
  schema: OptionsSchema<T>,
  args: string[],
  env: (name: string) => string | undefined,
): T {
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({
      args,
      strict: true,
      options: Object.fromEntries(
        Object.keys(options).map((name) => [name, { type: "string" as const }]),
      ),
    }).values;
  } catch (error) {
    throw new ConfigError((error as Error).message);
  }
  const raw: Record<string, string> = {};
  const source: Record<string, string> = {};
  for (const [name, spec] of Object.entries(options)) {
    const flag = values[name];
    const fromEnv = env(spec.env);
    raw[name] = typeof flag === "string" ? flag : fromEnv ?? spec.default;
    source[name] = typeof flag === "string"
      ? `--${name}`
      : fromEnv !== undefined
      ? `${spec.env} (--${name})`
      : `--${name}`;
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const name = String(issue.path[0]);
    throw new ConfigError(
      `invalid ${source[name]}: ${issue.message}, got ${JSON.stringify(raw[name])}`,
    );
  }
  return parsed.data;
}

/**
 * The program's arguments without the `--` that `deno task NAME -- ARGS`
 * passes on (Deno 2.9 keeps it), so both `deno task agent --node-name a` and
 * `deno task agent -- --node-name a` work.
 */
export function programArgs(args: readonly string[] = Deno.args): string[] {
  return args[0] === "--" ? args.slice(1) : [...args];
}
