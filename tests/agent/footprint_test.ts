/**
 * The agent runs on every node, so what it loads is paid on every node:
 * `@kubernetes/client-node` alone takes a Deno process from ~35 MB to
 * ~115 MB RSS, zod several MB more. The agent's entry point must reach
 * neither at run time: only `import type` (erased) may name them. Checked on
 * the module graph `deno info --json` reports, following code imports
 * (static and dynamic) and not type-only ones.
 */
import assert from "node:assert/strict";

const MAIN = new URL("../../src/agent/main.ts", import.meta.url).pathname;

interface Dependency {
  specifier: string;
  code?: { specifier: string };
  type?: { specifier: string };
  isDynamic?: boolean;
}

interface Graph {
  roots: string[];
  modules: { specifier: string; dependencies?: Dependency[] }[];
  redirects: Record<string, string>;
}

/** Every module `main` reaches at run time, and the type-only edges on the way. */
async function runtimeGraph(
  main: string,
): Promise<{ reached: Set<string>; typeOnly: Set<string> }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", main],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  const graph = JSON.parse(new TextDecoder().decode(out.stdout)) as Graph;
  const modules = new Map(graph.modules.map((m) => [m.specifier, m]));
  const resolve = (s: string) => graph.redirects[s] ?? s;
  const reached = new Set<string>();
  const typeOnly = new Set<string>();
  const stack = graph.roots.map(resolve);
  while (stack.length > 0) {
    const specifier = stack.pop()!;
    if (reached.has(specifier)) continue;
    reached.add(specifier);
    for (const dependency of modules.get(specifier)?.dependencies ?? []) {
      if (dependency.code !== undefined) stack.push(resolve(dependency.code.specifier));
      else if (dependency.type !== undefined) typeOnly.add(resolve(dependency.type.specifier));
    }
  }
  return { reached, typeOnly };
}

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
