/**
 * Local OCI images (src/cluster/images.ts, src/cluster/_oci.ts): the pure
 * JSON builders and flag rewriting, then a real build of the four archives,
 * checked the way containerd reads them (index → manifest → config → layer
 * digests and sizes), and, as root, the images' programs run from the
 * extracted layers in a read-only root as their non-root users.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  AGENT_IMAGE,
  buildLocalImages,
  compileTaskEntrypoint,
  CONTROLLER_IMAGE,
  denoImageSpecs,
  LAB_IMAGE,
  type LocalImage,
  parseLdd,
  PAUSE_IMAGE,
  pauseBinaryPath,
  sha256File,
} from "../../src/cluster/images.ts";
import {
  archiveFileName,
  blobPath,
  CONFIG_MEDIA_TYPE,
  CONTAINERD_NAME_ANNOTATION,
  type Descriptor,
  type ImageConfig,
  type ImageIndex,
  imageLayoutFiles,
  type ImageManifest,
  imageTag,
  INDEX_MEDIA_TYPE,
  LAYER_MEDIA_TYPE,
  layerDescriptor,
  MANIFEST_MEDIA_TYPE,
  normalizeImageName,
  REF_NAME_ANNOTATION,
  runFlagsFromCompile,
  sha256Digest,
} from "../../src/cluster/_oci.ts";
import { taskParts } from "../../src/config/mod.ts";
import { IN_CI, requireOrSkip } from "../_support/requirements.ts";

const ROOT = new URL("../../", import.meta.url).pathname;

/** Why the node binaries (the pause program) are not there, or null. */
function nodeBinariesMissing(): string | null {
  try {
    Deno.statSync(pauseBinaryPath());
    return null;
  } catch {
    return `no pause program at ${pauseBinaryPath()} (run scripts/build_node.sh)`;
  }
}

/** Why the read-only runs cannot be done here (they need root), or null. */
function rootMissing(): string | null {
  return Deno.uid() === 0 ? null : "not root: the read-only runs need mount namespaces and chroot";
}

interface Output {
  code: number;
  stdout: string;
  stderr: string;
}

async function run(
  command: string,
  args: string[],
  options: { env?: Record<string, string>; clearEnv?: boolean; timeoutMs?: number } = {},
): Promise<Output> {
  const result = await new Deno.Command(command, {
    args,
    env: options.env,
    clearEnv: options.clearEnv,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(options.timeoutMs ?? 60_000),
  }).output();
  return {
    code: result.code,
    stdout: new TextDecoder().decode(result.stdout),
    stderr: new TextDecoder().decode(result.stderr),
  };
}

async function ok(command: string, args: string[]): Promise<string> {
  const result = await run(command, args);
  assert.equal(result.code, 0, `${command} ${args.join(" ")}: ${result.stderr}`);
  return result.stdout;
}

// --- pure ------------------------------------------------------------------

Deno.test("normalizeImageName: the names containerd's CRI plugin (and so the kubelet) uses", () => {
  assert.equal(normalizeImageName("mbcas-agent:local"), "docker.io/library/mbcas-agent:local");
  assert.equal(normalizeImageName("mbcas.local/pause:1"), "mbcas.local/pause:1");
  assert.equal(normalizeImageName("busybox"), "docker.io/library/busybox:latest");
  assert.equal(normalizeImageName("someone/tool:2"), "docker.io/someone/tool:2");
  assert.equal(normalizeImageName("localhost/x:1"), "localhost/x:1");
  assert.equal(normalizeImageName("localhost:5000/x"), "localhost:5000/x:latest");
  assert.equal(normalizeImageName("index.docker.io/a/b:c"), "docker.io/a/b:c");
  assert.throws(() => normalizeImageName("Upper:1"), /invalid image name/);
  assert.equal(imageTag("mbcas-agent:local"), "local");
  assert.equal(imageTag("localhost:5000/x"), "latest");
  assert.equal(archiveFileName("mbcas.local/pause:1"), "mbcas.local_pause_1.tar");
});

