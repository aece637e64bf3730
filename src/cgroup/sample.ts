/**
 * Reading a container's CPU counters from its cgroup files, on v1 or v2.
 * Every failure is a typed result: a vanished cgroup, a missing file, a file
 * with garbage in it. Nothing here crashes, and nothing reads as an idle zero.
 *
 * Two readers share one parser: {@link readSample} opens each file for one
 * reading (for tools), and {@link CgroupSampler} keeps the files of the
 * containers it samples open and re-reads them from offset 0, which costs a
 * fifth of an open per read (the agent samples every container every second).
 *
 * @module
 */
import { join } from "node:path";
import {
  MalformedFile,
  parseCpuMax,
  parseCpuStat,
  parsePressure,
  parseSingleInteger,
  PRESSURE_FILE,
  weightToShares,
} from "./_files.ts";
import type { CgroupLayout, CpuSample, SampleResult } from "./types.ts";

/** One file a sample needs: where it lives, and whether it must exist. */
interface FileSpec {
  /** Name inside the container's cgroup directory. */
  name: string;
  /** Absolute path of the file. */
  path: string;
  /** A missing required file makes the sample fail; an optional one is null. */
  required: boolean;
  /** Read on every sample (counters, limits) or only now and then (period, shares). */
  slow: boolean;
  /**
   * An optional signal (PSI): any error reading it — absent, EOPNOTSUPP where
   * PSI is built in but switched off, unreadable — leaves the sample without
   * it instead of failing it.
   */
  degradable: boolean;
}

/**
 * The files a sample of `relativePath` reads, for the layout's cgroup
 * version; with `slowLimits` the CFS quota is one of the slow files.
 */
function fileSpecs(layout: CgroupLayout, relativePath: string, slowLimits = false): FileSpec[] {
  const cpu = join(layout.cpuDir, relativePath);
  const spec = (dir: string, name: string, required: boolean, slow = false): FileSpec => ({
    name,
    path: join(dir, name),
    required,
    slow,
    degradable: false,
  });
  const files = layout.version === 2
    ? [
      spec(cpu, "cpu.stat", true),
      spec(cpu, "cpu.max", true, slowLimits),
      spec(cpu, "cpu.weight", false, true),
    ]
    : [
      spec(join(layout.cpuacctDir, relativePath), "cpuacct.usage", true),
      spec(cpu, "cpu.stat", true),
      spec(cpu, "cpu.cfs_quota_us", true, slowLimits),
      spec(cpu, "cpu.cfs_period_us", true, true),
      spec(cpu, "cpu.shares", false, true),
    ];
  if (layout.psiDir !== null) {
    files.push({
      ...spec(join(layout.psiDir, relativePath), PRESSURE_FILE, false),
      degradable: true,
    });
  }
  return files;
}

/** A sample being assembled from its files, one file at a time. */
interface Draft {
  usageNanos: number | null;
  periods: number;
  throttledPeriods: number;
  throttledNanos: number;
  quotaMicros: number | null;
  periodMicros: number | null;
  shares: number | null;
  psi: CpuSample["psi"];
}

function emptyDraft(): Draft {
  return {
    usageNanos: null,
    periods: 0,
    throttledPeriods: 0,
    throttledNanos: 0,
    quotaMicros: null,
    periodMicros: null,
    shares: null,
    psi: null,
  };
}

/**
 * Parses the contents of one of a sample's files into `draft`; throws
 * MalformedFile naming `path` when they are not what the kernel writes.
 */
function parseFile(
  version: 1 | 2,
  name: string,
  path: string,
  text: string,
  draft: Partial<Draft>,
): void {
  try {
    switch (name) {
      case "cpuacct.usage":
        draft.usageNanos = parseSingleInteger(text);
        return;
      case "cpu.stat": {
        const stat = parseCpuStat(text);
        if (version === 2) {
          if (stat.usageUsec === undefined) throw new MalformedFile("no usage_usec");
          draft.usageNanos = stat.usageUsec * 1000;
          draft.throttledNanos = (stat.throttledUsec ?? 0) * 1000;
        } else {
          draft.throttledNanos = stat.throttledTime ?? 0;
        }
        draft.periods = stat.nrPeriods ?? 0;
        draft.throttledPeriods = stat.nrThrottled ?? 0;
        return;
      }
      case "cpu.max": {
        const max = parseCpuMax(text);
        draft.quotaMicros = max.quotaMicros;
        draft.periodMicros = max.periodMicros;
        return;
      }
      case "cpu.cfs_quota_us": {
        const quota = parseSingleInteger(text, true);
        draft.quotaMicros = quota < 0 ? null : quota;
        return;
      }
      case "cpu.cfs_period_us": {
        const period = parseSingleInteger(text);
        if (period === 0) throw new MalformedFile("period is 0");
        draft.periodMicros = period;
        return;
      }
      case "cpu.shares":
        draft.shares = parseSingleInteger(text);
        return;
      case "cpu.weight":
        draft.shares = weightToShares(parseSingleInteger(text));
        return;
      case PRESSURE_FILE:
        draft.psi = pressureOrNull(text);
        return;
    }
  } catch (error) {
    if (error instanceof MalformedFile) (error as MalformedInFile).file ??= path;
    throw error;
  }
}

