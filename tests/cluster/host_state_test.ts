/**
 * The host snapshot, diff and restore of src/cluster/_host_state.ts: the pure
 * diff and plan on hand-built snapshots, then (as root) real changes of every
 * kind made and undone on this machine, and a ruleset with tables of its own
 * put back exactly.
 */
import assert from "node:assert/strict";
import {
  DEFAULT_OWNED_CGROUPS,
  DEFAULT_OWNED_PREFIXES,
  describeStep,
  diffHost,
  foreignCgroupPatterns,
  type HostSnapshot,
  restoreHost,
  restorePlan,
  type RestoreStep,
  siblingCgroupPatterns,
  snapshotHost,
  sysctlPath,
  unmountBelow,
  VOLATILE_SYSCTLS,
} from "../../src/cluster/_host_state.ts";
import { IN_CI, requireOrSkip } from "../_support/requirements.ts";

// ---------------------------------------------------------------------------
// Hand-built snapshots
// ---------------------------------------------------------------------------

function snapshot(overrides: Partial<HostSnapshot> = {}): HostSnapshot {
  return {
    sysctls: {
      "kernel.panic": "0",
      "kernel.ns_last_pid": "100",
      "net.ipv4.ip_forward": "0",
      "net.ipv4.conf.all.forwarding": "0",
      "net.ipv4.conf.eth0.forwarding": "0",
      "vm.overcommit_memory": "0",
    },
    nftRuleset: "",
    iptablesSave: { ipv4: "", ipv6: "" },
    links: ["eth0", "lo"],
    routes: [
      "default via 192.0.2.1 dev eth0",
      "192.0.2.0/24 dev eth0 proto kernel scope link src 192.0.2.2",
      "fd00::/64 dev eth0 proto kernel metric 256 pref medium",
    ],
    netns: [],
    mounts: ["/", "/proc", "/sys", "/dev/pts", "/dev/pts", "/sys/fs/cgroup/cpu"],
    cgroups: ["cpu", "memory", "memory/session", "memory/session/a", "unified"],
    entries: {
      "/run": ["lock", "user"],
      "/var/lib": ["apt", "dpkg"],
      "/var/log": ["apt"],
      "/etc": ["hosts"],
      "/opt": [],
    },
    ...overrides,
  };
}

function withSysctls(base: HostSnapshot, changes: Record<string, string | null>): HostSnapshot {
  const sysctls = { ...base.sysctls };
  for (const [key, value] of Object.entries(changes)) {
    if (value === null) delete sysctls[key];
    else sysctls[key] = value;
  }
  return { ...base, sysctls };
}

const FILTER_TABLE = [
  "table ip filter {",
  "\tchain INPUT {",
  "\t\ttype filter hook input priority filter; policy accept;",
  "\t\tip saddr 198.18.254.1 counter jump MBCAS-HST-TEST",
  "\t}",
  "\tchain MBCAS-HST-TEST {",
  "\t}",
  "}",
].join("\n");

const INET_TABLE = "table inet mbcas_hoststate_test {\n}";

const FILTER_DUMP = [
  "*filter",
  ":INPUT ACCEPT [0:0]",
  ":MBCAS-HST-TEST - [0:0]",
  "COMMIT",
].join("\n");

Deno.test("diffHost: identical snapshots, and a JSON round trip of one, differ in nothing", () => {
  const s = snapshot();
  assert.deepEqual(diffHost(s, snapshot()), []);
  assert.deepEqual(diffHost(s, JSON.parse(JSON.stringify(s))), []);
});

Deno.test("diffHost: a sysctl changed, added and removed", () => {
  const before = snapshot();
  const after = withSysctls(before, {
    "kernel.panic": "10",
    "vm.panic_on_oom": "0",
    "vm.overcommit_memory": null,
  });
  assert.deepEqual(diffHost(before, after), [
    "sysctl kernel.panic: 0 → 10",
    "sysctl removed: vm.overcommit_memory (was 0)",
    "sysctl added: vm.panic_on_oom = 0",
  ]);
});

Deno.test("diffHost: volatile sysctls are ignored by default and shown with ignoreSysctls []", () => {
  const before = snapshot();
  const after = withSysctls(before, {
    "kernel.ns_last_pid": "4242",
    "net.ipv4.tcp_fastopen_key": "eeaf44a9-7225d996-d255e9af-25c91ef0",
  });
  assert.deepEqual(diffHost(before, after), []);
  assert.deepEqual(diffHost(before, after, { ignoreSysctls: [] }), [
    "sysctl kernel.ns_last_pid: 100 → 4242",
    "sysctl added: net.ipv4.tcp_fastopen_key = eeaf44a9-7225d996-d255e9af-25c91ef0",
  ]);
  assert.ok(VOLATILE_SYSCTLS.some((p) => p.test("kernel.ns_last_pid")));
  assert.ok(!VOLATILE_SYSCTLS.some((p) => p.test("kernel.panic")));
});

