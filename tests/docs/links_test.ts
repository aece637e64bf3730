/**
 * The documentation's links: every relative link and image of README.md and
 * of every page under docs/ resolves to a file or directory of the
 * repository, and every `#anchor` to a heading of its target page (GitHub's
 * slugs). README.md stays short.
 */

import assert from "node:assert/strict";
import {
  extractLinks,
  findBrokenLinks,
  githubSlug,
  headingAnchors,
} from "../_support/markdown_links.ts";

const ROOT = new URL("../../", import.meta.url);

/** Repository-relative paths of README.md and every markdown page under docs/. */
function documentationPages(): string[] {
  const pages = ["README.md"];
  const walk = (dir: string) => {
    for (const entry of Deno.readDirSync(new URL(dir, ROOT))) {
      const path = `${dir}/${entry.name}`;
      if (entry.isDirectory) walk(path);
      else if (entry.isFile && entry.name.endsWith(".md")) pages.push(path);
    }
  };
  walk("docs");
  return pages.sort();
}

function exists(path: string): boolean {
  try {
    Deno.statSync(new URL(path, ROOT));
    return true;
  } catch {
    return false;
  }
}

function read(path: string): string | null {
  try {
    return Deno.readTextFileSync(new URL(path, ROOT));
  } catch {
    return null;
  }
}

Deno.test("docs: every relative link and anchor of README.md and docs/ resolves", () => {
  const pages = new Map(
    documentationPages().map((p) => [p, Deno.readTextFileSync(new URL(p, ROOT))]),
  );
  assert.ok(pages.size > 10, `only ${pages.size} pages found: ${[...pages.keys()].join(", ")}`);
  const links = [...pages.values()].reduce((n, text) => n + extractLinks(text).length, 0);
  assert.ok(links > 50, `only ${links} relative links found: the extraction is broken`);
  const broken = findBrokenLinks(pages, exists, read);
  assert.deepEqual(
    broken.map((b) => `${b.file}:${b.line}: (${b.target}) ${b.reason}`),
    [],
    "broken links",
  );
});

Deno.test("docs: README.md has at most 300 lines", () => {
  const text = Deno.readTextFileSync(new URL("README.md", ROOT));
  const lines = text.split("\n").length - (text.endsWith("\n") ? 1 : 0); // as `wc -l` counts
  assert.ok(lines <= 300, `README.md has ${lines} lines; move detail into docs/`);
});

Deno.test("docs: githubSlug follows GitHub's rules on the docs' own headings", () => {
  const cases: [string, string][] = [
    [
      "Reading the kernel: the cgroup module and `deno task inspect`",
      "reading-the-kernel-the-cgroup-module-and-deno-task-inspect",
    ],
    [
      "Deno and `/sys`: read the cgroup tree through a bind mount",
      "deno-and-sys-read-the-cgroup-tree-through-a-bind-mount",
    ],
    [
      "A real node on this machine: `deno task cluster`",
      "a-real-node-on-this-machine-deno-task-cluster",
    ],
    ["Reading `kubectl get pa`", "reading-kubectl-get-pa"],
    ["Admission policies: what RBAC cannot say", "admission-policies-what-rbac-cannot-say"],
    ["Exact, deterministic, integer", "exact-deterministic-integer"],
    [
      "MBCAS — Market-Based CPU Allocation System for Kubernetes",
      "mbcas--market-based-cpu-allocation-system-for-kubernetes",
    ],
    [
      "MBCAS against the alternatives: `deno task lab-bench`",
      "mbcas-against-the-alternatives-deno-task-lab-bench",
    ],
    ["See [the lab](lab.md) first", "see-the-lab-first"],
    ["Größe über Alles, snake_case", "größe-über-alles-snake_case"],
    ["Closing hashes ##", "closing-hashes"],
  ];
  for (const [heading, slug] of cases) assert.equal(githubSlug(heading), slug, heading);
});

Deno.test("docs: headingAnchors numbers duplicates and ignores fenced code", () => {
  const page = [
    "# Troubleshooting",
    "## Rollback",
    "```yaml",
    "# Prometheus Operator: scrape both metrics Services",
    "## Rollback",
    "```",
    "## Rollback",
    "### Rollback",
    '<a name="kept"></a>',
  ].join("\n");
  assert.deepEqual(
    [...headingAnchors(page)].sort(),
    ["kept", "rollback", "rollback-1", "rollback-2", "troubleshooting"],
  );
});

Deno.test("docs: extractLinks skips external links, code blocks and code spans", () => {
  const page = [
    "See [install](install.md#rollback), ![chart](lab-bench.svg) and [top](#top).",
    "[web](https://example.com) [mail](mailto:a@example.com) `[not](a-link.md)`",
    "```console",
    "[not](either.md)",
    "```",
    'A [reading `kubectl get pa`](workloads.md#reading-kubectl-get-pa "title").',
    "[ref]: ../deploy/base",
  ].join("\n");
  assert.deepEqual(extractLinks(page), [
    { line: 1, target: "install.md#rollback" },
    { line: 1, target: "lab-bench.svg" },
    { line: 1, target: "#top" },
    { line: 6, target: "workloads.md#reading-kubectl-get-pa" },
    { line: 7, target: "../deploy/base" },
  ]);
});

Deno.test("docs: findBrokenLinks reports a missing file, a missing anchor and a link out of the tree", () => {
  const pages = new Map([
    ["README.md", "# Top\n[ok](docs/a.md#part-one) [self](#top) [gone](docs/b.md)\n"],
    ["docs/a.md", "# A\n## Part one\n[up](../README.md#nowhere) [dir](../deploy) [out](../../x)\n"],
  ]);
  const files = new Set(["README.md", "docs/a.md", "deploy"]);
  const broken = findBrokenLinks(pages, (p) => files.has(p));
  assert.deepEqual(broken.map((b) => [b.file, b.line, b.target]), [
    ["README.md", 2, "docs/b.md"],
    ["docs/a.md", 3, "../README.md#nowhere"],
    ["docs/a.md", 3, "../../x"],
  ]);
});
