/**
 * Local container images for a real Kubernetes node, built without a
 * container registry or engine: each image is written as a tar of an OCI
 * image layout, ready for `ctr -n k8s.io images import ARCHIVE`. The one
 * step that may use the network is `deno cache --frozen`, which fills the
 * image's Deno cache with the npm packages deno.lock pins (from the npm
 * registry Deno is configured with).
 *
 * - `mbcas.local/pause:1`: the pod sandbox's `/pause` (a static Go program
 *   built by `scripts/build_node.sh`).
 * - `mbcas-controller:local`, `mbcas-agent:local`, `mbcas-lab:local`: one
 *   shared layer with the project's Deno binary (and the glibc it links),
 *   the sources, and a Deno cache filled beforehand. `deno compile` needs the
 *   internet (it downloads its runtime), so these images run the same entry
 *   points with the same permission sets through `deno run --cached-only`.
 *
 * The layer is reproducible (sorted names, owner 0:0, fixed mtime), every
 * file is world-readable, and nothing is written at run time: the images
 * work with `readOnlyRootFilesystem`.
 *
 * @module
 */
import { dirname, join, relative } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { taskParts } from "../config/mod.ts";
import {
  archiveFileName,
  blobPath,
  type Descriptor,
  imageLayoutFiles,
  type ImageSpec,
  layerDescriptor,
  runFlagsFromCompile,
} from "./_oci.ts";

/** An image archive written by {@link buildLocalImages}. */
export interface LocalImage {
  /** The image's name as written in a pod spec. */
  name: string;
  /** Path of the OCI-layout tar. */
  archive: string;
}

/** Options of {@link buildLocalImages}. */
export interface BuildOptions {
  /** Receives one line per step. */
  log?: (line: string) => void;
  /** Build the pause image only (a node needs it for any pod; the Deno images are optional). */
  pauseOnly?: boolean;
}

/** The pod sandbox (pause) image. */
export const PAUSE_IMAGE = "mbcas.local/pause:1";
/** The controller image. */
export const CONTROLLER_IMAGE = "mbcas-controller:local";
/** The node agent image. */
export const AGENT_IMAGE = "mbcas-agent:local";
/** The lab workload image. */
export const LAB_IMAGE = "mbcas-lab:local";

/** The project root. */
export const PROJECT_ROOT: string = new URL("../../", import.meta.url).pathname;
/** Where the Deno cache lives in the Deno images. */
export const IMAGE_DENO_DIR = "/deno-dir";
/** Where the project (deno.json, deno.lock, src/) lives in the Deno images. */
export const IMAGE_APP_DIR = "/app";
/** The nonroot user and group of the Deno images. */
export const NONROOT_ID = 65532;
/** The user of the pause image (as in the upstream pause image). */
export const PAUSE_USER = "65535";
/** Modification time of every file in the layers (the epoch). */
const MTIME = "@0";

/** Environment of the Deno images. */
export const DENO_IMAGE_ENV: readonly string[] = [
  `DENO_DIR=${IMAGE_DENO_DIR}`,
  "DENO_NO_UPDATE_CHECK=1",
  "NO_COLOR=1",
  "PATH=/",
];

/** The lab workload's `deno run` flags (its pod's `args` supply `--kind ...`). */
export const LAB_FLAGS: readonly string[] = [
  "--no-prompt",
  "--cached-only",
  "--allow-write=/results",
  "--allow-read=/results",
];

/** The entry points cached into the Deno images' `/deno-dir`. */
export const CACHED_ENTRIES: readonly string[] = [
  "src/agent/main.ts",
  "src/controller/main.ts",
  "src/lab/workload.ts",
];

/** `${XDG_CACHE_HOME:-$HOME/.cache}/mbcas/node/bin/pause`, built by scripts/build_node.sh. */
export function pauseBinaryPath(): string {
  const cache = Deno.env.get("XDG_CACHE_HOME") ?? `${Deno.env.get("HOME") ?? ""}/.cache`;
  return `${cache}/mbcas/node/bin/pause`;
}

/**
 * The entry point of a Deno image running deno.json's `compile:<task>` as
 * `deno run`: the same flags (permission set, V8 flags) without the
 * compile-only ones, plus `--no-prompt`, `--cached-only` and the project's
 * config.
 */
export function compileTaskEntrypoint(task: string): string[] {
  const { verb, flags, entry } = taskParts(task);
  if (verb !== "compile") throw new Error(`deno.json task ${task} is not a "deno compile" task`);
  return [
    "/deno",
    "run",
    ...runFlagsFromCompile(flags, [`--config=${IMAGE_APP_DIR}/deno.json`]),
    entry,
  ];
}