Deno.test("diffHost: sysctls of a link that came or went are folded into the link", () => {
  const before = snapshot();
  const after = {
    ...withSysctls(before, {
      "net.ipv4.conf.mbcas0.forwarding": "1",
      "net.ipv6.conf.mbcas0.mtu": "1500",
      "net.ipv4.neigh.mbcas0.ucast_solicit": "3",
      "net.ipv6.neigh.mbcas0.ucast_solicit": "3",
      "net.ipv4.conf.eth0/100.forwarding": "0",
      "net.ipv4.conf.eth0.forwarding": null,
    }),
    links: ["eth0.100", "lo", "mbcas0"],
  };
  assert.deepEqual(diffHost(before, after), [
    "link added: eth0.100 (with 1 sysctls)",
    "link added: mbcas0 (with 4 sysctls)",
    "link removed: eth0 (with 1 sysctls)",
  ]);
  // A link present on both sides: its sysctls are sysctls.
  const forwarding = withSysctls(before, {
    "net.ipv4.ip_forward": "1",
    "net.ipv4.conf.eth0.forwarding": "1",
  });
  assert.deepEqual(diffHost(before, forwarding), [
    "sysctl net.ipv4.conf.eth0.forwarding: 0 → 1",
    "sysctl net.ipv4.ip_forward: 0 → 1",
  ]);
});

Deno.test("diffHost: cgroups added and removed, one line per subtree, and ignored ones", () => {
  const before = snapshot();
  const after = snapshot({
    cgroups: [
      "cpu",
      "cpu/kubepods",
      "cpu/kubepods/besteffort",
      "cpu/kubepods/besteffort/pod1",
      "memory",
      "memory/other-session",
      "systemd/kubepods",
      "unified",
    ],
  });
  assert.deepEqual(diffHost(before, after), [
    "cgroup added: cpu/kubepods (and 2 below)",
    "cgroup added: memory/other-session",
    "cgroup added: systemd/kubepods",
    "cgroup removed: memory/session (and 1 below)",
  ]);
  assert.deepEqual(diffHost(before, after, { ignoreCgroups: [/^memory\/[^/]+(?:\/|$)/] }), [
    "cgroup added: cpu/kubepods (and 2 below)",
    "cgroup added: systemd/kubepods",
  ]);
});

Deno.test("diffHost: mounts (counted), netns, links and routes added and removed", () => {
  const before = snapshot();
  const after = snapshot({
    mounts: ["/", "/proc", "/sys", "/dev/pts", "/sys/fs/cgroup/cpu", "/run/netns", "/a b"],
    netns: ["cni-1234"],
    links: ["cni0", "lo", "veth1"],
    routes: [
      "default via 192.0.2.1 dev eth0",
      "10.244.0.0/24 dev cni0 proto kernel scope link src 10.244.0.1",
      "fd00::/64 dev eth0 proto kernel metric 256 pref medium",
    ],
  });
  assert.deepEqual(diffHost(before, after), [
    "mount added: /run/netns",
    "mount added: /a b",
    "mount removed: /dev/pts",
    "netns added: cni-1234",
    "link added: cni0",
    "link added: veth1",
    "link removed: eth0",
    "route added: 10.244.0.0/24 dev cni0 proto kernel scope link src 10.244.0.1",
    "route removed: 192.0.2.0/24 dev eth0 proto kernel scope link src 192.0.2.2",
  ]);
  assert.deepEqual(diffHost(after, before).filter((l) => l.startsWith("netns")), [
    "netns removed: cni-1234",
  ]);
});

Deno.test("diffHost: nft tables and iptables tables added, changed, removed, with an excerpt", () => {
  const before = snapshot();
  const after = snapshot({
    nftRuleset: `${FILTER_TABLE}\n${INET_TABLE}`,
    iptablesSave: { ipv4: FILTER_DUMP, ipv6: "" },
  });
  const lines = diffHost(before, after);
  assert.deepEqual(lines, [
    "nft ruleset changed: added table inet mbcas_hoststate_test: + table inet mbcas_hoststate_test { | + }",
    "nft ruleset changed: added table ip filter: + table ip filter { | + chain INPUT { | " +
    "+ type filter hook input priority filter; policy accept; | " +
    "+ ip saddr 198.18.254.1 counter jump MBCAS-HST-TEST | + } | + chain MBCAS-HST-TEST { | … (2 more)",
    "iptables-save ipv4 changed: added table filter: + *filter | + :INPUT ACCEPT [0:0] | " +
    "+ :MBCAS-HST-TEST - [0:0] | + COMMIT",
  ]);
  const changed = snapshot({
    nftRuleset: FILTER_TABLE.replace("\tchain MBCAS-HST-TEST {\n\t}\n", ""),
    iptablesSave: { ipv4: FILTER_DUMP.replace(":MBCAS-HST-TEST - [0:0]\n", ""), ipv6: "" },
  });
  assert.deepEqual(diffHost(after, changed), [
    "nft ruleset changed: removed table inet mbcas_hoststate_test: - table inet mbcas_hoststate_test { | - }",
    "nft ruleset changed: changed table ip filter: - chain MBCAS-HST-TEST { | - }",
    "iptables-save ipv4 changed: changed table filter: - :MBCAS-HST-TEST - [0:0]",
  ]);
});