Deno.test("imageLayoutFiles: config, manifest and index reference each other by digest and size", () => {
  const layer = layerDescriptor(sha256Digest(new Uint8Array([1, 2, 3])), 3);
  const files = imageLayoutFiles({
    name: "mbcas-agent:local",
    entrypoint: ["/deno", "run", "x.ts"],
    env: ["A=1"],
    user: "65532:65532",
    workingDir: "/app",
  }, layer);
  const byPath = new Map(files.map((f) => [f.path, f.bytes]));
  const json = (path: string) => JSON.parse(new TextDecoder().decode(byPath.get(path)));
  assert.deepEqual(json("oci-layout"), { imageLayoutVersion: "1.0.0" });
  const index: ImageIndex = json("index.json");
  assert.equal(index.mediaType, INDEX_MEDIA_TYPE);
  assert.equal(index.manifests.length, 1);
  const m = index.manifests[0];
  assert.equal(m.annotations?.[CONTAINERD_NAME_ANNOTATION], "docker.io/library/mbcas-agent:local");
  assert.equal(m.annotations?.[REF_NAME_ANNOTATION], "local");
  const manifestBytes = byPath.get(blobPath(m.digest))!;
  assert.equal(sha256Digest(manifestBytes), m.digest);
  assert.equal(manifestBytes.length, m.size);
  const manifest: ImageManifest = json(blobPath(m.digest));
  assert.equal(manifest.mediaType, MANIFEST_MEDIA_TYPE);
  assert.deepEqual(manifest.layers, [layer]);
  const configBytes = byPath.get(blobPath(manifest.config.digest))!;
  assert.equal(sha256Digest(configBytes), manifest.config.digest);
  const config: ImageConfig = json(blobPath(manifest.config.digest));
  assert.deepEqual(config.rootfs.diff_ids, [layer.digest]);
  assert.equal(config.architecture, "amd64");
  assert.equal(config.config.User, "65532:65532");
  assert.equal("Cmd" in config.config, false);
  assert.throws(() => blobPath("sha256:xyz"), /not a sha256 digest/);
});

Deno.test("runFlagsFromCompile: drops the compile-only flags, adds --no-prompt and --cached-only", () => {
  assert.deepEqual(
    runFlagsFromCompile(["--no-check", "-P=agent", "--v8-flags=--a", "--output", "dist/x"]),
    ["-P=agent", "--v8-flags=--a", "--no-prompt", "--cached-only"],
  );
  assert.deepEqual(
    runFlagsFromCompile(["--no-prompt", "--output=dist/x", "-o", "y", "--no-check=remote"], [
      "--config=/app/deno.json",
    ]),
    ["--no-prompt", "--cached-only", "--config=/app/deno.json"],
  );
});

Deno.test("parseLdd: library paths and the loader, not the vDSO", () => {
  const out = [
    "\tlinux-vdso.so.1 (0x00007ffd)",
    "\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f43)",
    "\t/lib64/ld-linux-x86-64.so.2 (0x00007f43)",
    "",
  ].join("\n");
  assert.deepEqual(parseLdd(out), [
    "/lib/x86_64-linux-gnu/libc.so.6",
    "/lib64/ld-linux-x86-64.so.2",
  ]);
  assert.throws(() => parseLdd("\tlibfoo.so => not found"), /unexpected ldd line/);
});

Deno.test("controller and agent entry points: deno.json's compile tasks as deno run", () => {
  for (
    const [task, image] of [["compile:controller", CONTROLLER_IMAGE], [
      "compile:agent",
      AGENT_IMAGE,
    ]]
  ) {
    const { flags, entry } = taskParts(task);
    const entrypoint = compileTaskEntrypoint(task);
    assert.deepEqual(entrypoint.slice(0, 2), ["/deno", "run"]);
    assert.equal(entrypoint.at(-1), entry);
    for (const flag of flags.filter((f) => f.startsWith("-P=") || f.startsWith("--v8-flags="))) {
      assert.ok(entrypoint.includes(flag), `${image} lacks ${flag}`);
    }
    for (const flag of ["--no-prompt", "--cached-only", "--config=/app/deno.json"]) {
      assert.ok(entrypoint.includes(flag), `${image} lacks ${flag}`);
    }
    assert.ok(!entrypoint.includes("--no-check") && !entrypoint.includes("--output"));
    assert.deepEqual(denoImageSpecs().find((s) => s.name === image)?.entrypoint, entrypoint);
  }
});

