/**
 * The controller caches a whole cluster's pods, so its memory is the
 * footprint that matters at scale (issue 16, `deno task bench:scale`):
 * `@kubernetes/client-node` alone takes a Deno process from ~42 MB to
 * ~106 MB RSS. The controller's entry point must not reach it at run time:
 * only `import type` (erased) may name it. zod stays: the controller
 * validates every PodAllocation it reads. Checked on the module graph
 * `deno info --json` reports.
 */
import assert from "node:assert/strict";
import { runtimeGraph } from "../_support/module_graph.ts";

const MAIN = new URL("../../src/controller/main.ts", import.meta.url).pathname;

Deno.test("controller footprint: src/controller/main.ts does not load client-node at run time", async () => {
  const { reached, typeOnly } = await runtimeGraph(MAIN);
  const npm = [...reached].filter((s) => s.startsWith("npm:")).sort();
  assert.deepEqual(
    npm.filter((s) => s.startsWith("npm:/@kubernetes/client-node@")),
    [],
    `client-node is reached at run time: ${npm.join(", ")}`,
  );
  // The check is live: the graph has the controller's own modules and names client-node for types.
  for (const own of ["/src/controller/reconciler.ts", "/src/controller/leader.ts"]) {
    assert.ok([...reached].some((s) => s.endsWith(own)), own);
  }
  assert.ok([...reached].some((s) => s.endsWith("/src/k8s/lean/client.ts")));
  assert.ok(
    [...typeOnly].some((s) => s.startsWith("npm:/@kubernetes/client-node@")),
    "client-node is imported for types only",
  );
  // What npm code the controller does load: logging, zod (validation), YAML for a kubeconfig file.
  assert.deepEqual(npm.map((s) => s.replace(/@[^@/]+$/, "")), [
    "npm:/@logtape/logtape",
    "npm:/js-yaml",
    "npm:/zod",
  ]);
});