/** The finished sample: every required file was parsed into `draft`. */
function finish(draft: Draft, atMs: number): CpuSample {
  return {
    atMs,
    usageNanos: draft.usageNanos!,
    periods: draft.periods,
    throttledPeriods: draft.throttledPeriods,
    throttledNanos: draft.throttledNanos,
    quotaMicros: draft.quotaMicros,
    periodMicros: draft.periodMicros!,
    shares: draft.shares,
    psi: draft.psi,
  };
}

/** PSI is optional: garbage in `cpu.pressure` leaves the sample without it. */
function pressureOrNull(text: string): CpuSample["psi"] {
  try {
    return parsePressure(text);
  } catch (error) {
    if (error instanceof MalformedFile) return null;
    throw error;
  }
}

/** Turns a missing required file or garbage met while sampling into a typed result; rethrows anything else. */
function failure(layout: CgroupLayout, relativePath: string, error: unknown): SampleResult {
  if (error instanceof MissingFile) {
    const dir = join(layout.cpuDir, relativePath);
    return exists(dir)
      ? { status: "missing-file", file: error.file }
      : { status: "vanished", path: dir };
  }
  if (error instanceof UnreadableFile) {
    return { status: "unreadable", file: error.file, detail: error.message };
  }
  if (error instanceof MalformedFile) {
    return {
      status: "malformed",
      file: (error as MalformedInFile).file ?? "",
      detail: error.message,
    };
  }
  throw error;
}

/**
 * A file the process may not read: the kernel said EACCES (a node whose
 * cgroup files are not world-readable, with a non-root agent), or Deno's
 * permission set does not cover the path.
 */
class UnreadableFile extends Error {
  constructor(readonly file: string, cause: Error) {
    super(
      cause instanceof Deno.errors.NotCapable
        ? `${file} is outside the program's --allow-read paths`
        : `${file} is not readable by this user (${cause.message})`,
    );
  }
}

/**
 * Rethrows a read error as a typed one: missing (when `required`), unreadable,
 * or as it is; a degradable file's error of any kind is just "no value".
 */
function fileError(error: unknown, spec: FileSpec): null {
  const { path, required } = spec;
  if (spec.degradable) return null;
  if (error instanceof Deno.errors.PermissionDenied || error instanceof Deno.errors.NotCapable) {
    throw new UnreadableFile(path, error);
  }
  if (!(error instanceof Deno.errors.NotFound)) throw error;
  if (required) throw new MissingFile(path);
  return null;
}

/** A required file was absent. */
class MissingFile extends Error {
  constructor(readonly file: string) {
    super(`missing ${file}`);
  }
}

type MalformedInFile = MalformedFile & { file?: string };

/** Reads one sample of the container cgroup at `relativePath`, stamped with `atMs`, opening each file once. */
export function readSample(layout: CgroupLayout, relativePath: string, atMs: number): SampleResult {
  const specs = fileSpecs(layout, relativePath);
  try {
    const draft = emptyDraft();
    for (const spec of specs) {
      const text = readWhole(spec);
      if (text !== null) parseFile(layout.version, spec.name, spec.path, text, draft);
    }
    return { status: "ok", sample: finish(draft, atMs) };
  } catch (error) {
    return failure(layout, relativePath, error);
  }
}

function readWhole(spec: FileSpec): string | null {
  try {
    return Deno.readTextFileSync(spec.path);
  } catch (error) {
    return fileError(error, spec);
  }
}

/** Open files of one container, and what its slow files gave at their last reading. */
interface Handles {
  specs: FileSpec[];
  /** The open files, null for an optional file that is absent. */
  files: (Deno.FsFile | null)[];
  /** What each slow file (by index) gave the sample at its last reading; null when absent. */
  slowParsed: (Partial<Draft> | null)[];
  reads: number;
  /** The CFS throttled-periods counter at the container's previous sample; null before the first. */
  throttledPeriods: number | null;
}

/** How many samples between re-reads of files that rarely change (CFS period, shares). */
const SLOW_EVERY = 30;

/** Options of {@link CgroupSampler}. */
export interface CgroupSamplerOptions {
  /**
   * Read the CFS quota (`cpu.max`, `cpu.cfs_quota_us`) only every 30th sample
   * of a container, like the period and the shares, instead of every time:
   * a third fewer reads on v2, for callers that take limits from elsewhere
   * (the agent reads them from the pod spec). Samples then carry a quota up
   * to 30 samples old. Default false.
   */
  slowLimits?: boolean;
  /**
   * Read a container's CPU pressure (`cpu.pressure`) only when its CFS
   * throttled-periods counter advanced since its previous sample; other
   * samples carry `psi: null`. For callers that use PSI only together with
   * throttling (the agent's estimator trusts it from a throttled ratio of
   * 0.5): one read fewer per container and sample for every container that
   * is not throttled. The first throttled sample gives the PSI baseline, so
   * a stall ratio (which needs PSI in both samples) comes from the second
   * throttled interval on. Default false.
   */
  pressureWhenThrottled?: boolean;
}

