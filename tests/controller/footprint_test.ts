/**
 * The controller caches a whole cluster's pods, so its memory is the
 * footprint that matters at scale (issue 16, `deno task bench:scale`):
 * `@kubernetes/client-node` alone takes a Deno process from ~35 MB to
 * ~115 MB RSS. The controller's entry point must not reach it at run time:
 * only `import type` (erased) may name it. zod stays: the controller
 * validates every PodAllocation it reads. Checked on the module graph
 * `deno info --json` reports.
 */
import { assertRuntimeFootprint } from "../_support/module_graph.ts";

const MAIN = new URL("../../src/controller/main.ts", import.meta.url).pathname;

Deno.test("controller footprint: src/controller/main.ts does not load client-node at run time", async () => {
  await assertRuntimeFootprint(MAIN, {
    absent: ["@kubernetes/client-node"],
    own: ["/src/controller/reconciler.ts", "/src/controller/leader.ts"],
    // YAML for a kubeconfig file, zod to validate every PodAllocation read.
    loaded: ["js-yaml", "zod"],
  });
});
