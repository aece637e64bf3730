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

/** Why the test bed cannot start here (no Go toolchain and no cached build), or null. */
export function testbedMissing(): string | null {
  const cache = `${
    Deno.env.get("XDG_CACHE_HOME") ?? `${Deno.env.get("HOME")}/.cache`
  }/mbcas/testbed/bin`;
  try {
    Deno.statSync(`${cache}/kube-apiserver`);
    return null;
  } catch {
    // not built yet: needs Go
  }
  for (const dir of [...(Deno.env.get("PATH") ?? "").split(":"), "/usr/local/go/bin"]) {
    try {
      Deno.statSync(`${dir}/go`);
      return null;
    } catch {
      // keep looking
    }
  }
  return "no Go toolchain to build the test bed (kube-apiserver, etcd) and no cached build";
}

/**
 * Why kubectl cannot run here, or null. `deno task test` puts the one that
 * scripts/build_node.sh builds (v1.35.4) first on PATH.
 */
export function kubectlMissing(): string | null {
  try {
    const out = new Deno.Command("kubectl", {
      args: ["version", "--client"],
      stdout: "null",
      stderr: "null",
    }).outputSync();
    return out.success ? null : "`kubectl version --client` fails";
  } catch {
    return "no kubectl on PATH (scripts/build_node.sh builds it; deno task test puts it on PATH)";
  }
}
