/**
 * The host state a local Kubernetes node changes, and the way back: a
 * {@link HostSnapshot} of sysctls, nftables/iptables rules, network links,
 * routes and namespaces, mounts, cgroups in every hierarchy and the entries of
 * the directories a kubelet, containerd and the CNI plugins write to;
 * {@link diffHost} to say what changed, and {@link restoreHost} to undo what
 * appeared since a snapshot (kill and remove cgroups, unmount, delete
 * namespaces and links, restore the ruleset and sysctls, remove owned files).
 *
 * Functional core, thin shell: {@link diffHost} and {@link restorePlan} are
 * pure; {@link snapshotHost} and {@link restoreHost} do the I/O. A snapshot is
 * plain JSON, so it can be written to a file and used by a later process to
 * recover after a crash.
 *
 * Linux only, and root for a complete snapshot and any restore.
 *
 * @module
 */
import { dirname, join } from "node:path";
import { type CommandResult, runCommand } from "./_command.ts";

/** What a node can change on the host, as plain JSON-serialisable data. */
export interface HostSnapshot {
  /**
   * Every readable and writable sysctl (files under /proc/sys with the owner's
   * read and write bits), by dotted key (`net.ipv4.ip_forward`; a dot inside a
   * path component, as in a VLAN link `eth0.100`, becomes `/`, as sysctl(8)
   * writes it), value trimmed. Unreadable and write-only files are left out,
   * and so is `fs.binfmt_misc` (a filesystem of its own, whose `status` file
   * unregisters every format when written).
   */
  sysctls: Record<string, string>;
  /**
   * `nft --stateless list ruleset` (no counters or quotas, which move by
   * themselves), trailing whitespace trimmed; `""` when there is no ruleset.
   * Compared by what matters to packets: the order of tables and of the
   * chains in a table, and base chains with no rules and policy accept, do
   * not count (`iptables-restore` cannot reproduce either).
   */
  nftRuleset: string;
  /**
   * `iptables-save` and `ip6tables-save` with `#` comment lines dropped and the
   * chain counters zeroed (`[0:0]`), so only rules and policies remain.
   */
  iptablesSave: { ipv4: string; ipv6: string };
  /** Network interface names (/sys/class/net), sorted. */
  links: string[];
  /**
   * `ip -4 route show table all` then `ip -6 route show table all`, one entry a
   * line, trimmed, with the `expires <n>sec` of IPv6 routes dropped.
   */
  routes: string[];
  /** Named network namespaces (entries of /run/netns and /var/run/netns), sorted. */
  netns: string[];
  /**
   * Mount points from /proc/self/mountinfo (field 5, octal escapes undone), in
   * mount order; a point mounted over itself appears as often as it is mounted.
   */
  mounts: string[];
  /**
   * Every cgroup directory under /sys/fs/cgroup, hierarchy roots included, as a
   * path relative to /sys/fs/cgroup (`cpu`, `cpu/kubepods/besteffort`,
   * `unified/kubepods`), sorted. Symbolic links (`cpu` → `cpu,cpuacct`) are not
   * followed.
   */
  cgroups: string[];
  /**
   * The immediate entries (names, sorted) of each of
   * {@link WATCHED_DIRECTORIES}, but not {@link HOST_TOOL_ENTRIES}, keyed by the directory's canonical path
   * (symbolic links resolved, so `/var/run` → `/run` is listed once, as
   * `/run`). A directory that does not exist has no key.
   */
  entries: Record<string, string[]>;
}

/** Directories whose immediate entries a snapshot records ({@link HostSnapshot.entries}). */
export const WATCHED_DIRECTORIES: readonly string[] = [
  "/run",
  "/var/run",
  "/var/lib",
  "/var/log",
  "/etc",
  "/usr/libexec",
  "/opt",
  "/var/lib/kubelet",
];

/**
 * Entries of watched directories that a snapshot leaves out: the runtime state
 * of the host's own tools, created the first time any of them runs on a fresh
 * machine, whoever runs it (`/run/mount`: util-linux's libmount keeps its
 * `utab` there, and the first `mount` or `umount` creates it, the restore's
 * own `umount -l` included). Neither the cluster's to remove nor a change a
 * user would see.
 */
export const HOST_TOOL_ENTRIES: readonly string[] = ["/run/mount"];

/**
 * Paths a cluster owns: {@link restoreHost} removes a new entry of a watched
 * directory only when it is one of these or lies below one. Everything else
 * new is only reported by {@link diffHost}.
 */
export const DEFAULT_OWNED_PREFIXES: readonly string[] = [
  "/var/lib/kubelet",
  "/usr/libexec/kubernetes",
  "/var/log/containers",
  "/var/log/pods",
  "/run/containerd",
  "/var/run/containerd",
  "/var/lib/cni",
  "/run/nri",
  "/var/run/nri",
  "/opt/containerd",
  "/etc/cni",
  "/var/lib/containerd",
  "/run/netns",
  "/var/run/netns",
];

/**
 * Cgroups a cluster owns, relative to a hierarchy root (the kubelet's
 * cgroupfs and systemd drivers): {@link restoreHost} kills and removes a new
 * cgroup only when it is one of these or lies below one, in any hierarchy. On
 * a shared machine other cgroups come and go (a supervisor's per-session
 * cgroups, other tests): they are only reported by {@link diffHost}.
 */
export const DEFAULT_OWNED_CGROUPS: readonly string[] = ["kubepods", "kubepods.slice"];

/**
 * Writable sysctls that change by themselves, found empirically (2-core
 * Debian 12 VM, kernel 6.18, cgroup v1: eight snapshots 5 s apart around CPU
 * load, loopback HTTP, `python3` allocating 400 MB, a network namespace and a
 * veth pair with addresses coming and going), plus two the kernel is known to
 * change on its own. Read-only counters (`fs.file-nr`, `fs.dentry-state`,
 * `fs.inode-*`, `kernel.random.entropy_avail`/`uuid`/`boot_id`,
 * `net.netfilter.nf_conntrack_count`) are not in a snapshot at all (not
 * writable). Ignored by default by {@link diffHost} and never written back by
 * {@link restoreHost}. Per-link keys of links that come and go are not here:
 * they are folded into the link.
 */
