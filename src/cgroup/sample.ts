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
  parseKeyedCounters,
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

/** Builds a sample from file contents (null: file absent). Throws MalformedFile. */
function parseSample(
  version: 1 | 2,
  text: (name: string) => string | null,
  atMs: number,
): CpuSample {
  const pressure = text(PRESSURE_FILE);
  const psi = pressure === null ? null : pressureOrNull(pressure);
  if (version === 2) {
    const stat = parseKeyedCounters(text("cpu.stat")!);
    const usage = stat.get("usage_usec");
    if (usage === undefined) throw new MalformedFile("no usage_usec");
    const max = parseCpuMax(text("cpu.max")!);
    const weight = text("cpu.weight");
    return {
      atMs,
      usageNanos: usage * 1000,
      periods: stat.get("nr_periods") ?? 0,
      throttledPeriods: stat.get("nr_throttled") ?? 0,
      throttledNanos: (stat.get("throttled_usec") ?? 0) * 1000,
      quotaMicros: max.quotaMicros,
      periodMicros: max.periodMicros,
      shares: weight === null ? null : weightToShares(parseSingleInteger(weight)),
      psi,
    };
  }
  const usage = parseSingleInteger(text("cpuacct.usage")!);
  const stat = parseKeyedCounters(text("cpu.stat")!);
  const quota = parseSingleInteger(text("cpu.cfs_quota_us")!, true);
  const period = parseSingleInteger(text("cpu.cfs_period_us")!);
  if (period === 0) throw new MalformedFile("period is 0");
  const shares = text("cpu.shares");
  return {
    atMs,
    usageNanos: usage,
    periods: stat.get("nr_periods") ?? 0,
    throttledPeriods: stat.get("nr_throttled") ?? 0,
    throttledNanos: stat.get("throttled_time") ?? 0,
    quotaMicros: quota < 0 ? null : quota,
    periodMicros: period,
    shares: shares === null ? null : parseSingleInteger(shares),
    psi,
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

/** Runs `parse`, turning a missing required file or garbage into a typed result. */
function toResult(
  layout: CgroupLayout,
  relativePath: string,
  parse: () => CpuSample,
): SampleResult {
  try {
    return { status: "ok", sample: parse() };
  } catch (error) {
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

/** Wraps a file's parse so a MalformedFile names the file it came from. */
function named<T>(file: string, parse: () => T): T {
  try {
    return parse();
  } catch (error) {
    if (error instanceof MalformedFile) (error as MalformedInFile).file ??= file;
    throw error;
  }
}

/** Reads one sample of the container cgroup at `relativePath`, stamped with `atMs`, opening each file once. */
export function readSample(layout: CgroupLayout, relativePath: string, atMs: number): SampleResult {
  const specs = fileSpecs(layout, relativePath);
  return toResult(layout, relativePath, () => {
    const texts = new Map<string, string | null>();
    for (const spec of specs) texts.set(spec.name, readWhole(spec));
    return parseWithNames(layout.version, specs, (name) => texts.get(name) ?? null, atMs);
  });
}

function parseWithNames(
  version: 1 | 2,
  specs: FileSpec[],
  text: (name: string) => string | null,
  atMs: number,
): CpuSample {
  let current = "";
  try {
    return parseSample(version, (name) => {
      current = name;
      return text(name);
    }, atMs);
  } catch (error) {
    // Only on failure: name the file whose contents were being parsed.
    const path = specs.find((s) => s.name === current)?.path ?? current;
    return named(path, () => {
      throw error;
    });
  }
}

function readWhole(spec: FileSpec): string | null {
  try {
    return Deno.readTextFileSync(spec.path);
  } catch (error) {
    return fileError(error, spec);
  }
}

/** Open files of one container, and the slow files' last contents. */
interface Handles {
  specs: FileSpec[];
  files: (Deno.FsFile | null)[];
  slowText: Record<string, string | null>;
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
    const result = toResult(this.#layout, relativePath, () => this.#sample(relativePath, atMs));
    if (result.status !== "ok") this.forget(relativePath);
    return result;
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
    const refreshSlow = handles.reads++ % SLOW_EVERY === 0;
    const texts: Record<string, string | null> = {};
    const { specs, slowText } = handles;
    let pressure = -1;
    for (let i = 0; i < specs.length; i++) {
      const spec = specs[i];
      if (this.#pressureWhenThrottled && spec.name === PRESSURE_FILE) pressure = i;
      else if (!spec.slow) texts[spec.name] = this.#reread(handles, i);
      else if (refreshSlow) slowText[spec.name] = texts[spec.name] = this.#reread(handles, i);
      else texts[spec.name] = slowText[spec.name] ?? null;
    }
    const sample = parseWithNames(this.#layout.version, specs, (name) => texts[name] ?? null, atMs);
    const previous = handles.throttledPeriods;
    handles.throttledPeriods = sample.throttledPeriods;
    if (pressure >= 0 && previous !== null && sample.throttledPeriods > previous) {
      const text = this.#reread(handles, pressure);
      return { ...sample, psi: text === null ? null : pressureOrNull(text) };
    }
    return sample;
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
    return { specs, files, slowText: {}, reads: 0, throttledPeriods: null };
  }

  /** Re-reads an open file from offset 0; a file of a removed cgroup fails and is reported missing. */
  #reread(handles: Handles, i: number): string | null {
    const file = handles.files[i];
    const spec = handles.specs[i];
    if (file === null) return null;
    try {
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
