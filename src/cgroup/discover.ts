/**
 * Discovery: finds the kubelet's pod and container cgroups by scanning
 * directory names under a cgroup root. It reports what is there, and what it
 * could not classify; it never guesses paths.
 *
 * @module
 */
import { join } from "node:path";
import { parseSingleInteger, PRESSURE_FILE, weightToShares } from "./_files.ts";
import {
  helperReason,
  isKubepodsRoot,
  parseContainerName,
  parsePodName,
  qosDirectory,
  statusContainerID,
} from "./_names.ts";
import type {
  CgroupLayout,
  ContainerCgroup,
  Discovery,
  PodCgroup,
  QosClass,
  Unclassified,
} from "./types.ts";

/** The cgroup root does not exist or is not a cgroup mount this module can read. */
export class CgroupRootError extends Error {
  /** Creates the error; the message names the root and what is wrong with it. */
  constructor(message: string) {
    super(message);
    this.name = "CgroupRootError";
  }
}

/** The smallest CPU shares a cgroup can have: what runtimes give the sandbox (and BestEffort). */
const MIN_SHARES = 2;

/**
 * Finds which hierarchies hold the CPU counters under `root`: a v2 unified
 * mount, a v1 mount root with `cpu`/`cpuacct` (separate or joined as
 * `cpu,cpuacct`), or a hybrid of v1 controllers with a v2 `unified` mount
 * (used for PSI when the v1 `cpu` hierarchy has none).
 *
 * @throws {CgroupRootError} when `root` is missing or not such a mount.
 */
export function detectLayout(root: string): CgroupLayout {
  if (!isDirectory(root)) {
    throw new CgroupRootError(`cgroup root ${root} does not exist or is not a directory`);
  }
  if (isFile(join(root, "cgroup.controllers"))) {
    return { root, version: 2, cpuDir: root, cpuacctDir: root, psiDir: root };
  }
  const cpuDir = [join(root, "cpu,cpuacct"), join(root, "cpu"), root].find((dir) =>
    isFile(join(dir, "cpu.shares"))
  );
  const cpuacctDir = [join(root, "cpu,cpuacct"), join(root, "cpuacct"), root].find((dir) =>
    isFile(join(dir, "cpuacct.usage"))
  );
  if (cpuDir === undefined || cpuacctDir === undefined) {
    throw new CgroupRootError(
      `cgroup root ${root} is not a cgroup mount: no cgroup.controllers (v2) and no cpu and cpuacct hierarchies (v1)`,
    );
  }
  const unified = join(root, "unified");
  const psiDir = isFile(join(cpuDir, PRESSURE_FILE))
    ? cpuDir
    : isFile(join(unified, "cgroup.controllers"))
    ? unified
    : null;
  return { root, version: 1, cpuDir, cpuacctDir, psiDir };
}

/** Options for {@link discover}. */
export interface DiscoverOptions {
  /**
   * Bare ids of the containers the API lists in pod status. When given, every
   * other container cgroup under a pod is marked as the sandbox.
   */
  knownContainerIDs?: ReadonlySet<string>;
  /** How deep below the root to look for kubelet trees (default 4: covers kind and `--cgroup-root`). */
  maxDepth?: number;
}

/** Scans the CPU hierarchy for kubelet trees, their pods and containers. */
export function discover(layout: CgroupLayout, options: DiscoverOptions = {}): Discovery {
  const base = layout.cpuDir;
  const kubepodsRoots = findKubepodsRoots(base, options.maxDepth ?? 4);
  const pods: PodCgroup[] = [];
  const unclassified: Unclassified[] = [];
  for (const rootPath of kubepodsRoots) {
    for (const name of subdirectories(join(base, rootPath))) {
      const path = `${rootPath}/${name}`;
      const qos = qosDirectory(name);
      if (qos !== null) {
        for (const podName of subdirectories(join(base, path))) {
          const pod = readPod(base, `${path}/${podName}`, podName, qos, unclassified);
          if (pod !== null) pods.push(pod);
          else {unclassified.push({
              relativePath: `${path}/${podName}`,
              reason: `not a pod cgroup under the ${qos} QoS cgroup`,
            });}
        }
        continue;
      }
      const pod = readPod(base, path, name, "guaranteed", unclassified);
      if (pod !== null) pods.push(pod);
      else {unclassified.push({
          relativePath: path,
          reason: "neither a QoS class nor a pod cgroup",
        });}
    }
  }
  for (const pod of pods) markSandbox(base, pod, options.knownContainerIDs);
  return { layout, kubepodsRoots, pods, unclassified };
}