/** The specs of the three Deno images (controller, agent, lab), from deno.json. */
export function denoImageSpecs(): ImageSpec[] {
  const common = {
    env: [...DENO_IMAGE_ENV],
    user: `${NONROOT_ID}:${NONROOT_ID}`,
    workingDir: IMAGE_APP_DIR,
  };
  return [
    { name: CONTROLLER_IMAGE, entrypoint: compileTaskEntrypoint("compile:controller"), ...common },
    { name: AGENT_IMAGE, entrypoint: compileTaskEntrypoint("compile:agent"), ...common },
    {
      name: LAB_IMAGE,
      entrypoint: ["/deno", "run", ...LAB_FLAGS, "src/lab/workload.ts"],
      ...common,
    },
  ];
}

/** The spec of the pause image. */
export function pauseImageSpec(): ImageSpec {
  return {
    name: PAUSE_IMAGE,
    entrypoint: ["/pause"],
    env: ["PATH=/"],
    user: PAUSE_USER,
    workingDir: "/",
  };
}

/**
 * The shared libraries `ldd` lists for a dynamically linked program, as the
 * paths the loader looks them up at (the dynamic loader included; the vDSO
 * left out).
 */
export function parseLdd(output: string): string[] {
  const paths: string[] = [];
  for (const line of output.split("\n")) {
    const text = line.trim();
    if (text === "" || text.startsWith("linux-vdso") || text.startsWith("linux-gate")) continue;
    const arrow = /^\S+ => (\/\S+) \(0x[0-9a-f]+\)$/.exec(text);
    const bare = /^(\/\S+) \(0x[0-9a-f]+\)$/.exec(text);
    const path = arrow?.[1] ?? bare?.[1];
    if (path === undefined) throw new Error(`unexpected ldd line: ${text}`);
    paths.push(path);
  }
  return paths;
}

/**
 * Builds the images into `outDir` (created if needed), one OCI-layout tar
 * per image: `mbcas.local/pause:1`, `mbcas-controller:local`,
 * `mbcas-agent:local` and `mbcas-lab:local`. Staging trees live in a temp
 * dir removed afterwards.
 */
