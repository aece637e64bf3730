/**
 * The agent runs on every node, so what it loads is paid on every node:
 * `@kubernetes/client-node` alone takes a Deno process from ~35 MB to
 * ~115 MB RSS, zod several MB more. The agent's entry point must reach
 * neither at run time: only `import type` (erased) may name them. Its only
 * npm module is js-yaml, loaded when it reads a kubeconfig file (every npm
 * package a process loads costs a few MB: logtape did). Checked on
 * the module graph `deno info --json` reports, following code imports
 * (static and dynamic) and not type-only ones.
 */
import { assertRuntimeFootprint } from "../_support/module_graph.ts";

const MAIN = new URL("../../src/agent/main.ts", import.meta.url).pathname;

Deno.test("agent footprint: src/agent/main.ts loads no npm code at run time but js-yaml for a kubeconfig file", async () => {
  await assertRuntimeFootprint(MAIN, {
    absent: ["@kubernetes/client-node", "zod"],
    own: ["/src/agent/agent.ts"],
    // YAML for a kubeconfig file, imported only when one is read (never in a pod).
    loaded: ["js-yaml"],
  });
});