Deno.test("diffHost and restorePlan: chain order and empty accept base chains do not count", () => {
  const listed = [
    "table ip filter {",
    "\tchain MBCAS-HST-Z {",
    "\t\tcounter return",
    "\t}",
    "",
    "\tchain INPUT {",
    "\t\ttype filter hook input priority filter; policy accept;",
    "\t\tip saddr 198.18.254.9 counter jump MBCAS-HST-Z",
    "\t}",
    "}",
  ].join("\n");
  const restored = [
    "table ip filter {",
    "\tchain INPUT {",
    "\t\ttype filter hook input priority filter; policy accept;",
    "\t\tip saddr 198.18.254.9 counter jump MBCAS-HST-Z",
    "\t}",
    "",
    "\tchain FORWARD {",
    "\t\ttype filter hook forward priority filter; policy accept;",
    "\t}",
    "",
    "\tchain MBCAS-HST-Z {",
    "\t\tcounter return",
    "\t}",
    "}",
  ].join("\n");
  const before = snapshot({ nftRuleset: `${INET_TABLE}\n${listed}` });
  const after = snapshot({ nftRuleset: `${restored}\n${INET_TABLE}` });
  assert.deepEqual(diffHost(before, after), []);
  assert.deepEqual(restorePlan(before, after), []);
  const dropped = snapshot({
    nftRuleset: restored.replace(
      "forward priority filter; policy accept;",
      "forward priority filter; policy drop;",
    ),
  });
  assert.deepEqual(diffHost(snapshot({ nftRuleset: listed }), dropped), [
    "nft ruleset changed: changed table ip filter: " +
    "+ chain FORWARD { | + type filter hook forward priority filter; policy drop; | + }",
  ]);
});

Deno.test("diffHost: entries of watched directories; a new watched directory is its parent's entry", () => {
  const before = snapshot();
  const after = snapshot({
    entries: {
      "/run": ["containerd", "lock"],
      "/var/lib": ["apt", "dpkg", "kubelet"],
      "/var/lib/kubelet": ["pods"],
      "/var/log": ["apt", "containers", "pods"],
      "/etc": ["hosts"],
      "/opt": [],
    },
  });
  assert.deepEqual(diffHost(before, after), [
    "entry added: /run/containerd",
    "entry removed: /run/user",
    "entry added: /var/lib/kubelet",
    "entry added: /var/log/containers",
    "entry added: /var/log/pods",
  ]);
});

// ---------------------------------------------------------------------------
// The plan
// ---------------------------------------------------------------------------

