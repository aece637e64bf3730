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

/** What {@link assertRuntimeFootprint} checks of an entry point's run-time graph. */
export interface Footprint {
  /** npm packages it must not reach at run time (e.g. `@kubernetes/client-node`). */
  absent: string[];
  /** Path suffixes of its own modules that must be in the graph (the check is live). */
  own: string[];
  /** Every npm package it does reach, sorted, without versions. */
  loaded: string[];
}

/**
 * Asserts what `main` loads at run time: none of `absent`, all of `own`, the
 * npm packages `loaded` and no others, and client-node named for types only.
 */
export async function assertRuntimeFootprint(main: string, footprint: Footprint): Promise<void> {
  const { reached, typeOnly } = await runtimeGraph(main);
  const npm = [...reached].filter((s) => s.startsWith("npm:")).sort();
  for (const heavy of footprint.absent) {
    assert.deepEqual(
      npm.filter((s) => s.startsWith(`npm:/${heavy}@`)),
      [],
      `${heavy} is reached at run time: ${npm.join(", ")}`,
    );
  }
  for (const own of [...footprint.own, "/src/k8s/lean/client.ts"]) {
    assert.ok([...reached].some((s) => s.endsWith(own)), `${own} is not in the graph`);
  }
  assert.ok(
    [...typeOnly].some((s) => s.startsWith("npm:/@kubernetes/client-node@")),
    "client-node is imported for types only",
  );
  assert.deepEqual(
    npm.map((s) => s.replace(/@[^@/]+$/, "")),
    footprint.loaded.map((p) => `npm:/${p}`),
  );
}