function readPod(
  base: string,
  path: string,
  name: string,
  parentQos: QosClass,
  unclassified: Unclassified[],
): PodCgroup | null {
  const parsed = parsePodName(name);
  if (parsed === null) return null;
  const qos = parsed.qos ?? parentQos;
  const pod: PodCgroup = {
    podUID: parsed.uid,
    qos,
    driver: parsed.driver,
    relativePath: path,
    containers: [],
  };
  for (const child of subdirectories(join(base, path))) {
    const container = parseContainerName(child);
    const childPath = `${path}/${child}`;
    if (container === null) {
      unclassified.push({
        relativePath: childPath,
        reason: helperReason(child) ?? "not a container cgroup (unknown name format)",
      });
      continue;
    }
    const entry: ContainerCgroup = {
      podUID: parsed.uid,
      qos,
      driver: parsed.driver,
      id: container.id,
      containerID: statusContainerID(container.runtime, container.id),
      runtime: container.runtime,
      relativePath: childPath,
      sandbox: null,
    };
    pod.containers.push(entry);
  }
  return pod;
}

/**
 * Marks the sandbox (pause) container. With the ids the API knows, any other
 * container is the sandbox. Without them: runtimes give the sandbox the minimum
 * CPU shares, so a single container at the minimum in a pod that is not
 * BestEffort is the sandbox; if several are at the minimum, we cannot tell.
 */
function markSandbox(base: string, pod: PodCgroup, known: ReadonlySet<string> | undefined): void {
  if (known !== undefined) {
    for (const c of pod.containers) c.sandbox = !known.has(c.id);
    return;
  }
  if (pod.qos === "besteffort") return; // every container is at the minimum: cannot tell
  const atMinimum = pod.containers.filter((c) =>
    readShares(join(base, c.relativePath)) === MIN_SHARES
  );
  for (const c of pod.containers) {
    c.sandbox = atMinimum.length === 1 ? c === atMinimum[0] : atMinimum.includes(c) ? null : false;
  }
}

function readShares(dir: string): number | null {
  try {
    return parseSingleInteger(Deno.readTextFileSync(join(dir, "cpu.shares")));
  } catch {
    try {
      return weightToShares(parseSingleInteger(Deno.readTextFileSync(join(dir, "cpu.weight"))));
    } catch {
      return null;
    }
  }
}

/** Breadth-first search for kubelet tree roots, relative paths starting with `/`. */
function findKubepodsRoots(base: string, maxDepth: number): string[] {
  const found: string[] = [];
  let level = [""];
  for (let depth = 0; depth < maxDepth && level.length > 0; depth++) {
    const next: string[] = [];
    for (const path of level) {
      for (const name of subdirectories(join(base, path))) {
        const child = `${path}/${name}`;
        if (isKubepodsRoot(name)) found.push(child);
        else next.push(child);
      }
    }
    level = next;
  }
  return found.sort();
}

/** Subdirectory names, sorted; empty when the directory vanished or cannot be read. */
function subdirectories(dir: string): string[] {
  const names: string[] = [];
  try {
    for (const entry of Deno.readDirSync(dir)) {
      // Symlinks (the v1 `cpu -> cpu,cpuacct` aliases) are not followed.
      if (entry.isDirectory) names.push(entry.name);
    }
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return [];
    throw error;
  }
  return names.sort();
}

function isDirectory(path: string): boolean {
  return stat(path)?.isDirectory ?? false;
}

function isFile(path: string): boolean {
  return stat(path)?.isFile ?? false;
}

/** File info, or null when the path does not exist. */
function stat(path: string): Deno.FileInfo | null {
  try {
    return Deno.statSync(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw error;
  }
}