Deno.test("restorePlan: every kind, in order, only owned cgroups and entries", () => {
  const before = snapshot({ entries: { ...snapshot().entries, "/var/lib/kubelet": ["config"] } });
  const now: HostSnapshot = {
    ...withSysctls(before, {
      "kernel.panic": "10",
      "net.ipv4.ip_forward": "1",
      "net.ipv4.conf.all.forwarding": "1",
      "net.ipv4.conf.eth0.forwarding": "1",
      "kernel.ns_last_pid": "999",
      "net.ipv4.conf.cni0.forwarding": "1",
    }),
    cgroups: [
      ...before.cgroups,
      "cpu/kubepods",
      "cpu/kubepods/besteffort",
      "cpu/kubepods/besteffort/pod1",
      "memory/other-session",
      "unified/kubepods",
    ],
    mounts: [...before.mounts, "/run/netns", "/run/netns/cni-1", "/var/lib/kubelet/pods/x/vol"],
    netns: ["cni-1"],
    links: [...before.links, "cni0", "veth1"],
    routes: [
      ...before.routes,
      "10.244.0.0/24 dev cni0 proto kernel scope link src 10.244.0.1",
      "blackhole 198.18.254.0/24",
      "fd01::/64 via fd00::1 dev eth0 metric 1024 pref medium",
      "anycast fd00:: dev eth0 table local proto kernel metric 0 pref medium",
    ],
    nftRuleset: FILTER_TABLE,
    entries: {
      ...before.entries,
      "/run": ["containerd", "lock", "user", "somebody-else"],
      "/var/lib": ["apt", "cni", "dpkg"],
      "/var/lib/kubelet": ["config", "pods", "device-plugins"],
      "/var/log": ["apt", "containers", "pods"],
    },
  };
  const steps = restorePlan(before, now);
  assert.deepEqual(steps, [
    { kind: "cgroup", path: "cpu/kubepods/besteffort/pod1" },
    { kind: "cgroup", path: "cpu/kubepods/besteffort" },
    { kind: "cgroup", path: "unified/kubepods" },
    { kind: "cgroup", path: "cpu/kubepods" },
    { kind: "umount", path: "/var/lib/kubelet/pods/x/vol" },
    { kind: "umount", path: "/run/netns/cni-1" },
    { kind: "umount", path: "/run/netns" },
    { kind: "netns", name: "cni-1" },
    { kind: "link", name: "cni0" },
    { kind: "link", name: "veth1" },
    { kind: "nft-flush" },
    { kind: "nft-check", expected: "" },
    { kind: "sysctl", key: "net.ipv4.ip_forward", value: "0", current: "1" },
    { kind: "sysctl", key: "net.ipv4.conf.all.forwarding", value: "0", current: "1" },
    { kind: "sysctl", key: "kernel.panic", value: "0", current: "10" },
    { kind: "sysctl", key: "net.ipv4.conf.eth0.forwarding", value: "0", current: "1" },
    { kind: "route", family: 4, route: "blackhole 198.18.254.0/24" },
    { kind: "route", family: 6, route: "fd01::/64 via fd00::1 dev eth0 metric 1024 pref medium" },
    { kind: "remove", path: "/run/containerd" },
    { kind: "remove", path: "/var/lib/cni" },
    { kind: "remove", path: "/var/lib/kubelet/device-plugins" },
    { kind: "remove", path: "/var/lib/kubelet/pods" },
    { kind: "remove", path: "/var/log/containers" },
    { kind: "remove", path: "/var/log/pods" },
  ]);
  assert.ok(DEFAULT_OWNED_CGROUPS.includes("kubepods"));
  assert.ok(DEFAULT_OWNED_PREFIXES.includes("/var/lib/kubelet"));
  // Owned elsewhere: a new /var/lib/kubelet goes whole, not entry by entry.
  const fresh = restorePlan(snapshot(), {
    ...snapshot(),
    entries: {
      ...snapshot().entries,
      "/var/lib": ["apt", "dpkg", "kubelet"],
      "/var/lib/kubelet": ["pods"],
    },
  }, { ownedPrefixes: ["/var/lib/kubelet", "/var/lib/kubelet/pods"] });
  assert.deepEqual(fresh, [{ kind: "remove", path: "/var/lib/kubelet" }]);
  // Prefixes are whole components: /var/lib/cni does not own /var/lib/cnix.
  const cnix = restorePlan(snapshot(), {
    ...snapshot(),
    entries: { ...snapshot().entries, "/var/lib": ["apt", "cnix", "dpkg"] },
  });
  assert.deepEqual(cnix, []);
});

Deno.test("restorePlan: a ruleset with tables of its own: delete new, iptables-restore iptables tables, nft -f others", () => {
  const pre = "table inet keep {\n\tchain c {\n\t\ttcp dport 9 accept\n\t}\n}";
  const gone = "table bridge gone {\n}";
  const before = snapshot({
    nftRuleset: `${FILTER_TABLE}\n${pre}\n${gone}`,
    iptablesSave: { ipv4: FILTER_DUMP, ipv6: "" },
  });
  const now = snapshot({
    nftRuleset: `${FILTER_TABLE.replace("\t}\n}", "\t\tcounter\n\t}\n}")}\n${
      pre.replace("accept", "drop")
    }\n${INET_TABLE}`,
  });
  assert.deepEqual(restorePlan(before, now), [
    { kind: "nft-delete-table", family: "inet", name: "mbcas_hoststate_test" },
    { kind: "iptables-restore", family: "ipv4", table: "filter", dump: FILTER_DUMP },
    { kind: "nft-restore-table", family: "inet", name: "keep", text: pre, replace: true },
    { kind: "nft-restore-table", family: "bridge", name: "gone", text: gone, replace: false },
    { kind: "nft-check", expected: before.nftRuleset },
  ]);
  assert.deepEqual(restorePlan(before, before), []);
});

Deno.test("describeStep names what each step does", () => {
  const steps: RestoreStep[] = [
    { kind: "cgroup", path: "cpu/kubepods" },
    { kind: "umount", path: "/run/netns" },
    { kind: "link", name: "cni0" },
    { kind: "sysctl", key: "kernel.panic", value: "0", current: "10" },
    { kind: "remove", path: "/etc/cni" },
  ];
  assert.deepEqual(steps.map(describeStep), [
    "kill the processes of cgroup cpu/kubepods and remove it",
    "umount -l /run/netns",
    "ip link delete cni0",
    "sysctl kernel.panic: 10 → 0",
    "rm -r /etc/cni",
  ]);
});

