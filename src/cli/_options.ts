/**
 * Command-line options for the lab CLIs: `parseArgs` for the words, zod for
 * the values, one stderr line naming the option and value when either
 * refuses, and `--help`.
 *
 * @module
 */
import { parseArgs, type ParseArgsOptionsConfig } from "node:util";
import type { z } from "zod";

/**
 * Parses `args` into `schema`'s output; on `--help` prints `usage` and
 * returns 0, on bad input prints one line naming the option and returns 2.
 */
export function parseCliOptions<S extends z.ZodType>(
  program: string,
  args: string[],
  options: ParseArgsOptionsConfig,
  schema: S,
  usage: string,
  adjust: (values: Record<string, unknown>) => Record<string, unknown> = (v) => v,
): z.output<S> | number {
  let values: Record<string, unknown>;
  try {
    ({ values } = parseArgs({
      args,
      options: { ...options, help: { type: "boolean", default: false } },
    }));
  } catch (error) {
    console.error(`${program}: ${(error as Error).message}\n${usage}`);
    return 2;
  }
  if (values.help) {
    console.log(usage);
    return 0;
  }
  const parsed = schema.safeParse(adjust(values));
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const field = String(issue.path[0]);
    console.error(`${program}: --${field} ${JSON.stringify(values[field])}: ${issue.message}`);
    return 2;
  }
  return parsed.data;
}
