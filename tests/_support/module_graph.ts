/**
 * The modules an entry point reaches at run time, from the module graph
 * `deno info --json` reports: code imports (static and dynamic) are
 * followed, type-only ones recorded apart. For footprint tests.
 *
 * @module
 */
import assert from "node:assert/strict";

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

/** Every module `main` (a path) reaches at run time, and the type-only edges on the way. */
export async function runtimeGraph(
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