export async function buildLocalImages(
  outDir: string,
  options: BuildOptions = {},
): Promise<LocalImage[]> {
  const log = options.log ?? (() => {});
  const pause = pauseBinaryPath();
  try {
    const info = await Deno.stat(pause);
    if (!info.isFile) throw new Error("not a file");
  } catch {
    throw new Error(
      `the pause program is missing: ${pause} (build it with scripts/build_node.sh)`,
    );
  }
  await Deno.mkdir(outDir, { recursive: true });
  const work = await Deno.makeTempDir({ prefix: "mbcas-images-" });
  try {
    const images: LocalImage[] = [];

    log(`pause layer from ${pause}`);
    const pauseRoot = join(work, "pause-root");
    await Deno.mkdir(pauseRoot);
    await copyFile(pause, join(pauseRoot, "pause"), 0o755);
    const pauseLayer = await tarLayer(pauseRoot, join(work, "pause-layer.tar"));
    images.push(await writeImage(work, outDir, pauseImageSpec(), pauseLayer, log));
    if (options.pauseOnly) return images;

    const denoRoot = join(work, "deno-root");
    await stageDenoRoot(denoRoot, log);
    log("deno layer: tar");
    const denoLayer = await tarLayer(denoRoot, join(work, "deno-layer.tar"));
    log(`deno layer: ${denoLayer.descriptor.digest} (${mib(denoLayer.descriptor.size)})`);
    await Deno.remove(denoRoot, { recursive: true });
    for (const spec of denoImageSpecs()) {
      images.push(await writeImage(work, outDir, spec, denoLayer, log));
    }
    return images;
  } finally {
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
}

/** A layer tar on disk and its descriptor. */
interface Layer {
  file: string;
  descriptor: Descriptor;
}

/** Fills `root` with the Deno images' file system. */
async function stageDenoRoot(root: string, log: (line: string) => void): Promise<void> {
  const deno = await projectDenoBinary();
  log(`deno layer: ${deno}`);
  await Deno.mkdir(root);
  await copyFile(deno, join(root, "deno"), 0o755);
  const libraries = parseLdd(await output("ldd", [deno]));
  if (!libraries.includes("/lib64/ld-linux-x86-64.so.2")) {
    throw new Error(
      `ldd ${deno} names no /lib64/ld-linux-x86-64.so.2: not an x86-64 glibc program`,
    );
  }
  for (const library of libraries) {
    await copyFile(library, join(root, library), 0o755);
  }
  log(`deno layer: ${libraries.length} shared libraries`);

  const app = join(root, IMAGE_APP_DIR);
  for (const file of ["deno.json", "deno.lock"]) {
    await copyFile(join(PROJECT_ROOT, file), join(app, file), 0o644);
  }
  await copyTree(join(PROJECT_ROOT, "src"), join(app, "src"));

  log(`deno layer: deno cache ${CACHED_ENTRIES.join(" ")}`);
  const denoDir = join(root, IMAGE_DENO_DIR);
  await output(join(PROJECT_ROOT, "scripts/deno"), ["cache", "--frozen", ...CACHED_ENTRIES], {
    cwd: PROJECT_ROOT,
    env: { DENO_DIR: denoDir, DENO_NO_UPDATE_CHECK: "1", NO_COLOR: "1" },
  });
  await relocateEmitCache(denoDir);
  await normalizeCaches(denoDir);

  await writeText(
    join(root, "etc/passwd"),
    `root:x:0:0:root:/root:/sbin/nologin\n` +
      `nonroot:x:${NONROOT_ID}:${NONROOT_ID}:nonroot:/home/nonroot:/sbin/nologin\n`,
  );
  await writeText(join(root, "etc/group"), `root:x:0:\nnonroot:x:${NONROOT_ID}:\n`);
  // mount points the runtime covers (runc creates them too; a chroot needs them)
  for (const dir of ["home/nonroot", "root", "proc", "sys", "dev"]) {
    await Deno.mkdir(join(root, dir), { recursive: true });
  }
  await Deno.mkdir(join(root, "tmp"));
  await Deno.chmod(join(root, "tmp"), 0o1777);
}

/**
 * Deno keys its transpiled-module cache (`gen/file/<absolute path>.js`) by
 * the module's path; the sources were cached from the project's directory
 * but live at /app in the image, so move their entries there.
 */
async function relocateEmitCache(denoDir: string): Promise<void> {
  const from = join(denoDir, "gen/file", PROJECT_ROOT);
  const to = join(denoDir, "gen/file", IMAGE_APP_DIR);
  try {
    await Deno.stat(from);
  } catch {
    return; // nothing emitted (or a newer cache layout): Deno transpiles at start
  }
  await Deno.mkdir(dirname(to), { recursive: true });
  await Deno.rename(from, to);
  // drop the now empty parents of the project's path
  let dir = dirname(from);
  while (dir.length > join(denoDir, "gen/file").length) {
    try {
      await Deno.remove(dir);
    } catch {
      break;
    }
    dir = dirname(dir);
  }
}

/**
 * Rewrites Deno's SQLite caches (`*_cache_v2`) for the image: module
 * specifiers under the project (`file:///…/main/src/…`) are moved to /app,
 * where the image has the sources (the cached analyses are keyed by path and
 * checked by source hash, so they stay valid); rows are sorted, and each
 * database is rewritten as one self-contained file (no write-ahead log,
 * rollback journal mode) with the same bytes from one build to the next. A
 * WAL database left by `deno cache` would differ on every build, and a
 * read-only file system reads a plain database best.
 */
async function normalizeCaches(denoDir: string): Promise<void> {
  const projectUrl = `file://${PROJECT_ROOT.endsWith("/") ? PROJECT_ROOT : `${PROJECT_ROOT}/`}`;
  const imageUrl = `file://${IMAGE_APP_DIR}/`;
  for await (const entry of Deno.readDir(denoDir)) {
    if (!entry.isFile || !/_v\d+$/.test(entry.name)) continue;
    const path = join(denoDir, entry.name);
    const fresh = `${path}.fresh`;
    const db = new DatabaseSync(path);
    try {
      db.exec("PRAGMA wal_checkpoint(TRUNCATE); PRAGMA journal_mode=DELETE;");
      const tables = db.prepare(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
      ).all().map((row) => String(row.name));
      db.exec("BEGIN");
      for (const table of tables) {
        const quoted = `"${table.replaceAll('"', '""')}"`;
        const columns = db.prepare(`PRAGMA table_info(${quoted})`).all().map((c) => String(c.name));
        if (columns.includes("specifier")) {
          db.prepare(
            `UPDATE ${quoted} SET specifier = ? || substr(specifier, ?) WHERE substr(specifier, 1, ?) = ?`,
          ).run(imageUrl, projectUrl.length + 1, projectUrl.length, projectUrl);
        }
        const order = columns.map((_, i) => i + 1).join(", ");
        db.exec(
          `CREATE TEMP TABLE mbcas_sorted AS SELECT * FROM ${quoted} ORDER BY ${order};` +
            `DELETE FROM ${quoted};` +
            `INSERT INTO ${quoted} SELECT * FROM mbcas_sorted ORDER BY ${order};` +
            "DROP TABLE mbcas_sorted;",
        );
      }
      db.exec("COMMIT");
      db.prepare("VACUUM INTO ?").run(fresh);
    } finally {
      db.close();
    }
    await Deno.rename(fresh, path);
  }
  for await (const entry of Deno.readDir(denoDir)) {
    if (/-(wal|shm|journal)$/.test(entry.name)) await Deno.remove(join(denoDir, entry.name));
  }
}

/** The real file behind ./scripts/deno (installing it if needed). */
async function projectDenoBinary(): Promise<string> {
  const script = join(PROJECT_ROOT, "scripts/deno");
  const path = (await output(script, ["eval", "console.log(Deno.execPath())"])).trim();
  if (!path.startsWith("/")) throw new Error(`${script} reported no executable path: ${path}`);
  return await Deno.realPath(path);
}

/** Writes the OCI layout of `spec` over `layer` and tars it into `outDir`. */
async function writeImage(
  work: string,
  outDir: string,
  spec: ImageSpec,
  layer: Layer,
  log: (line: string) => void,
): Promise<LocalImage> {
  const layout = await Deno.makeTempDir({ dir: work, prefix: "layout-" });
  for (const file of imageLayoutFiles(spec, layer.descriptor)) {
    await Deno.mkdir(join(layout, dirname(file.path)), { recursive: true });
    await Deno.writeFile(join(layout, file.path), file.bytes, { mode: 0o644 });
  }
  const blob = join(layout, blobPath(layer.descriptor.digest));
  await Deno.mkdir(dirname(blob), { recursive: true });
  await Deno.link(layer.file, blob);
  const archive = join(outDir, archiveFileName(spec.name));
  const partial = `${archive}.partial`;
  try {
    await output("tar", [
      ...TAR_FLAGS,
      "--file",
      partial,
      "--directory",
      layout,
      "oci-layout",
      "index.json",
      "blobs",
    ]);
    await Deno.rename(partial, archive);
  } catch (error) {
    await Deno.remove(partial).catch(() => {});
    throw error;
  }
  await Deno.remove(layout, { recursive: true });
  log(`${spec.name}: ${archive}`);
  return { name: spec.name, archive };
}

/** Flags of every tar written: reproducible, owned by root, world-readable. */
const TAR_FLAGS = [
  "--create",
  "--format=gnu",
  "--sort=name",
  "--owner=0",
  "--group=0",
  "--numeric-owner",
  "--mode=a+rX",
  `--mtime=${MTIME}`,
  "--hard-dereference",
];

/** Tars `root` (its entries, without a leading `./`) into `file` and hashes it. */
async function tarLayer(root: string, file: string): Promise<Layer> {
  const entries: string[] = [];
  for await (const entry of Deno.readDir(root)) entries.push(entry.name);
  entries.sort();
  await output("tar", [...TAR_FLAGS, "--file", file, "--directory", root, "--", ...entries]);
  const digest = await sha256File(file);
  const { size } = await Deno.stat(file);
  return { file, descriptor: layerDescriptor(digest, size) };
}

/** `sha256:<hex>` of a file, by sha256sum. */
export async function sha256File(file: string): Promise<string> {
  const hex = (await output("sha256sum", ["--binary", file])).split(" ")[0];
  if (!/^[0-9a-f]{64}$/.test(hex)) throw new Error(`sha256sum ${file}: unexpected output`);
  return `sha256:${hex}`;
}

/** Copies a file (following symlinks) and sets its mode; creates the parents. */
async function copyFile(from: string, to: string, mode: number): Promise<void> {
  await Deno.mkdir(dirname(to), { recursive: true });
  await Deno.copyFile(from, to);
  await Deno.chmod(to, mode);
}

/** Copies a directory tree of regular files (following symlinks). */
async function copyTree(from: string, to: string): Promise<void> {
  await Deno.mkdir(to, { recursive: true });
  for await (const entry of Deno.readDir(from)) {
    const source = join(from, entry.name);
    const info = await Deno.stat(source);
    if (info.isDirectory) await copyTree(source, join(to, entry.name));
    else if (info.isFile) await copyFile(source, join(to, entry.name), 0o644);
    else throw new Error(`not a file or directory: ${relative(PROJECT_ROOT, source)}`);
  }
}

/** Writes a text file (mode 0644), creating its parents. */
async function writeText(path: string, text: string): Promise<void> {
  await Deno.mkdir(dirname(path), { recursive: true });
  await Deno.writeTextFile(path, text, { mode: 0o644 });
}

/** Runs a program; returns its stdout, or throws with its stderr. */
async function output(
  command: string,
  args: string[],
  options: { cwd?: string; env?: Record<string, string> } = {},
): Promise<string> {
  let result: Deno.CommandOutput;
  try {
    result = await new Deno.Command(command, {
      args,
      cwd: options.cwd,
      env: options.env,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
  } catch (error) {
    throw new Error(`cannot run ${command}: ${(error as Error).message}`);
  }
  if (!result.success) {
    const stderr = new TextDecoder().decode(result.stderr).trim();
    throw new Error(`${command} ${args.join(" ")} failed (exit ${result.code}): ${stderr}`);
  }
  return new TextDecoder().decode(result.stdout);
}

function mib(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}
