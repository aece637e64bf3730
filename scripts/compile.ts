/**
 * `deno task compile [controller] [agent]`: builds `dist/mbcas-controller` and
 * `dist/mbcas-agent` by running the `compile:controller` and `compile:agent`
 * tasks (`deno compile` with the in-cluster permission sets of deno.json).
 *
 * `deno compile` downloads its runtime, `denort`, from dl.deno.land the first
 * time; when that download fails (no internet) this says so plainly and exits
 * 1 instead of leaving a bare DNS error.
 *
 * @module
 */
import { programArgs } from "../src/config/mod.ts";
const COMPONENTS = ["controller", "agent"] as const;

/** Why a failed `deno compile` failed, in one sentence, when it is a known cause; else null. */
export function explainCompileFailure(stderr: string): string | null {
  if (/dl\.deno\.land|denort/i.test(stderr)) {
    return "deno compile downloads its runtime (denort) from https://dl.deno.land on first use, " +
      "and that download failed: this machine cannot reach it. Run `deno task compile` (or " +
      "`deno task images`) where the internet is reachable, or set DENORT_BIN to a denort " +
      `${Deno.version.deno} binary. The same entry points run here, with the same permission ` +
      "sets, through `deno task controller` and `deno task agent`.";
  }
  return null;
}

async function main(args: string[]): Promise<number> {
  const unknown = args.filter((a) => !(COMPONENTS as readonly string[]).includes(a));
  if (unknown.length > 0) {
    console.error(
      `compile: unknown component ${JSON.stringify(unknown[0])} (expected ${
        COMPONENTS.join(" or ")
      })`,
    );
    return 2;
  }
  for (const component of args.length > 0 ? args : COMPONENTS) {
    console.error(`compile: building dist/mbcas-${component}`);
    const child = new Deno.Command(Deno.execPath(), {
      args: ["task", `compile:${component}`],
      stdout: "inherit",
      stderr: "piped",
    }).spawn();
    const { code, stderr } = await child.output();
    const text = new TextDecoder().decode(stderr);
    await Deno.stderr.write(stderr);
    if (code !== 0) {
      const why = explainCompileFailure(text);
      console.error(`compile: building mbcas-${component} failed${why ? `: ${why}` : ""}`);
      return 1;
    }
  }
  return 0;
}

if (import.meta.main) Deno.exit(await main(programArgs()));
