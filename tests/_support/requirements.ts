/**
 * Gates for tests that need the machine: root and real cgroups, or the test
 * bed. Locally a missing requirement skips the test with a loud message; in CI
 * (`CI=true`) the test runs and fails, naming what is missing.
 */

/** True when running under CI. */
export const IN_CI = Deno.env.get("CI") === "true";

/**
 * Registers a test that needs `requirement`. When `missing` is a string (the
 * reason the requirement is not met), the test is skipped locally with a loud
 * warning and fails in CI.
 */
export function requireOrSkip(
  name: string,
  missing: string | null,
  fn: (t: Deno.TestContext) => void | Promise<void>,
): void {
  if (missing !== null && !IN_CI) {
    console.error(`\n!!! SKIPPING "${name}": ${missing} (runs, and must pass, in CI)\n`);
    Deno.test({ name, ignore: true, fn });
    return;
  }
  Deno.test({
    name,
    fn: async (t) => {
      if (missing !== null) throw new Error(`requirement not met in CI: ${missing}`);
      await fn(t);
    },
  });
}