/**
 * Samples many containers repeatedly, keeping each container's files open
 * between samples. Call {@link CgroupSampler.retain} after each discovery so
 * the files of containers that are gone get closed, and
 * {@link CgroupSampler.close} when done.
 */
export class CgroupSampler {
  readonly #layout: CgroupLayout;
  readonly #slowLimits: boolean;
  readonly #pressureWhenThrottled: boolean;
  readonly #handles = new Map<string, Handles>();
  readonly #buffer = new Uint8Array(4096);
  readonly #decoder = new TextDecoder();

  /** Creates a sampler for the hierarchies of `layout`. */
  constructor(layout: CgroupLayout, options: CgroupSamplerOptions = {}) {
    this.#layout = layout;
    this.#slowLimits = options.slowLimits ?? false;
    this.#pressureWhenThrottled = options.pressureWhenThrottled ?? false;
  }

  /** Number of containers with open files. */
  get openContainers(): number {
    return this.#handles.size;
  }

  /** Reads one sample of the container at `relativePath`, stamped with `atMs`. */
  read(relativePath: string, atMs: number): SampleResult {
    try {
      return { status: "ok", sample: this.#sample(relativePath, atMs) };
    } catch (error) {
      const result = failure(this.#layout, relativePath, error);
      this.forget(relativePath);
      return result;
    }
  }

  /** Closes the files of every container not in `relativePaths`. */
  retain(relativePaths: ReadonlySet<string>): void {
    for (const path of [...this.#handles.keys()]) if (!relativePaths.has(path)) this.forget(path);
  }

  /** Closes one container's files. */
  forget(relativePath: string): void {
    const handles = this.#handles.get(relativePath);
    if (handles === undefined) return;
    for (const file of handles.files) file?.close();
    this.#handles.delete(relativePath);
  }

  /** Closes every file. */
  close(): void {
    for (const path of [...this.#handles.keys()]) this.forget(path);
  }

  #sample(relativePath: string, atMs: number): CpuSample {
    let handles = this.#handles.get(relativePath);
    if (handles === undefined) {
      handles = this.#open(relativePath);
      this.#handles.set(relativePath, handles);
    }
    const version = this.#layout.version;
    const refreshSlow = handles.reads++ % SLOW_EVERY === 0;
    const { specs, slowParsed } = handles;
    const draft = emptyDraft();
    let pressure = -1;
    for (let i = 0; i < specs.length; i++) {
      const spec = specs[i];
      if (this.#pressureWhenThrottled && spec.name === PRESSURE_FILE) {
        pressure = i;
      } else if (!spec.slow) {
        const text = this.#reread(handles, i);
        if (text !== null) parseFile(version, spec.name, spec.path, text, draft);
      } else {
        if (refreshSlow) {
          const text = this.#reread(handles, i);
          let parsed: Partial<Draft> | null = null;
          if (text !== null) parseFile(version, spec.name, spec.path, text, parsed = {});
          slowParsed[i] = parsed;
        }
        if (slowParsed[i] !== null) Object.assign(draft, slowParsed[i]);
      }
    }
    const previous = handles.throttledPeriods;
    handles.throttledPeriods = draft.throttledPeriods;
    if (pressure >= 0 && previous !== null && draft.throttledPeriods > previous) {
      const text = this.#reread(handles, pressure);
      if (text !== null) draft.psi = pressureOrNull(text);
    }
    return finish(draft, atMs);
  }

  #open(relativePath: string): Handles {
    const specs = fileSpecs(this.#layout, relativePath, this.#slowLimits);
    const files: (Deno.FsFile | null)[] = [];
    try {
      for (const spec of specs) {
        try {
          files.push(Deno.openSync(spec.path, { read: true }));
        } catch (error) {
          files.push(fileError(error, spec));
        }
      }
    } catch (error) {
      for (const file of files) file?.close();
      throw error;
    }
    return {
      specs,
      files,
      slowParsed: specs.map(() => null),
      reads: 0,
      throttledPeriods: null,
    };
  }

  /** Re-reads an open file from offset 0; a file of a removed cgroup fails and is reported missing. */
  #reread(handles: Handles, i: number): string | null {
    const file = handles.files[i];
    const spec = handles.specs[i];
    if (file === null) return null;
    try {
      // (node:fs's readSync at a position is one pread instead of a seek and
      // a read, but importing node:fs costs the agent 6 MB of RSS.)
      file.seekSync(0, Deno.SeekMode.Start);
      // cgroup files are far smaller than the buffer: one read returns all.
      const n = file.readSync(this.#buffer) ?? 0;
      return this.#decoder.decode(this.#buffer.subarray(0, n));
    } catch {
      if (spec.degradable) return null; // e.g. EOPNOTSUPP: PSI switched off
      // ENODEV and friends: the cgroup was removed under the open file.
      throw new MissingFile(spec.path);
    }
  }
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}