export const VOLATILE_SYSCTLS: readonly RegExp[] = [
  // Moves with every fork (seen in every interval).
  /^kernel\.ns_last_pid$/,
  // All zeros until a listener first enables TCP Fast Open; then the kernel generates it (seen).
  /^net\.ipv4\.tcp_fastopen_key$/,
  // Lowered by the kernel when perf interrupts take too long.
  /^kernel\.perf_event_max_sample_rate$/,
  // Taint bits the kernel sets (a warning, an out-of-tree module); writing cannot clear them.
  /^kernel\.tainted$/,
];

/** Options of {@link diffHost}. */
export interface DiffOptions {
  /**
   * Sysctl keys to ignore (default {@link VOLATILE_SYSCTLS}; pass `[]` to see
   * every change, or `[...VOLATILE_SYSCTLS, /more/]` to add to them).
   */
  ignoreSysctls?: readonly RegExp[];
  /**
   * Cgroups (paths relative to /sys/fs/cgroup) to ignore, e.g. the
   * per-session cgroups of whatever started this process
   * ({@link siblingCgroupPatterns}). Default: none.
   */
  ignoreCgroups?: readonly RegExp[];
}

/** Options of {@link restorePlan}. */
export interface PlanOptions {
  /**
   * Paths whose new entries are removed; already canonical (see
   * {@link restoreHost}, which resolves symbolic links). Default
   * {@link DEFAULT_OWNED_PREFIXES}.
   */
  ownedPrefixes?: readonly string[];
  /** Cgroups killed and removed when new. Default {@link DEFAULT_OWNED_CGROUPS}. */
  ownedCgroups?: readonly string[];
  /** Sysctls never written back. Default {@link VOLATILE_SYSCTLS}. */
  ignoreSysctls?: readonly RegExp[];
}

/** Options of {@link restoreHost}. */
export interface RestoreOptions extends PlanOptions {
  /** Called with each action line as it happens. */
  log?: (line: string) => void;
  /**
   * Only the steps this accepts are taken (default: all), e.g. to confine a
   * test on a shared machine to what it made itself.
   */
  filter?: (step: RestoreStep) => boolean;
}

/**
 * One step of undoing, in the order {@link restorePlan} lists them: kill the
 * processes of new cgroups and remove them, unmount new mounts, delete new
 * network namespaces and links, put the ruleset back, write the old sysctl
 * values back, delete new routes, remove new owned entries.
 */
export type RestoreStep =
  /** Kill every process in the cgroup (relative to /sys/fs/cgroup), then rmdir it. */
  | { kind: "cgroup"; path: string }
  /** `umount -l` a mount point (once per extra mount). */
  | { kind: "umount"; path: string }
  /** `ip netns delete`. */
  | { kind: "netns"; name: string }
  /** `ip link delete` (a veth's peer may already be gone with it). */
  | { kind: "link"; name: string }
  /** `ip -4|-6 route del` a new route not on a deleted link, nor the kernel's own. */
  | { kind: "route"; family: 4 | 6; route: string }
  /** `nft flush ruleset` (the ruleset was empty before). */
  | { kind: "nft-flush" }
  /** `nft delete table` of a table that is new. */
  | { kind: "nft-delete-table"; family: string; name: string }
  /** `iptables-restore`/`ip6tables-restore` of a changed iptables table's old dump. */
  | { kind: "iptables-restore"; family: "ipv4" | "ipv6"; table: string; dump: string }
  /** `nft -f` of a changed or removed table's old text (deleting the current one first). */
  | { kind: "nft-restore-table"; family: string; name: string; text: string; replace: boolean }
  /** Check that `nft --stateless list ruleset` is the old ruleset again (see {@link HostSnapshot.nftRuleset}). */
  | { kind: "nft-check"; expected: string }
  /** Write a sysctl's old value back. */
  | { kind: "sysctl"; key: string; value: string; current: string }
  /** Remove a new owned entry, recursively. */
  | { kind: "remove"; path: string };

// ---------------------------------------------------------------------------
// Functional core
// ---------------------------------------------------------------------------

const PER_LINK_SYSCTL = /^net\.ipv[46]\.(?:conf|neigh)\.([^.]+)\./;

/** The link a per-link sysctl key belongs to (`all`/`default` are not links), or null. */
function sysctlLink(key: string): string | null {
  const m = PER_LINK_SYSCTL.exec(key);
  if (m === null || m[1] === "all" || m[1] === "default") return null;
  return m[1].replaceAll("/", ".");
}

/** The /proc/sys file of a dotted sysctl key. */
export function sysctlPath(key: string): string {
  return `/proc/sys/${key.split(".").map((part) => part.replaceAll("/", ".")).join("/")}`;
}

/** The dotted sysctl key of a path relative to /proc/sys. */
function sysctlKey(relative: string): string {
  return relative.split("/").map((part) => part.replaceAll(".", "/")).join(".");
}

function matchesAny(patterns: readonly RegExp[], s: string): boolean {
  return patterns.some((p) => p.test(s));
}

function isUnder(path: string, prefix: string): boolean {
  const p = prefix.endsWith("/") && prefix.length > 1 ? prefix.slice(0, -1) : prefix;
  return path === p || path.startsWith(p === "/" ? "/" : `${p}/`);
}

function depth(path: string): number {
  return path.split("/").filter((s) => s !== "").length;
}

function added<T>(before: readonly T[], after: readonly T[]): T[] {
  const had = new Set(before);
  return [...new Set(after)].filter((x) => !had.has(x));
}

