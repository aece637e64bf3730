/**
 * The agent runs on every node, so what it loads is paid on every node:
 * `@kubernetes/client-node` alone takes a Deno process from ~35 MB to
 * ~115 MB RSS, zod several MB more. The agent's entry point must reach
 * neither at run time: only `import type` (erased) may name them. Checked on
 * the module graph `deno info --json` reports, following code imports
 * (static and dynamic) and not type-only ones.
 */
import assert from "node:assert/strict";
import { runtimeGraph } from "../_support/module_graph.ts";

const MAIN = new URL("../../src/agent/main.ts", import.meta.url).pathname;

Deno.test("agent footprint: src/agent/main.ts loads neither client-node nor zod at run time", async () => {
  const { reached, typeOnly } = await runtimeGraph(MAIN);
  const npm = [...reached].filter((s) => s.startsWith("npm:")).sort();
  for (const heavy of ["@kubernetes/client-node", "zod"]) {
    assert.deepEqual(
      npm.filter((s) => s.startsWith(`npm:/${heavy}@`)),
      [],
      `${heavy} is reached at run time: ${npm.join(", ")}`,
    );
  }
  // The check is live: the graph has the agent's own modules and names client-node for types.
  assert.ok([...reached].some((s) => s.endsWith("/src/agent/agent.ts")));
  assert.ok([...reached].some((s) => s.endsWith("/src/k8s/lean/client.ts")));
  assert.ok(
    [...typeOnly].some((s) => s.startsWith("npm:/@kubernetes/client-node@")),
    "client-node is imported for types only",
  );
  // What npm code the agent does load: logging, and YAML for a kubeconfig file (never in a pod).
  assert.deepEqual(npm.map((s) => s.replace(/@[^@/]+$/, "")), [
    "npm:/@logtape/logtape",
    "npm:/js-yaml",
  ]);
});