Deno.test("siblingCgroupPatterns: the cgroups beside this process's own, not top-level ones", () => {
  const self = [
    "9:name=systemd:/",
    "4:memory:/process_api/7c1d",
    "2:cpu,cpuacct:/",
    "0::/",
  ].join("\n");
  const patterns = siblingCgroupPatterns(self, ["cpu,cpuacct", "memory", "systemd", "unified"]);
  assert.equal(patterns.length, 1);
  assert.ok(patterns[0].test("memory/process_api/other"));
  assert.ok(patterns[0].test("memory/process_api/other/child"));
  assert.ok(!patterns[0].test("memory/process_api"));
  assert.ok(!patterns[0].test("memory/kubepods"));
  const v2 = siblingCgroupPatterns("0::/user.slice/session-3.scope", ["user.slice", "kubepods"]);
  assert.ok(v2[0].test("user.slice/session-4.scope"));
  assert.ok(!v2[0].test("kubepods/besteffort"));
});

Deno.test("sysctlPath: dots separate components, a slash stands for a dot in a name", () => {
  assert.equal(sysctlPath("kernel.panic"), "/proc/sys/kernel/panic");
  assert.equal(
    sysctlPath("net.ipv4.conf.eth0/100.forwarding"),
    "/proc/sys/net/ipv4/conf/eth0.100/forwarding",
  );
});

// ---------------------------------------------------------------------------
// On this machine, as root
// ---------------------------------------------------------------------------

const NOT_ROOT = Deno.build.os !== "linux"
  ? "not Linux"
  : Deno.uid() !== 0
  ? "needs root (changes and restores sysctls, cgroups, mounts, links, nftables)"
  : null;

/** Everything this file's root tests touch names itself with one of these. */
const OURS =
  /mbcas-hoststate-test|mbcas_hoststate_test|mbcas-hst|MBCAS-HST|198\.18\.254\.0\/24|kernel\.panic\b|\/run\/netns\b/;