Deno.test("buildLocalImages: a missing pause program is an error naming the path and the script", async () => {
  const cache = await Deno.makeTempDir({ prefix: "mbcas-images-nocache-" });
  const saved = Deno.env.get("XDG_CACHE_HOME");
  Deno.env.set("XDG_CACHE_HOME", cache);
  try {
    await assert.rejects(
      buildLocalImages(join(cache, "out")),
      (error: Error) =>
        error.message.includes(`${cache}/mbcas/node/bin/pause`) &&
        error.message.includes("scripts/build_node.sh"),
    );
    assert.throws(() => compileTaskEntrypoint("agent"), /not a "deno compile" task/);
  } finally {
    if (saved === undefined) Deno.env.delete("XDG_CACHE_HOME");
    else Deno.env.set("XDG_CACHE_HOME", saved);
    await Deno.remove(cache, { recursive: true });
  }
});

// --- a real build ---------------------------------------------------------------

interface Layout {
  image: LocalImage;
  index: ImageIndex;
  manifest: ImageManifest;
  config: ImageConfig;
  /** The layer blob's path in the extracted layout. */
  layer: string;
}

/** Extracts an archive into `dir` and checks it as containerd's importer reads it. */
async function checkLayout(image: LocalImage, dir: string): Promise<Layout> {
  await Deno.mkdir(dir, { recursive: true });
  await ok("tar", ["-xf", image.archive, "-C", dir]);
  const readJson = async (path: string) => JSON.parse(await Deno.readTextFile(join(dir, path)));
  assert.deepEqual(await readJson("oci-layout"), { imageLayoutVersion: "1.0.0" });
  const index: ImageIndex = await readJson("index.json");
  assert.equal(index.schemaVersion, 2);
  assert.equal(index.manifests.length, 1);
  const checkBlob = async (d: Descriptor, mediaType: string) => {
    assert.equal(d.mediaType, mediaType);
    const path = join(dir, blobPath(d.digest));
    assert.equal((await Deno.stat(path)).size, d.size, `${image.name}: size of ${d.digest}`);
    assert.equal(await sha256File(path), d.digest, `${image.name}: digest of ${path}`);
    return path;
  };
  const m = index.manifests[0];
  await checkBlob(m, MANIFEST_MEDIA_TYPE);
  assert.deepEqual(m.platform, { architecture: "amd64", os: "linux" });
  assert.deepEqual(m.annotations, {
    [CONTAINERD_NAME_ANNOTATION]: normalizeImageName(image.name),
    [REF_NAME_ANNOTATION]: imageTag(image.name),
  });
  const manifest: ImageManifest = await readJson(blobPath(m.digest));
  assert.equal(manifest.schemaVersion, 2);
  assert.equal(manifest.mediaType, MANIFEST_MEDIA_TYPE);
  await checkBlob(manifest.config, CONFIG_MEDIA_TYPE);
  assert.equal(manifest.layers.length, 1);
  const layer = await checkBlob(manifest.layers[0], LAYER_MEDIA_TYPE);
  const config: ImageConfig = await readJson(blobPath(manifest.config.digest));
  assert.equal(config.architecture, "amd64");
  assert.equal(config.os, "linux");
  assert.deepEqual(config.rootfs, { type: "layers", diff_ids: [manifest.layers[0].digest] });
  // only the layout's files: nothing containerd would ingest for nothing
  const blobs = [...Deno.readDirSync(join(dir, "blobs/sha256"))].map((e) => `sha256:${e.name}`);
  assert.deepEqual(
    blobs.sort(),
    [m.digest, manifest.config.digest, manifest.layers[0].digest].sort(),
  );
  return { image, index, manifest, config, layer };
}

