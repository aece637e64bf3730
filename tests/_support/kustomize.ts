/** Throw-away kustomizations for the manifest tests. */
import { join, relative } from "node:path";

const DEPLOY = new URL("../../deploy", import.meta.url).pathname;

/**
 * Runs `use` on a temporary directory holding a kustomization of
 * `deploy/base` with one component (`componentDir`: absolute, or relative to
 * `deploy/`), and removes the directory afterwards, also when `use` throws.
 */
export async function withBaseAndComponent<T>(
  componentDir: string,
  use: (dir: string) => Promise<T>,
): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "mbcas-kustomize-" });
  try {
    // kustomize takes only relative paths to other kustomizations.
    await Deno.writeTextFile(
      join(dir, "kustomization.yaml"),
      [
        "apiVersion: kustomize.config.k8s.io/v1beta1",
        "kind: Kustomization",
        "resources:",
        `  - ${relative(dir, join(DEPLOY, "base"))}`,
        "components:",
        `  - ${
          relative(dir, componentDir.startsWith("/") ? componentDir : join(DEPLOY, componentDir))
        }`,
        "",
      ].join("\n"),
    );
    return await use(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