async function sh(command: string): Promise<string> {
  const out = await new Deno.Command("bash", {
    args: ["-c", command],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  if (!out.success) {
    throw new Error(`${command}: ${new TextDecoder().decode(out.stderr).trim()}`);
  }
  return text;
}

async function quietly(command: string): Promise<void> {
  await new Deno.Command("bash", { args: ["-c", command], stdout: "null", stderr: "null" })
    .output();
}

const ignoreForeignCgroups = foreignCgroupPatterns;

/**
 * Differences that are ours must be none; others come from whatever else
 * runs on a shared machine: fatal in CI (nothing else runs), a warning here.
 */
function assertNothingLeft(lines: string[]): void {
  const ours = lines.filter((l) => OURS.test(l));
  const others = lines.filter((l) => !OURS.test(l));
  assert.deepEqual(ours, [], `left behind:\n${ours.join("\n")}`);
  if (others.length > 0) {
    if (IN_CI) assert.deepEqual(others, [], `changed during the test:\n${others.join("\n")}`);
    console.warn(`changed meanwhile by something else on this machine:\n${others.join("\n")}`);
  }
}

/** Whether a ruleset holds only this file's tables, and only its chains beside iptables' base chains. */
function onlyOurRules(ruleset: string): boolean {
  const tables = [...tableNames(ruleset)];
  const chains = [...ruleset.matchAll(/^\tchain (\S+) \{/gm)].map((m) => m[1]);
  return tables.every((t) => /^inet mbcas_hoststate_test|^ip6? filter$/.test(t)) &&
    chains.every((c) => /^MBCAS-HST-|^(INPUT|FORWARD|OUTPUT)$/.test(c));
}

const tableNames = (ruleset: string) =>
  new Set([...ruleset.matchAll(/^table (\S+ \S+) \{/gm)].map((m) => m[1]));

requireOrSkip(
  "snapshotHost/diffHost/restoreHost on this machine: a sysctl, cgroups with a process, a bind mount, a netns, a veth pair, a route, nft and iptables, owned and unowned entries",
  NOT_ROOT,
  async () => {
    const t0 = performance.now();
    const before = await snapshotHost();
    const took = performance.now() - t0;
    console.log(
      `snapshotHost: ${took.toFixed(0)} ms, ${Object.keys(before.sysctls).length} sysctls, ` +
        `${before.cgroups.length} cgroup dirs, ${before.mounts.length} mounts, ` +
        `${before.links.length} links, ${before.routes.length} routes`,
    );
    assert.ok(Object.keys(before.sysctls).length > 100, "sysctls were read");
    assert.ok(Object.hasOwn(before.sysctls, "kernel.panic"));
    assert.ok(before.links.includes("lo"));
    assert.ok(before.mounts.includes("/"));
    assert.ok(!Object.hasOwn(before.sysctls, "vm.drop_caches"), "write-only sysctls are left out");
    for (const name of ["mbcas-hoststate-test", "mbcas-hst0", "mbcas_hoststate_test"]) {
      assert.ok(
        !JSON.stringify(before).includes(name),
        `${name} is already on this machine: a previous run left it`,
      );
    }
    const ignoreCgroups = await ignoreForeignCgroups(before);
    const pureV2 = await exists("/sys/fs/cgroup/cgroup.controllers");
    const hierarchies = pureV2
      ? [""]
      : ["cpu", "unified"].filter((h) => before.cgroups.includes(h));
    assert.ok(hierarchies.length > 0, "a cpu or unified cgroup hierarchy");
    const cgroupDir = (h: string, rest = "") =>
      `/sys/fs/cgroup/${h === "" ? "" : `${h}/`}mbcas-hoststate-test${rest}`;
    const netnsDirExisted = Object.hasOwn(before.entries, "/run") &&
      before.entries["/run"].includes("netns");

    const panic = before.sysctls["kernel.panic"];
    const newPanic = panic === "10" ? "0" : "10";
    const tmp = await Deno.makeTempDir({ prefix: "mbcas-hoststate-test-" });
    // One sleep per hierarchy: v1 is emptied with kill(2), v2 with cgroup.kill.
    const sleepers = hierarchies.map(() =>
      new Deno.Command("sleep", { args: ["600"], stdout: "null", stderr: "null" }).spawn()
    );
    let sleeperDone = false;
    try {
      await Deno.writeTextFile("/proc/sys/kernel/panic", newPanic);
      for (const [i, h] of hierarchies.entries()) {
        await Deno.mkdir(cgroupDir(h, "/inner"), { recursive: true });
        await Deno.writeTextFile(cgroupDir(h, "/inner/cgroup.procs"), `${sleepers[i].pid}\n`);
      }
      await Deno.mkdir(`${tmp}/src`);
      await Deno.mkdir(`${tmp}/dst`);
      await sh(`mount --bind '${tmp}/src' '${tmp}/dst'`);
      await sh("ip netns add mbcas-hoststate-test");
      await sh("ip link add mbcas-hst0 type veth peer name mbcas-hst1");
      await sh("ip route add blackhole 198.18.254.0/24");
      await sh("nft add table inet mbcas_hoststate_test");
      await sh("iptables -N MBCAS-HST-TEST && iptables -A MBCAS-HST-TEST -j RETURN");
      await Deno.mkdir("/var/lib/mbcas-hoststate-test/sub", { recursive: true });
      await Deno.writeTextFile("/var/lib/mbcas-hoststate-test/sub/file", "x");
      await Deno.mkdir("/opt/mbcas-hoststate-test-unowned");

      const during = await snapshotHost();
      const diff = diffHost(before, during, { ignoreCgroups });
      console.log(`diff:\n  ${diff.join("\n  ")}`);
      const has = (pattern: RegExp) =>
        assert.ok(diff.some((l) => pattern.test(l)), `no line matches ${pattern}`);
      assert.ok(diff.includes(`sysctl kernel.panic: ${panic} → ${newPanic}`));
      for (const h of hierarchies) {
        const p = h === "" ? "mbcas-hoststate-test" : `${h}/mbcas-hoststate-test`;
        assert.ok(diff.includes(`cgroup added: ${p} (and 1 below)`), `cgroup ${p}`);
      }
      assert.ok(diff.includes(`mount added: ${tmp}/dst`));
      assert.ok(diff.includes("mount added: /run/netns/mbcas-hoststate-test"));
      assert.ok(diff.includes("netns added: mbcas-hoststate-test"));
      has(/^link added: mbcas-hst0 \(with \d+ sysctls\)$/);
      has(/^link added: mbcas-hst1 \(with \d+ sysctls\)$/);
      assert.ok(!diff.some((l) => l.startsWith("sysctl") && l.includes("mbcas-hst")));
      assert.ok(diff.includes("route added: blackhole 198.18.254.0/24"));
      has(/^nft ruleset changed: added table inet mbcas_hoststate_test: /);
      has(/^nft ruleset changed: (added|changed) table ip filter: .*MBCAS-HST-TEST/);
      has(/^iptables-save ipv4 changed: (added|changed) table filter: .*MBCAS-HST-TEST/);
      assert.ok(diff.includes("entry added: /var/lib/mbcas-hoststate-test"));
      assert.ok(diff.includes("entry added: /opt/mbcas-hoststate-test-unowned"));
      // `mount` keeps libmount's utab in /run/mount (made by the first mount on
      // a fresh machine, as the bind mount above may just have): never listed.
      assert.ok(await exists("/run/mount"), "mount --bind left /run/mount");
      assert.ok(!during.entries["/run"].includes("mount"), "a snapshot leaves /run/mount out");

      const actions = await restoreHost(before, {
        ownedPrefixes: ["/var/lib/mbcas-hoststate-test", "/run/netns", "/var/run/netns"],
        ownedCgroups: ["mbcas-hoststate-test"],
        // Only what this test made: this machine is shared. `nft flush ruleset`
        // only while the ruleset holds nothing but this test's tables and chains.
        filter: (s) =>
          s.kind === "nft-flush"
            ? onlyOurRules(during.nftRuleset)
            : s.kind.startsWith("nft") || s.kind === "iptables-restore" ||
              OURS.test(describeStep(s)),
      });
      console.log(`restoreHost:\n  ${actions.join("\n  ")}`);
      assert.deepEqual(actions.filter((l) => l.startsWith("failed:")), []);
      for (const h of hierarchies) {
        const inner = `${h === "" ? "" : `${h}/`}mbcas-hoststate-test/inner`;
        assert.ok(
          actions.some((l) => l.startsWith(`cgroup ${inner}: removed (`) && !l.endsWith("(empty)")),
          `the process in ${inner} was killed`,
        );
      }

      for (const [i, sleeper] of sleepers.entries()) {
        const status = await sleeper.status;
        assert.equal(status.signal, "SIGKILL", `the sleep in ${hierarchies[i]} was killed`);
        assert.ok(!(await exists(`/proc/${sleeper.pid}/cmdline`)), "no such process any more");
      }
      sleeperDone = true;
      assert.ok(await exists("/opt/mbcas-hoststate-test-unowned"), "unowned entries are left");
      await Deno.remove("/opt/mbcas-hoststate-test-unowned");

      const after = await snapshotHost();
      assertNothingLeft(diffHost(before, after, { ignoreCgroups }));
      assert.equal(after.nftRuleset, before.nftRuleset);
    } finally {
      if (!sleeperDone) {
        for (const sleeper of sleepers) {
          try {
            sleeper.kill("SIGKILL");
          } catch {
            // already gone
          }
          await sleeper.status;
        }
      }
      for (const h of hierarchies) {
        await Deno.remove(cgroupDir(h, "/inner")).catch(() => {});
        await Deno.remove(cgroupDir(h)).catch(() => {});
      }
      await quietly(`umount -l '${tmp}/dst'`);
      await Deno.remove(tmp, { recursive: true }).catch(() => {});
      await quietly("ip netns delete mbcas-hoststate-test");
      if (!netnsDirExisted) await quietly("umount -l /run/netns; rmdir /run/netns");
      await quietly("ip link delete mbcas-hst0");
      await quietly("ip route del blackhole 198.18.254.0/24");
      await quietly("nft delete table inet mbcas_hoststate_test");
      await quietly("iptables -F MBCAS-HST-TEST; iptables -X MBCAS-HST-TEST");
      if (!tableNames(before.nftRuleset).has("ip filter")) {
        await quietly("nft delete table ip filter");
      }
      await Deno.writeTextFile("/proc/sys/kernel/panic", panic).catch(() => {});
      await Deno.remove("/var/lib/mbcas-hoststate-test", { recursive: true }).catch(() => {});
      await Deno.remove("/opt/mbcas-hoststate-test-unowned").catch(() => {});
    }
  },
);

requireOrSkip(
  "restoreHost puts a ruleset with tables of its own back exactly: new table deleted, iptables tables restored, an nft table replaced",
  NOT_ROOT,
  async () => {
    const original = await snapshotHost();
    const originalTables = tableNames(original.nftRuleset);
    assert.ok(![...originalTables].some((t) => t.includes("mbcas_hoststate_test")));
    try {
      await sh(
        "nft add table inet mbcas_hoststate_test_pre && " +
          "nft add chain inet mbcas_hoststate_test_pre c && " +
          "nft add rule inet mbcas_hoststate_test_pre c tcp dport 9 accept",
      );
      await sh("iptables -N MBCAS-HST-PRE && iptables -A MBCAS-HST-PRE -s 198.18.254.1 -j RETURN");
      await sh("ip6tables -N MBCAS-HST-PRE && ip6tables -A MBCAS-HST-PRE -j RETURN");
      const before = await snapshotHost();

      await sh("nft add rule inet mbcas_hoststate_test_pre c tcp dport 10 drop");
      await sh("nft add table inet mbcas_hoststate_test");
      await sh("iptables -N MBCAS-HST-TEST && iptables -A MBCAS-HST-TEST -j RETURN");
      await sh("iptables -A MBCAS-HST-PRE -s 198.18.254.2 -j DROP");
      await sh("ip6tables -D MBCAS-HST-PRE 1");
      const during = await snapshotHost();
      const diff = diffHost(before, during);
      console.log(`diff:\n  ${diff.join("\n  ")}`);
      assert.ok(
        diff.some((l) =>
          l.startsWith("nft ruleset changed: added table inet mbcas_hoststate_test:")
        ),
      );
      assert.ok(
        diff.some((l) =>
          l.startsWith("nft ruleset changed: changed table inet mbcas_hoststate_test_pre:")
        ),
      );
      assert.ok(
        diff.some((l) => l.startsWith("iptables-save ipv6 changed: changed table filter:")),
      );

      const plan = restorePlan(before, during)
        .filter((s) => s.kind.startsWith("nft") || s.kind === "iptables-restore")
        .map(describeStep);
      assert.equal(plan[0], "nft delete table inet mbcas_hoststate_test");
      assert.equal(plan.at(-1), "check the nft ruleset is back to before");
      assert.deepEqual(plan.slice(1, -1).sort(), [
        "ip6tables-restore table filter",
        "iptables-restore table filter",
        "nft -f: replace table inet mbcas_hoststate_test_pre",
      ]);
      const actions = await restoreHost(before, {
        filter: (s) => s.kind.startsWith("nft") || s.kind === "iptables-restore",
      });
      console.log(`restoreHost:\n  ${actions.join("\n  ")}`);
      assert.deepEqual(actions.filter((l) => l.startsWith("failed:")), []);
      const after = await snapshotHost();
      assert.deepEqual(
        diffHost(before, after).filter((l) => /^(nft|iptables)/.test(l)),
        [],
        "the same tables, chains and rules",
      );
      assert.deepEqual(after.iptablesSave, before.iptablesSave);
    } finally {
      await quietly("nft delete table inet mbcas_hoststate_test");
      await quietly("nft delete table inet mbcas_hoststate_test_pre");
      for (const cmd of ["iptables", "ip6tables"]) {
        await quietly(`${cmd} -F MBCAS-HST-TEST; ${cmd} -X MBCAS-HST-TEST`);
        await quietly(`${cmd} -F MBCAS-HST-PRE; ${cmd} -X MBCAS-HST-PRE`);
      }
      for (const table of ["ip filter", "ip6 filter"]) {
        if (!originalTables.has(table)) await quietly(`nft delete table ${table}`);
      }
    }
    const end = await snapshotHost();
    assert.equal(end.nftRuleset, original.nftRuleset, "the ruleset is as the test found it");
  },
);

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

requireOrSkip(
  "unmountBelow on this machine: every mount below a directory goes, a point mounted twice too, a mount elsewhere stays",
  NOT_ROOT,
  async () => {
    const tmp = await Deno.makeTempDir({ prefix: "mbcas-unmount-below-" });
    const elsewhere = await Deno.makeTempDir({ prefix: "mbcas-unmount-elsewhere-" });
    const mountsUnder = async (dir: string) =>
      (await Deno.readTextFile("/proc/self/mountinfo")).split("\n")
        .map((l) => l.split(" ")[4]).filter((m) => m !== undefined && m.startsWith(`${dir}/`));
    try {
      for (const d of ["src", "dst/inner", "twice"]) {
        await Deno.mkdir(`${tmp}/${d}`, { recursive: true });
      }
      await sh(`mount --bind '${tmp}/src' '${tmp}/dst'`);
      await Deno.mkdir(`${tmp}/dst/inner`, { recursive: true });
      await sh(`mount --bind '${tmp}/src' '${tmp}/dst/inner'`);
      await sh(`mount -t tmpfs none '${tmp}/twice' && mount -t tmpfs none '${tmp}/twice'`);
      await Deno.mkdir(`${elsewhere}/d`);
      await sh(`mount --bind '${elsewhere}/d' '${elsewhere}/d'`);
      assert.equal((await mountsUnder(tmp)).length, 4, "four mounts below the directory");

      const lines = await unmountBelow(tmp);
      assert.deepEqual(await mountsUnder(tmp), [], lines.join("\n"));
      assert.ok(lines.every((l) => l.startsWith("umount -l ")), lines.join("\n"));
      assert.ok(lines[0].endsWith("/dst/inner"), `deepest first: ${lines.join(", ")}`);
      assert.deepEqual(await mountsUnder(elsewhere), [`${elsewhere}/d`], "a mount elsewhere stays");
      assert.deepEqual(await unmountBelow(tmp), [], "nothing left to do");
    } finally {
      for (const dir of [tmp, elsewhere]) {
        await sh(
          `while m=$(grep -m1 ' ${dir}/' /proc/self/mountinfo | cut -d' ' -f5) && [ -n "$m" ]; do umount -l "$m"; done`,
        );
      }
      await Deno.remove(tmp, { recursive: true });
      await Deno.remove(elsewhere, { recursive: true });
    }
  },
);