/** A layer's entries as `tar -tv` lists them: mode, owner, type, name. */
async function layerEntries(
  layer: string,
): Promise<{ mode: string; owner: string; name: string }[]> {
  const listing = await ok("tar", ["--numeric-owner", "-tvf", layer]);
  return listing.trim().split("\n").map((line) => {
    const [mode, owner, , , , ...rest] = line.split(/\s+/);
    return { mode, owner, name: rest.join(" ").replace(/\/$/, "") };
  });
}

/** The npm packages of deno.json's import map, as `name@version`. */
function npmImports(): { name: string; version: string }[] {
  const config = JSON.parse(Deno.readTextFileSync(join(ROOT, "deno.json")));
  return Object.values(config.imports as Record<string, string>)
    .map((spec) => /^npm:(@?[^@]+)@(.+)$/.exec(spec))
    .filter((m) => m !== null)
    .map((m) => ({ name: m![1], version: m![2] }));
}

/**
 * Runs `argv` (an image's Entrypoint plus arguments) from `rootfs` in a
 * private mount namespace: the root bind-mounted read-only, a tmpfs on
 * /tmp, /proc and /dev as a runtime provides them, then chroot and chdir to
 * the image's WorkingDir as its User, with exactly the image's Env. The
 * mounts live and die with the namespace (its one process execs the
 * program), so none outlives the run, whatever happens.
 */
function runReadOnly(rootfs: string, config: ImageConfig, args: string[]): Promise<Output> {
  const [uid, gid] = config.config.User.split(":");
  const script = [
    "set -eu",
    'R="$1"; shift',
    'mount --bind "$R" "$R"',
    'mount -o remount,bind,ro "$R"',
    'mount -t tmpfs -o mode=1777 tmpfs "$R/tmp"',
    'mount -t proc proc "$R/proc"',
    'mount --rbind /dev "$R/dev"',
    'if touch "$R/app/.writable" 2>/dev/null; then echo "root file system is writable" >&2; exit 90; fi',
    `exec /usr/bin/env -i ${config.config.Env.map((e) => `'${e}'`).join(" ")} ` +
    `/usr/bin/unshare --root="$R" --wd='${config.config.WorkingDir}' ` +
    `--setuid ${uid} --setgid ${gid ?? uid} "$@"`,
  ].join("\n");
  return run("unshare", [
    "--mount",
    "--propagation",
    "private",
    "/bin/sh",
    "-c",
    script,
    "sh",
    rootfs,
    ...config.config.Entrypoint,
    ...args,
  ]);
}

/** Registers a step that needs root: skipped loudly locally, failing in CI. */
async function rootStep(
  t: Deno.TestContext,
  name: string,
  fn: () => Promise<void>,
): Promise<void> {
  const missing = rootMissing();
  if (missing !== null && !IN_CI) {
    console.error(`\n!!! SKIPPING "${name}": ${missing} (runs, and must pass, in CI)\n`);
    await t.step({ name, ignore: true, fn });
    return;
  }
  await t.step(name, async () => {
    if (missing !== null) throw new Error(`requirement not met in CI: ${missing}`);
    await fn();
  });
}

/** Mount points under `dir` in this (the test's) mount namespace. */
function mountsUnder(dir: string): string[] {
  return Deno.readTextFileSync("/proc/self/mountinfo").split("\n")
    .map((line) => line.split(" ")[4])
    .filter((point) => point !== undefined && point.startsWith(dir));
}

