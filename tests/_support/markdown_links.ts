/**
 * Markdown link checking for the documentation tests: GitHub's heading slugs,
 * the relative links and images of a page, and which of them do not resolve.
 * Pure functions: the caller reads the files and says which paths exist.
 */

import { posix } from "node:path";

/** A relative link or image found in a markdown page. */
export interface MarkdownLink {
  /** 1-based line of the link in its page. */
  line: number;
  /** The destination as written, e.g. `../deploy/base`, `install.md#rollback`, `#the-lab`. */
  target: string;
}

/** A link that does not resolve. */
export interface BrokenLink {
  /** The page the link is in (as given to {@link findBrokenLinks}). */
  file: string;
  /** 1-based line of the link. */
  line: number;
  /** The destination as written. */
  target: string;
  /** Why it does not resolve. */
  reason: string;
}

const FENCE = /^\s*(`{3,}|~{3,})/;

/**
 * The page with every fenced code block's lines blanked (the line count is
 * kept, so line numbers stay right). An unclosed fence runs to the end.
 */
export function blankFencedCode(markdown: string): string {
  const lines = markdown.split("\n");
  let open: string | null = null;
  return lines.map((line) => {
    const m = FENCE.exec(line);
    if (open === null) {
      if (m) {
        open = m[1];
        return "";
      }
      return line;
    }
    if (m && m[1][0] === open[0] && m[1].length >= open.length && line.trim() === m[1]) {
      open = null;
    }
    return "";
  }).join("\n");
}

/** Replaces every inline code span with spaces of the same length (newlines kept). */
function blankCodeSpans(text: string): string {
  return text.replace(/(`+)([\s\S]*?[^`])\1(?!`)/g, (span) => span.replace(/[^\n]/g, " "));
}

/** A heading's text as GitHub renders it: inline code, links, images and emphasis reduced to their text. */
function headingText(raw: string): string {
  return raw
    .replace(/\s+#+\s*$/, "") // an ATX closing sequence
    .replace(/!?\[([^\]]*)\]\([^)]*\)/g, "$1") // links and images: their text
    .replace(/`+([^`]*)`+/g, "$1") // code spans: their content
    .trim();
}

/**
 * GitHub's anchor for a heading (without the duplicate suffix): its text
 * lowercased, every character that is not a letter, a mark, a digit, a
 * space, a hyphen or an underscore removed (non-ASCII letters kept), spaces
 * turned into hyphens. Inline code backticks and link syntax are reduced to
 * their text first, so "`deno task solve`" gives `deno-task-solve`.
 */
export function githubSlug(heading: string): string {
  return headingText(heading)
    .toLowerCase()
    .replace(/[^\p{L}\p{M}\p{N}_ -]/gu, "")
    .replace(/ /g, "-");
}

/**
 * Every anchor a page offers: one per ATX heading outside fenced code, with
 * GitHub's `-1`, `-2`… suffixes for repeated slugs, plus explicit
 * `<a name="…">` / `id="…"` anchors.
 */
export function headingAnchors(markdown: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  for (const line of blankFencedCode(markdown).split("\n")) {
    const m = /^ {0,3}#{1,6}\s+(.*)$/.exec(line);
    if (m) {
      const slug = githubSlug(m[1]);
      const count = seen.get(slug) ?? 0;
      seen.set(slug, count + 1);
      anchors.add(count === 0 ? slug : `${slug}-${count}`);
    }
    for (const a of line.matchAll(/<a\s[^>]*(?:name|id)="([^"]+)"/g)) anchors.add(a[1]);
  }
  return anchors;
}

/** True for a destination with a URL scheme (`https:`, `mailto:`, …) or a protocol-relative one. */
export function isExternal(target: string): boolean {
  return /^[a-z][a-z0-9+.-]*:/i.test(target) || target.startsWith("//");
}

/**
 * The relative links and images of a page: inline `[text](dest)`,
 * `![alt](dest)` and reference definitions `[label]: dest`, outside fenced
 * code blocks and inline code. External destinations are left out.
 */
export function extractLinks(markdown: string): MarkdownLink[] {
  const text = blankCodeSpans(blankFencedCode(markdown));
  const links: MarkdownLink[] = [];
  const lineOf = (index: number) => text.slice(0, index).split("\n").length;
  const add = (index: number, raw: string) => {
    const target = raw.startsWith("<") && raw.endsWith(">") ? raw.slice(1, -1) : raw;
    if (target !== "" && !isExternal(target)) links.push({ line: lineOf(index), target });
  };
  const inline =
    /!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>]*>|[^)\s]+)(?:\s+(?:"[^"]*"|'[^']*'))?\s*\)/g;
  for (const m of text.matchAll(inline)) add(m.index, m[1]);
  for (const m of text.matchAll(/^ {0,3}\[[^\]]+\]:\s*(\S+)/gm)) add(m.index, m[1]);
  return links;
}

/**
 * Every link of `pages` that does not resolve: a path (relative to its page's
 * directory) that `exists` denies, or an anchor that the target markdown page
 * (or the page itself, for `#anchor`) lacks. `pages` maps repository-relative
 * POSIX paths to their text; an anchor into a markdown file that is not in
 * `pages` is checked against `read(path)`, when given. Anchors into other
 * kinds of files are not checked.
 */
export function findBrokenLinks(
  pages: ReadonlyMap<string, string>,
  exists: (path: string) => boolean,
  read?: (path: string) => string | null,
): BrokenLink[] {
  const broken: BrokenLink[] = [];
  const anchorCache = new Map<string, Set<string> | null>();
  const anchorsOf = (path: string): Set<string> | null => {
    if (!anchorCache.has(path)) {
      const text = pages.get(path) ?? read?.(path) ?? null;
      anchorCache.set(path, text === null ? null : headingAnchors(text));
    }
    return anchorCache.get(path)!;
  };
  for (const [file, text] of pages) {
    for (const { line, target } of extractLinks(text)) {
      const hash = target.indexOf("#");
      const rawPath = hash < 0 ? target : target.slice(0, hash);
      const anchor = hash < 0 ? null : decodeURIComponent(target.slice(hash + 1));
      const path = rawPath === ""
        ? file
        : posix.normalize(posix.join(posix.dirname(file), decodeURIComponent(rawPath)))
          .replace(/\/$/, "");
      const report = (reason: string) => broken.push({ file, line, target, reason });
      if (path.startsWith("../") || path === "..") {
        report("points outside the repository");
        continue;
      }
      if (rawPath !== "" && !exists(path)) {
        report(`${path} does not exist`);
        continue;
      }
      if (anchor === null || !path.endsWith(".md")) continue;
      const anchors = anchorsOf(path);
      if (anchors === null) report(`cannot read ${path} to check #${anchor}`);
      else if (!anchors.has(anchor)) report(`${path} has no heading with anchor #${anchor}`);
    }
  }
  return broken;
}