/** Elements of `after` beyond their count in `before` (multiset difference), in order. */
function extra(before: readonly string[], after: readonly string[]): string[] {
  const count = new Map<string, number>();
  for (const x of before) count.set(x, (count.get(x) ?? 0) + 1);
  const out: string[] = [];
  for (const x of after) {
    const c = count.get(x) ?? 0;
    if (c > 0) count.set(x, c - 1);
    else out.push(x);
  }
  return out;
}

function nonEmptyLines(text: string): string[] {
  return text.split("\n").map((l) => l.trim()).filter((l) => l !== "");
}

/** A short excerpt of the lines removed (`-`) and added (`+`) from `a` to `b`. */
function lineChanges(a: string, b: string, max = 6): string {
  const la = nonEmptyLines(a);
  const lb = nonEmptyLines(b);
  const changes = [
    ...extra(lb, la).map((l) => `- ${l}`),
    ...extra(la, lb).map((l) => `+ ${l}`),
  ];
  const shown = changes.slice(0, max).join(" | ");
  return changes.length > max ? `${shown} | … (${changes.length - max} more)` : shown;
}

function show(value: string): string {
  const v = value.replace(/\s+/g, " ");
  return v === "" ? '""' : v.length > 80 ? `${v.slice(0, 77)}…` : v;
}

/** A table of an nft ruleset listing. */
interface NftTable {
  family: string;
  name: string;
  /** As listed. */
  text: string;
  /** Its blocks (chains, sets, maps…) sorted, empty `policy accept` base chains left out. */
  canonical: string;
}

/**
 * Whether a block is a base chain with no rules and policy accept: a no-op,
 * which iptables-nft creates or not depending on how the table came about
 * (`iptables -N` alone creates none, `iptables-restore` all of the table's).
 */
function emptyAcceptBaseChain(block: string[]): boolean {
  const inner = block.slice(1, -1).map((l) => l.trim()).filter((l) => l !== "");
  return block[0].startsWith("\tchain ") && inner.length === 1 &&
    /^type \S+ hook \S+ .*policy accept;$/.test(inner[0]);
}