requireOrSkip(
  "buildLocalImages: four OCI archives containerd can import; the Deno images run read-only",
  nodeBinariesMissing(),
  async (t) => {
    const out = await Deno.makeTempDir({ prefix: "mbcas-images-test-" });
    try {
      const started = performance.now();
      const lines: string[] = [];
      const images = await buildLocalImages(join(out, "archives"), {
        log: (line) => lines.push(line),
      });
      const seconds = (performance.now() - started) / 1000;
      console.log(`built ${images.length} images in ${seconds.toFixed(1)} s`);
      assert.ok(lines.length > 0);

      await t.step("names and archive files", () => {
        assert.deepEqual(images.map((i) => i.name), [
          PAUSE_IMAGE,
          CONTROLLER_IMAGE,
          AGENT_IMAGE,
          LAB_IMAGE,
        ]);
        for (const image of images) {
          assert.equal(image.archive, join(out, "archives", archiveFileName(image.name)));
          console.log(
            `${image.name}: ${(Deno.statSync(image.archive).size / 2 ** 20).toFixed(1)} MiB`,
          );
        }
      });

      const layouts = new Map<string, Layout>();
      await t.step(
        "every archive is a valid OCI layout (index → manifest → config → layer)",
        async () => {
          for (const [i, image] of images.entries()) {
            layouts.set(image.name, await checkLayout(image, join(out, `layout-${i}`)));
          }
        },
      );
      const pause = layouts.get(PAUSE_IMAGE)!;
      const deno = [CONTROLLER_IMAGE, AGENT_IMAGE, LAB_IMAGE].map((n) => layouts.get(n)!);

      await t.step("image configs: entry points, users, environment", () => {
        assert.deepEqual(pause.config.config.Entrypoint, ["/pause"]);
        assert.equal(pause.config.config.User, "65535");
        for (const { image, config } of deno) {
          assert.equal(config.config.User, "65532:65532");
          assert.equal(config.config.WorkingDir, "/app");
          assert.deepEqual(config.config.Env, [
            "DENO_DIR=/deno-dir",
            "DENO_NO_UPDATE_CHECK=1",
            "NO_COLOR=1",
            "PATH=/",
          ]);
          assert.equal("Cmd" in config.config, false, image.name);
        }
        for (
          const [layout, task] of [[deno[0], "compile:controller"], [
            deno[1],
            "compile:agent",
          ]] as const
        ) {
          const entrypoint = layout.config.config.Entrypoint;
          const { flags, entry } = taskParts(task);
          assert.deepEqual(entrypoint.slice(0, 2), ["/deno", "run"]);
          assert.equal(entrypoint.at(-1), entry);
          const sets = (words: string[]) =>
            words.filter((w) => w.startsWith("-P=") || w.startsWith("--v8-flags="));
          assert.deepEqual(sets(entrypoint), sets(flags), layout.image.name);
          assert.equal(sets(flags).length, 2, `${task}: -P= and --v8-flags`);
          assert.ok(entrypoint.includes("--cached-only") && entrypoint.includes("--no-prompt"));
          assert.ok(!entrypoint.some((w) => w.startsWith("--output") || w === "--no-check"));
        }
        assert.deepEqual(deno[2].config.config.Entrypoint, [
          "/deno",
          "run",
          "--no-prompt",
          "--cached-only",
          "--allow-write=/results",
          "--allow-read=/results",
          "src/lab/workload.ts",
        ]);
      });

      await t.step("the Deno images share one layer; the pause layer is /pause alone", async () => {
        const digests = new Set(deno.map((l) => l.manifest.layers[0].digest));
        assert.equal(digests.size, 1);
        const entries = await layerEntries(pause.layer);
        assert.deepEqual(entries.map((e) => [e.mode, e.owner, e.name]), [[
          "-rwxr-xr-x",
          "0/0",
          "pause",
        ]]);
      });

      await t.step(
        "the Deno layer: /deno, its libraries, /app, a Deno cache, all world-readable",
        async () => {
          const entries = await layerEntries(deno[0].layer);
          const byName = new Map(entries.map((e) => [e.name, e]));
          for (const e of entries) {
            assert.equal(e.owner, "0/0", e.name);
            assert.match(e.mode, /^[-d]/, `${e.name}: only files and directories (${e.mode})`);
            assert.equal(e.mode[7], "r", `${e.name} is not world-readable (${e.mode})`);
            if (e.mode.startsWith("d")) assert.match(e.mode[9], /[xt]/, `${e.name} (${e.mode})`);
          }
          const need = [
            "deno",
            "lib64/ld-linux-x86-64.so.2",
            "app/deno.json",
            "app/deno.lock",
            "app/src/agent/main.ts",
            "app/src/controller/main.ts",
            "app/src/lab/workload.ts",
            "deno-dir/dep_analysis_cache_v2",
            "deno-dir/gen/file/app/src/agent/main.ts.js",
            "etc/passwd",
            "etc/group",
            ...npmImports().map((p) =>
              `deno-dir/npm/registry.npmjs.org/${p.name}/${p.version}/package.json`
            ),
          ];
          for (const name of need) assert.ok(byName.has(name), `layer lacks /${name}`);
          assert.equal(byName.get("deno")!.mode, "-rwxr-xr-x");
          assert.equal(byName.get("tmp")!.mode, "drwxrwxrwt");
          assert.ok(
            !entries.some((e) => /-(wal|shm)$/.test(e.name)),
            "SQLite WAL left in the cache",
          );
          // libraries at the paths ldd names
          const real =
            (await ok(join(ROOT, "scripts/deno"), ["eval", "console.log(Deno.execPath())"]))
              .trim();
          for (const lib of parseLdd(await ok("ldd", [real]))) {
            assert.equal(byName.get(lib.slice(1))?.mode[0], "-", `layer lacks the file ${lib}`);
          }
        },
      );

      await rootStep(t, "read-only root as 65532: the lab workload prints its help", async () => {
        const rootfs = join(out, "rootfs");
        await Deno.mkdir(rootfs);
        await ok("tar", ["-xf", deno[2].layer, "-C", rootfs]);
        try {
          const passwd = await Deno.readTextFile(join(rootfs, "etc/passwd"));
          assert.match(passwd, /^nonroot:x:65532:65532:/m);
          const help = await runReadOnly(rootfs, deno[2].config, ["--help"]);
          assert.equal(help.code, 0, `stdout: ${help.stdout}\nstderr: ${help.stderr}`);
          assert.match(help.stdout, /src\/lab\/workload\.ts --kind KIND --out OUT/);
          assert.doesNotMatch(help.stderr, /error|panicked/i);

          // the agent and controller load their npm dependencies from the
          // read-only cache under their permission sets and stop at the
          // missing cluster credentials (exit 2, their own message)
          for (
            const [layout, prefix] of [[deno[1], "mbcas-agent:"], [
              deno[0],
              "mbcas-controller:",
            ]] as const
          ) {
            const args = layout === deno[1] ? ["--node-name", "n1"] : [];
            const result = await runReadOnly(rootfs, layout.config, args);
            assert.equal(result.code, 2, `${layout.image.name}: ${result.stdout}${result.stderr}`);
            assert.match(result.stderr, new RegExp(`^${prefix} kubeconfig`, "m"));
            assert.doesNotMatch(result.stderr, /^error:|panicked|not found in cache/m);
          }
        } finally {
          assert.deepEqual(mountsUnder(out), [], "mounts outlived their namespace");
        }
      });

      await rootStep(t, "the pause program runs as 65535 and exits on SIGTERM", async () => {
        const rootfs = join(out, "pause-root");
        await Deno.mkdir(rootfs);
        await ok("tar", ["-xf", pause.layer, "-C", rootfs]);
        const child = new Deno.Command("unshare", {
          args: [`--root=${rootfs}`, "--setuid", "65535", "--setgid", "65535", "/pause"],
          clearEnv: true,
          stdout: "null",
          stderr: "piped",
        }).spawn();
        let status: Deno.CommandOutput;
        try {
          await new Promise((resolve) => setTimeout(resolve, 500));
        } finally {
          child.kill("SIGTERM");
          status = await child.output();
        }
        assert.equal(status.code, 0, new TextDecoder().decode(status.stderr));
      });
    } finally {
      await Deno.remove(out, { recursive: true });
    }
  },
);