function canonicalTable(lines: string[]): string {
  const loose: string[] = [];
  const blocks: string[][] = [];
  let block: string[] | null = null;
  for (const line of lines.slice(1, -1)) {
    if (block === null) {
      if (/^\t\S.*\{$/.test(line)) block = [line];
      else if (line.trim() !== "") loose.push(line);
    } else {
      block.push(line);
      if (line === "\t}") {
        blocks.push(block);
        block = null;
      }
    }
  }
  if (block !== null) blocks.push(block);
  const kept = blocks.filter((b) => !emptyAcceptBaseChain(b))
    .map((b) => b.filter((l) => l.trim() !== "").join("\n"))
    .sort();
  return [lines[0], ...loose, ...kept, lines.at(-1)!].join("\n");
}

/** Top-level tables of an nft ruleset listing, by `<family> <name>`. */
function nftTables(ruleset: string): Map<string, NftTable> {
  const tables = new Map<string, NftTable>();
  let current: { family: string; name: string; lines: string[] } | null = null;
  for (const line of ruleset.split("\n")) {
    const head = /^table (\S+) (\S+) \{/.exec(line);
    if (current === null && head !== null) {
      current = { family: head[1], name: head[2], lines: [line] };
      continue;
    }
    if (current !== null) {
      current.lines.push(line);
      if (line === "}") {
        const { family, name, lines } = current;
        const text = lines.join("\n");
        tables.set(`${family} ${name}`, { family, name, text, canonical: canonicalTable(lines) });
        current = null;
      }
    }
  }
  return tables;
}

/**
 * A ruleset listing in a form where only what matters to packets counts:
 * tables sorted, each table's chains, sets and maps sorted (their order is
 * creation order, which `iptables-restore` cannot reproduce: it creates base
 * chains first and user chains sorted), empty `policy accept` base chains
 * left out. Rules keep their order.
 */
function canonicalRuleset(ruleset: string): string {
  const tables = nftTables(ruleset);
  const inTables = new Set([...tables.values()].flatMap((t) => t.text.split("\n")));
  const loose = ruleset.split("\n").filter((l) => l.trim() !== "" && !inTables.has(l));
  return [...loose, ...[...tables.values()].map((t) => t.canonical).sort()].join("\n");
}

/** Table sections (`*filter` … `COMMIT`) of an iptables-save dump, by table name. */
function iptablesTables(dump: string): Map<string, string> {
  const tables = new Map<string, string>();
  let name: string | null = null;
  let lines: string[] = [];
  for (const line of dump.split("\n")) {
    if (line.startsWith("*")) {
      name = line.slice(1).trim();
      lines = [line];
    } else if (name !== null) {
      lines.push(line);
      if (line.trim() === "COMMIT") {
        tables.set(name, lines.join("\n"));
        name = null;
      }
    }
  }
  return tables;
}

function ruleDiffLines(
  label: string,
  before: Map<string, string>,
  after: Map<string, string>,
): string[] {
  const out: string[] = [];
  for (const key of [...new Set([...before.keys(), ...after.keys()])].sort()) {
    const a = before.get(key);
    const b = after.get(key);
    if (a === b) continue;
    const what = a === undefined ? "added" : b === undefined ? "removed" : "changed";
    out.push(`${label}: ${what} table ${key}: ${lineChanges(a ?? "", b ?? "")}`);
  }
  return out;
}

/** The `dev` of a route line, or null. */
function routeDevice(route: string): string | null {
  const words = route.split(/\s+/);
  const i = words.indexOf("dev");
  return i >= 0 && i + 1 < words.length ? words[i + 1] : null;
}

/** Whether a route line (as `ip route show` prints it) is an IPv6 route. */
function routeFamily(route: string): 4 | 6 {
  return route.includes(":") || /\bpref (?:low|medium|high)\b/.test(route) ? 6 : 4;
}

function cgroupLines(
  verb: string,
  from: readonly string[],
  to: readonly string[],
  ignore: readonly RegExp[],
): string[] {
  const changed = added(from, to).filter((p) => !matchesAny(ignore, p));
  const set = new Set(changed);
  return changed
    .filter((p) => !set.has(dirname(p)))
    .sort()
    .map((p) => {
      const below = changed.filter((q) => q.startsWith(`${p}/`)).length;
      return `cgroup ${verb}: ${p}${below > 0 ? ` (and ${below} below)` : ""}`;
    });
}

/**
 * What changed from `before` to `after`, one human-readable line per
 * difference, `[]` when nothing did. Pure. Lines, in this order:
 * `sysctl kernel.panic: 0 → 10`, `sysctl added: K = V`, `sysctl removed: K (was V)`;
 * `cgroup added: cpu/kubepods (and 5 below)` (one line per new subtree),
 * `cgroup removed: …`; `mount added: P`, `mount removed: P`; `netns added: N`,
 * `netns removed: N`; `link added: mbcas0 (with 54 sysctls)`, `link removed: …`
 * (sysctls that come and go with a link, `net.ipv{4,6}.{conf,neigh}.<link>.*`,
 * are counted there, not listed); `route added: R`, `route removed: R`;
 * `nft ruleset changed: added|removed|changed table <family> <name>: <excerpt>`
 * (compared as {@link HostSnapshot.nftRuleset} says);
 * `iptables-save ipv4|ipv6 changed: added|removed|changed table <name>: <excerpt>`;
 * `entry added: /var/log/containers`, `entry removed: …`.
 */
export function diffHost(
  before: HostSnapshot,
  after: HostSnapshot,
  options: DiffOptions = {},
): string[] {
  const ignoreSysctls = options.ignoreSysctls ?? VOLATILE_SYSCTLS;
  const ignoreCgroups = options.ignoreCgroups ?? [];
  const out: string[] = [];

  // Sysctls (per-link keys of links that came or went go with the link).
  const linksBoth = new Set(before.links.filter((l) => after.links.includes(l)));
  const linkSysctls = new Map<string, number>();
  const keys = [...new Set([...Object.keys(before.sysctls), ...Object.keys(after.sysctls)])]
    .sort();
  for (const key of keys) {
    const a = Object.hasOwn(before.sysctls, key) ? before.sysctls[key] : undefined;
    const b = Object.hasOwn(after.sysctls, key) ? after.sysctls[key] : undefined;
    if (a === b || matchesAny(ignoreSysctls, key)) continue;
    const link = sysctlLink(key);
    if (link !== null && !linksBoth.has(link) && (a === undefined || b === undefined)) {
      linkSysctls.set(link, (linkSysctls.get(link) ?? 0) + 1);
      continue;
    }
    if (a === undefined) out.push(`sysctl added: ${key} = ${show(b!)}`);
    else if (b === undefined) out.push(`sysctl removed: ${key} (was ${show(a)})`);
    else out.push(`sysctl ${key}: ${show(a)} → ${show(b)}`);
  }

  out.push(...cgroupLines("added", before.cgroups, after.cgroups, ignoreCgroups));
  out.push(...cgroupLines("removed", after.cgroups, before.cgroups, ignoreCgroups));

  for (const m of extra(before.mounts, after.mounts)) out.push(`mount added: ${m}`);
  for (const m of extra(after.mounts, before.mounts)) out.push(`mount removed: ${m}`);

  for (const n of added(before.netns, after.netns)) out.push(`netns added: ${n}`);
  for (const n of added(after.netns, before.netns)) out.push(`netns removed: ${n}`);

  const linkLine = (verb: string, link: string) => {
    const n = linkSysctls.get(link) ?? 0;
    return `link ${verb}: ${link}${n > 0 ? ` (with ${n} sysctls)` : ""}`;
  };
  for (const l of added(before.links, after.links)) out.push(linkLine("added", l));
  for (const l of added(after.links, before.links)) out.push(linkLine("removed", l));

  for (const r of added(before.routes, after.routes)) out.push(`route added: ${r}`);
  for (const r of added(after.routes, before.routes)) out.push(`route removed: ${r}`);

  if (canonicalRuleset(before.nftRuleset) !== canonicalRuleset(after.nftRuleset)) {
    const text = (t: string) =>
      new Map([...nftTables(t)].map(([k, v]) => [k, v.canonical] as [string, string]));
    const lines = ruleDiffLines(
      "nft ruleset changed",
      text(before.nftRuleset),
      text(after.nftRuleset),
    );
    const all = lineChanges(
      canonicalRuleset(before.nftRuleset),
      canonicalRuleset(after.nftRuleset),
    );
    out.push(...(lines.length > 0 ? lines : [`nft ruleset changed: ${all}`]));
  }
  for (const family of ["ipv4", "ipv6"] as const) {
    const a = before.iptablesSave[family];
    const b = after.iptablesSave[family];
    if (a === b) continue;
    const label = `iptables-save ${family} changed`;
    const lines = ruleDiffLines(label, iptablesTables(a), iptablesTables(b));
    out.push(...(lines.length > 0 ? lines : [`${label}: ${lineChanges(a, b)}`]));
  }

  for (const dir of Object.keys(before.entries).sort()) {
    const after_ = Object.hasOwn(after.entries, dir) ? after.entries[dir] : undefined;
    if (after_ === undefined) continue; // the directory itself is reported by its parent
    const before_ = before.entries[dir];
    for (const e of added(before_, after_)) out.push(`entry added: ${join(dir, e)}`);
    for (const e of added(after_, before_)) out.push(`entry removed: ${join(dir, e)}`);
  }
  return out;
}

function sysctlRank(key: string): number {
  if (key === "net.ipv4.ip_forward") return 0;
  if (/^net\.ipv[46]\.conf\.all\./.test(key)) return 1;
  if (/^net\.ipv[46]\.conf\.default\./.test(key)) return 2;
  return 3;
}

/**
 * Whether a cgroup (relative to /sys/fs/cgroup) is owned: the path, or the
 * path without its hierarchy (first) component, is an owned cgroup or below
 * one. Both, so `kubepods/…` matches on a pure v2 mount at /sys/fs/cgroup and
 * `cpu/kubepods/…` on v1 or hybrid.
 */
function cgroupOwned(path: string, owned: readonly string[]): boolean {
  const inner = path.split("/").slice(1).join("/");
  return owned.some((o) => {
    const p = o.replace(/^\/+|\/+$/g, "");
    return p !== "" && [path, inner].some((x) => x === p || x.startsWith(`${p}/`));
  });
}

/**
 * What to do, in order, to take the host from `now` back to `before`. Pure.
 * Only new things are undone: new cgroups that are owned (deepest first),
 * extra mounts (deepest first), new network namespaces and links; then the
 * ruleset (`nft flush ruleset` when it was empty; otherwise new tables
 * deleted, changed iptables tables restored with `iptables-restore`, other
 * changed or removed tables with `nft -f`, and a check); then sysctls that
 * differ (not volatile, both present; `ip_forward`, then `conf.all`, then
 * `conf.default` first since writing those changes the others); then new
 * routes, except those on deleted links and the kernel's own (`proto
 * kernel`), which went with their link, address or sysctl; then new entries of
 * watched directories under an owned prefix (not below another one being
 * removed). Things that were removed are not recreated (except nft tables):
 * {@link diffHost} reports them.
 */
export function restorePlan(
  before: HostSnapshot,
  now: HostSnapshot,
  options: PlanOptions = {},
): RestoreStep[] {
  const ownedPrefixes = options.ownedPrefixes ?? DEFAULT_OWNED_PREFIXES;
  const ownedCgroups = options.ownedCgroups ?? DEFAULT_OWNED_CGROUPS;
  const ignoreSysctls = options.ignoreSysctls ?? VOLATILE_SYSCTLS;
  const steps: RestoreStep[] = [];
  const deepestFirst = (a: string, b: string) =>
    depth(b) - depth(a) || (a < b ? 1 : a > b ? -1 : 0);

  for (
    const path of added(before.cgroups, now.cgroups).filter((p) => cgroupOwned(p, ownedCgroups))
      .sort(deepestFirst)
  ) {
    steps.push({ kind: "cgroup", path });
  }
  for (const path of extra(before.mounts, now.mounts).sort(deepestFirst)) {
    steps.push({ kind: "umount", path });
  }
  for (const name of added(before.netns, now.netns).sort()) steps.push({ kind: "netns", name });
  const newLinks = added(before.links, now.links).sort();
  for (const name of newLinks) steps.push({ kind: "link", name });

  if (canonicalRuleset(before.nftRuleset) !== canonicalRuleset(now.nftRuleset)) {
    if (before.nftRuleset.trim() === "") {
      steps.push({ kind: "nft-flush" });
    } else {
      const was = nftTables(before.nftRuleset);
      const is = nftTables(now.nftRuleset);
      for (const [key, t] of is) {
        if (!was.has(key)) steps.push({ kind: "nft-delete-table", family: t.family, name: t.name });
      }
      const dumps = {
        ip: iptablesTables(before.iptablesSave.ipv4),
        ip6: iptablesTables(before.iptablesSave.ipv6),
      };
      for (const [key, t] of was) {
        if (is.get(key)?.canonical === t.canonical) continue;
        const dump = t.family === "ip" || t.family === "ip6"
          ? dumps[t.family].get(t.name)
          : undefined;
        if (dump !== undefined) {
          const family = t.family === "ip" ? "ipv4" : "ipv6";
          steps.push({ kind: "iptables-restore", family, table: t.name, dump });
        } else {
          steps.push({
            kind: "nft-restore-table",
            family: t.family,
            name: t.name,
            text: t.text,
            replace: is.has(key),
          });
        }
      }
    }
    steps.push({ kind: "nft-check", expected: before.nftRuleset });
  }

  const sysctls = Object.keys(before.sysctls)
    .filter((key) =>
      Object.hasOwn(now.sysctls, key) && now.sysctls[key] !== before.sysctls[key] &&
      !matchesAny(ignoreSysctls, key)
    )
    .sort((a, b) => sysctlRank(a) - sysctlRank(b) || (a < b ? -1 : a > b ? 1 : 0));
  for (const key of sysctls) {
    steps.push({ kind: "sysctl", key, value: before.sysctls[key], current: now.sysctls[key] });
  }

  // After links and sysctls: routes on deleted links went with them, and the
  // kernel's own (`proto kernel`: addresses, forwarding's anycast routes) are
  // not ours to delete.
  for (const route of added(before.routes, now.routes)) {
    const dev = routeDevice(route);
    if ((dev !== null && newLinks.includes(dev)) || /\bproto kernel\b/.test(route)) continue;
    steps.push({ kind: "route", family: routeFamily(route), route });
  }

  const removals: string[] = [];
  for (const dir of Object.keys(before.entries)) {
    if (!Object.hasOwn(now.entries, dir)) continue;
    for (const e of added(before.entries[dir], now.entries[dir])) {
      const path = join(dir, e);
      if (ownedPrefixes.some((p) => isUnder(path, p))) removals.push(path);
    }
  }
  for (const path of removals.sort()) {
    if (!removals.some((other) => other !== path && isUnder(path, other))) {
      steps.push({ kind: "remove", path });
    }
  }
  return steps;
}

/** One line saying what a step does (for logs and filters). */
export function describeStep(step: RestoreStep): string {
  switch (step.kind) {
    case "cgroup":
      return `kill the processes of cgroup ${step.path} and remove it`;
    case "umount":
      return `umount -l ${step.path}`;
    case "netns":
      return `ip netns delete ${step.name}`;
    case "link":
      return `ip link delete ${step.name}`;
    case "route":
      return `ip -${step.family} route del ${step.route}`;
    case "nft-flush":
      return "nft flush ruleset";
    case "nft-delete-table":
      return `nft delete table ${step.family} ${step.name}`;
    case "iptables-restore":
      return `${step.family === "ipv4" ? "iptables" : "ip6tables"}-restore table ${step.table}`;
    case "nft-restore-table":
      return `nft -f: ${step.replace ? "replace" : "recreate"} table ${step.family} ${step.name}`;
    case "nft-check":
      return "check the nft ruleset is back to before";
    case "sysctl":
      return `sysctl ${step.key}: ${show(step.current)} → ${show(step.value)}`;
    case "remove":
      return `rm -r ${step.path}`;
  }
}

/**
 * Patterns of the cgroups beside this process's own, in each hierarchy where
 * it is not in the root cgroup: where whatever started it (a supervisor, a
 * CI runner) makes a cgroup per session, and other sessions' cgroups come and
 * go. Pure: `procSelfCgroup` is the text of /proc/self/cgroup, `hierarchies`
 * the directory names under /sys/fs/cgroup (the first components of
 * {@link HostSnapshot.cgroups}); the v2 hierarchy is `unified` when that is
 * one of them, else /sys/fs/cgroup itself. For
 * {@link DiffOptions.ignoreCgroups}. A process in a top-level cgroup gets no
 * pattern for it (that would cover `kubepods`).
 */
export function siblingCgroupPatterns(
  procSelfCgroup: string,
  hierarchies: readonly string[],
): RegExp[] {
  const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const patterns: RegExp[] = [];
  for (const line of procSelfCgroup.split("\n")) {
    const m = /^\d+:([^:]*):(\/.*)$/.exec(line.trim());
    if (m === null) continue;
    const parent = dirname(m[2]);
    if (parent === "/") continue;
    const controllers = m[1];
    const hierarchy = controllers === ""
      ? (hierarchies.includes("unified") ? "unified" : "")
      : [controllers, controllers.replace(/^name=/, ""), ...controllers.split(",")]
        .find((c) => hierarchies.includes(c));
    if (hierarchy === undefined) continue;
    const base = hierarchy === "" ? parent.slice(1) : `${hierarchy}${parent}`;
    patterns.push(new RegExp(`^${escape(base)}/[^/]+(?:/|$)`));
  }
  return patterns;
}

// ---------------------------------------------------------------------------
// Imperative shell
// ---------------------------------------------------------------------------

const SYSCTL_ROOT = "/proc/sys";
const CGROUP_ROOT = "/sys/fs/cgroup";
const SYSCTL_SKIP = new Set(["fs/binfmt_misc"]);

/** {@link runCommand} with the standard input as an optional last argument. */
function run(command: string, args: string[], stdin?: string): Promise<CommandResult> {
  return runCommand(command, args, { stdin });
}

async function runOrThrow(command: string, args: string[]): Promise<string> {
  const r = await run(command, args);
  if (!r.ok) throw new Error(`${command} ${args.join(" ")} failed: ${r.stderr}`);
  return r.stdout;
}

/** Maps with at most `limit` calls in flight. */
async function mapLimit<T, R>(
  items: T[],
  limit: number,
  fn: (item: T) => Promise<R>,
): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

async function readDirSafe(dir: string): Promise<Deno.DirEntry[]> {
  try {
    return await Array.fromAsync(Deno.readDir(dir));
  } catch {
    return [];
  }
}

async function readSysctls(): Promise<Record<string, string>> {
  const files: string[] = [];
  const walk = async (relative: string): Promise<void> => {
    const entries = await readDirSafe(join(SYSCTL_ROOT, relative));
    await Promise.all(entries.map(async (e) => {
      const rel = relative === "" ? e.name : `${relative}/${e.name}`;
      if (SYSCTL_SKIP.has(rel)) return;
      if (e.isDirectory) await walk(rel);
      else if (e.isFile) files.push(rel);
    }));
  };
  await walk("");
  const values = await mapLimit(files, 64, async (rel) => {
    const path = join(SYSCTL_ROOT, rel);
    try {
      const mode = (await Deno.stat(path)).mode ?? 0;
      if ((mode & 0o600) !== 0o600) return null;
      return (await Deno.readTextFile(path)).trim();
    } catch {
      return null; // unreadable now (EIO, EPERM, EINVAL…): not a value to restore
    }
  });
  const sysctls: Record<string, string> = {};
  files.forEach((rel, i) => {
    if (values[i] !== null) sysctls[sysctlKey(rel)] = values[i]!;
  });
  return Object.fromEntries(Object.entries(sysctls).sort(([a], [b]) => (a < b ? -1 : 1)));
}

async function readCgroups(): Promise<string[]> {
  const dirs: string[] = [];
  const walk = async (relative: string): Promise<void> => {
    dirs.push(relative);
    const entries = await readDirSafe(join(CGROUP_ROOT, relative));
    await Promise.all(
      entries.filter((e) => e.isDirectory && !e.isSymlink).map((e) =>
        walk(`${relative}/${e.name}`)
      ),
    );
  };
  const top = await readDirSafe(CGROUP_ROOT);
  await Promise.all(top.filter((e) => e.isDirectory && !e.isSymlink).map((e) => walk(e.name)));
  return dirs.sort();
}

function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

async function readMounts(): Promise<string[]> {
  const text = await Deno.readTextFile("/proc/self/mountinfo");
  return text.split("\n").filter((l) => l !== "").map((l) => unescapeMount(l.split(" ")[4]));
}

async function canonical(path: string): Promise<string> {
  const parts = path.split("/").filter((s) => s !== "");
  for (let i = parts.length; i >= 0; i--) {
    try {
      return join(await Deno.realPath(`/${parts.slice(0, i).join("/")}`), ...parts.slice(i));
    } catch {
      // go up
    }
  }
  return path;
}

async function readEntries(): Promise<Record<string, string[]>> {
  const entries: Record<string, string[]> = {};
  for (const dir of WATCHED_DIRECTORIES) {
    let real: string;
    try {
      real = await Deno.realPath(dir);
      if (!(await Deno.stat(real)).isDirectory) continue;
    } catch {
      continue;
    }
    if (Object.hasOwn(entries, real)) continue;
    entries[real] = (await Array.fromAsync(Deno.readDir(real))).map((e) => e.name)
      .filter((name) => !HOST_TOOL_ENTRIES.includes(join(real, name))).sort();
  }
  return entries;
}

async function readNetns(): Promise<string[]> {
  const names = new Set<string>();
  for (const dir of ["/run/netns", "/var/run/netns"]) {
    for (const e of await readDirSafe(dir)) names.add(e.name);
  }
  return [...names].sort();
}

function normaliseIptables(dump: string): string {
  return dump.split("\n")
    .filter((l) => !l.startsWith("#") && l.trim() !== "")
    .map((l) => l.replace(/\[\d+:\d+\]/g, "[0:0]"))
    .join("\n");
}

function normaliseRuleset(text: string): string {
  return text.split("\n").map((l) => l.trimEnd()).join("\n").trim();
}

function routeLines(text: string): string[] {
  return text.split("\n")
    .map((l) => l.replace(/\s+expires \d+sec\b/, "").trim())
    .filter((l) => l !== "");
}

/**
 * A snapshot of the host ({@link HostSnapshot}). Needs root for a complete
 * one (sysctls only root can read, iptables), and `nft`, `iptables-save`,
 * `ip6tables-save` and `ip`: throws, naming the command, when one fails.
 * Takes about a tenth of a second on an idle two-core VM.
 */
export async function snapshotHost(): Promise<HostSnapshot> {
  const [sysctls, nft, ipv4, ipv6, route4, route6, links, netns, mounts, cgroups, entries] =
    await Promise.all([
      readSysctls(),
      runOrThrow("nft", ["--stateless", "list", "ruleset"]),
      runOrThrow("iptables-save", []),
      runOrThrow("ip6tables-save", []),
      runOrThrow("ip", ["-4", "route", "show", "table", "all"]),
      runOrThrow("ip", ["-6", "route", "show", "table", "all"]),
      readDirSafe("/sys/class/net").then((es) => es.map((e) => e.name).sort()),
      readNetns(),
      readMounts(),
      readCgroups(),
      readEntries(),
    ]);
  return {
    sysctls,
    nftRuleset: normaliseRuleset(nft),
    iptablesSave: { ipv4: normaliseIptables(ipv4), ipv6: normaliseIptables(ipv6) },
    links,
    routes: [...routeLines(route4), ...routeLines(route6)],
    netns,
    mounts,
    cgroups,
    entries,
  };
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

async function readPids(file: string): Promise<number[]> {
  try {
    return (await Deno.readTextFile(file)).split("\n").filter((l) => l !== "").map(Number);
  } catch {
    return [];
  }
}

/** This process and its ancestors: never killed. */
async function protectedPids(): Promise<Set<number>> {
  const pids = new Set<number>([1]);
  let pid = Deno.pid;
  while (pid > 1 && !pids.has(pid)) {
    pids.add(pid);
    try {
      const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
      pid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
    } catch {
      break;
    }
  }
  return pids;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function removeCgroup(path: string, keep: Set<number>): Promise<string> {
  const dir = join(CGROUP_ROOT, path);
  if (!(await exists(dir))) return `cgroup ${path}: already gone`;
  const members = async () => [
    ...new Set([
      ...(await readPids(join(dir, "cgroup.procs"))),
      ...(await readPids(join(dir, "tasks"))),
    ]),
  ];
  const first = await members();
  const mine = first.filter((p) => keep.has(p));
  if (mine.length > 0) {
    return `failed: cgroup ${path} holds this process or an ancestor (${
      mine.join(", ")
    }); left alone`;
  }
  // A frozen process cannot die: thaw first.
  if (await exists(join(dir, "freezer.state"))) {
    await Deno.writeTextFile(join(dir, "freezer.state"), "THAWED").catch(() => {});
  }
  if (await exists(join(dir, "cgroup.freeze"))) {
    await Deno.writeTextFile(join(dir, "cgroup.freeze"), "0").catch(() => {});
  }
  const useKill = await exists(join(dir, "cgroup.kill"));
  const killed = new Set<number>();
  const deadline = Date.now() + 5000;
  let lastError = "";
  for (;;) {
    const pids = await members();
    if (pids.some((p) => keep.has(p))) {
      return `failed: cgroup ${path}: this process or an ancestor moved in; left alone`;
    }
    if (pids.length > 0) {
      if (useKill) {
        await Deno.writeTextFile(join(dir, "cgroup.kill"), "1").catch(() => {});
      } else {
        for (const pid of pids) {
          try {
            Deno.kill(pid, "SIGKILL");
          } catch {
            // gone already
          }
        }
      }
      pids.forEach((p) => killed.add(p));
    } else {
      try {
        await Deno.remove(dir);
        const how = killed.size === 0
          ? "empty"
          : useKill
          ? `cgroup.kill (${killed.size} processes)`
          : `killed ${[...killed].join(", ")}`;
        return `cgroup ${path}: removed (${how})`;
      } catch (error) {
        lastError = (error as Error).message;
      }
    }
    if (Date.now() > deadline) {
      const left = await members();
      return `failed: cgroup ${path}: ${
        left.length > 0
          ? `processes still in it after 5 s: ${left.join(", ")}`
          : `rmdir: ${lastError}`
      }`;
    }
    await sleep(50);
  }
}

async function removeEntry(path: string): Promise<string> {
  if (!(await exists(path))) return `rm -r ${path}: already gone`;
  const mounted = (await readMounts()).filter((m) => isUnder(m, path));
  if (mounted.length > 0) {
    return `failed: rm -r ${path}: mount points below it remain (${
      mounted.join(", ")
    }); left alone`;
  }
  try {
    await Deno.remove(path, { recursive: true });
    return `rm -r ${path}`;
  } catch (error) {
    return `failed: rm -r ${path}: ${(error as Error).message}`;
  }
}

async function command(
  label: string,
  cmd: string,
  args: string[],
  gone: RegExp | null,
  stdin?: string,
): Promise<string> {
  const r = await run(cmd, args, stdin);
  if (r.ok) return label;
  if (gone !== null && gone.test(r.stderr)) return `${label}: already gone`;
  return `failed: ${label}: ${r.stderr || "exit status non-zero"}`;
}

async function execute(step: RestoreStep, keep: Set<number>): Promise<string> {
  const label = describeStep(step);
  switch (step.kind) {
    case "cgroup":
      return await removeCgroup(step.path, keep);
    case "umount":
      return await command(label, "umount", ["-l", step.path], /not mounted|no mount point/i);
    case "netns":
      return await command(label, "ip", ["netns", "delete", step.name], /No such file/i);
    case "link":
      return await command(label, "ip", ["link", "delete", step.name], /Cannot find device/i);
    case "route":
      return await command(
        label,
        "ip",
        [`-${step.family}`, "route", "del", ...step.route.split(/\s+/)],
        /No such process|Cannot find device/i,
      );
    case "nft-flush":
      return await command(label, "nft", ["flush", "ruleset"], null);
    case "nft-delete-table":
      return await command(
        label,
        "nft",
        ["delete", "table", step.family, step.name],
        /No such file/i,
      );
    case "iptables-restore":
      return await command(
        label,
        step.family === "ipv4" ? "iptables-restore" : "ip6tables-restore",
        [],
        null,
        `${step.dump}\n`,
      );
    case "nft-restore-table": {
      const script = `${
        step.replace ? `delete table ${step.family} ${step.name}\n` : ""
      }${step.text}\n`;
      return await command(label, "nft", ["-f", "-"], null, script);
    }
    case "nft-check": {
      const r = await run("nft", ["--stateless", "list", "ruleset"]);
      if (!r.ok) return `failed: ${label}: nft list ruleset: ${r.stderr}`;
      const now = normaliseRuleset(r.stdout);
      if (now === step.expected) return "nft ruleset is back to before";
      return canonicalRuleset(now) === canonicalRuleset(step.expected)
        ? "nft ruleset is back to before (the same tables, chains and rules; chains in another order)"
        : `failed: nft ruleset differs from before: ${
          lineChanges(canonicalRuleset(step.expected), canonicalRuleset(now))
        }`;
    }
    case "sysctl": {
      const path = sysctlPath(step.key);
      try {
        await Deno.writeTextFile(path, `${step.value}\n`);
        const back = (await Deno.readTextFile(path)).trim();
        return back === step.value
          ? label
          : `failed: ${label}: reads back ${show(back)} after writing`;
      } catch (error) {
        return `failed: ${label}: ${(error as Error).message}`;
      }
    }
    case "remove":
      return await removeEntry(step.path);
  }
}

/**
 * Undoes what appeared on the host since `before` (see {@link restorePlan} for
 * what and in which order): takes a snapshot of now, plans, and runs each
 * step, returning one line per action for the logs. Never throws for a failed
 * step: its line starts with `failed:` and the rest goes on (take a snapshot
 * and {@link diffHost} afterwards to see what is left). Owned prefixes are
 * also taken with symbolic links resolved (`/var/run/x` → `/run/x`). Never
 * kills this process or its ancestors (a cgroup holding one is left alone,
 * with a `failed:` line).
 */
export async function restoreHost(
  before: HostSnapshot,
  options: RestoreOptions = {},
): Promise<string[]> {
  const lines: string[] = [];
  const say = (line: string) => {
    lines.push(line);
    options.log?.(line);
  };
  let now: HostSnapshot;
  try {
    now = await snapshotHost();
  } catch (error) {
    say(`failed: snapshot of the host before restoring: ${(error as Error).message}`);
    return lines;
  }
  const prefixes = options.ownedPrefixes ?? DEFAULT_OWNED_PREFIXES;
  const ownedPrefixes = [
    ...new Set([...prefixes, ...(await Promise.all(prefixes.map(canonical)))]),
  ];
  const steps = restorePlan(before, now, { ...options, ownedPrefixes })
    .filter((s) => options.filter?.(s) ?? true);
  const keep = await protectedPids();
  for (const step of steps) {
    try {
      say(await execute(step, keep));
    } catch (error) {
      say(`failed: ${describeStep(step)}: ${(error as Error).message}`);
    }
  }
  return lines;
}

/**
 * Lazily unmounts every mount point at or below `dir`, deepest first, and
 * checks again (up to three passes): a directory that is wholly the caller's
 * (a cluster's own) keeps no mount, whatever a snapshot saw. It catches a
 * mount made after the restore's snapshot, such as a container's rootfs a
 * dying runtime mounted late. Returns one line per action, `[]` when nothing
 * was mounted there.
 */
export async function unmountBelow(
  dir: string,
  log: (line: string) => void = () => {},
): Promise<string[]> {
  const lines: string[] = [];
  const say = (line: string) => {
    lines.push(line);
    log(line);
  };
  const root = await canonical(dir);
  for (let pass = 0; pass < 3; pass++) {
    const below = (await readMounts()).filter((m) => isUnder(m, root))
      .sort((a, b) => depth(b) - depth(a));
    if (below.length === 0) return lines;
    for (const path of below) {
      say(await execute({ kind: "umount", path }, new Set()));
    }
  }
  const left = (await readMounts()).filter((m) => isUnder(m, root));
  if (left.length > 0) say(`failed: mount points below ${root} remain: ${left.join(", ")}`);
  return lines;
}

/**
 * The cgroups of other sessions beside this process (see
 * {@link siblingCgroupPatterns}), for the hierarchies of `snapshot`: what a
 * diff of the whole host ignores because something else makes and removes
 * them while a cluster runs.
 */
export async function foreignCgroupPatterns(snapshot: HostSnapshot): Promise<RegExp[]> {
  const hierarchies = [...new Set(snapshot.cgroups.map((c) => c.split("/")[0]))];
  return siblingCgroupPatterns(await Deno.readTextFile("/proc/self/cgroup"), hierarchies);
}
