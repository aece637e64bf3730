/**
 * JSON-lines logging for agent and controller, on stderr. One line per
 * record, in the shape logtape's JSON-lines formatter writes (which this
 * module used until the agent's footprint asked for no npm code at run time):
 *
 * ```json
 * {"@timestamp":"2026-12-03T12:00:00.000Z","level":"INFO","message":"started","logger":"mbcas.agent","properties":{"node":"a"}}
 * ```
 *
 * Errors in the properties become `{name, message, stack}` (and `cause`),
 * bigints strings, repeated references `"[Circular]"`.
 *
 * @module
 */

/** Log levels accepted in configuration. */
export const LOG_LEVELS = ["debug", "info", "warning", "error"] as const;
/** A log level. */
export type LogLevel = (typeof LOG_LEVELS)[number];

/** A record's properties: the structured fields of a log line. */
export type LogProperties = Record<string, unknown>;

const RANK: Record<LogLevel, number> = { debug: 0, info: 1, warning: 2, error: 3 };
const LABEL: Record<LogLevel, string> = {
  debug: "DEBUG",
  info: "INFO",
  warning: "WARN",
  error: "ERROR",
};

const encoder = new TextEncoder();

/** Writes `line` to stderr, all of it (a write may take only part). */
function writeStderr(line: string): void {
  const bytes = encoder.encode(line);
  let written = 0;
  while (written < bytes.length) written += Deno.stderr.writeSync(bytes.subarray(written));
}

/** Where records go and from which level: set by {@link configureLogging}. */
const sink: { lowest: number; write: (line: string) => void; now: () => number } = {
  lowest: RANK.info,
  write: writeStderr,
  now: Date.now,
};

/**
 * Sends the `mbcas` loggers' records at `level` and above to `write` (default
 * stderr) as JSON lines; `now` stamps them (default `Date.now`).
 */
export function configureLogging(
  level: LogLevel,
  options: { write?: (line: string) => void; now?: () => number } = {},
): void {
  sink.lowest = RANK[level];
  sink.write = options.write ?? writeStderr;
  sink.now = options.now ?? Date.now;
}

/** A JSON-serialisable stand-in for `value`: Errors as plain objects, bigints as strings. */
function plain(value: unknown): unknown {
  if (typeof value === "bigint") return value.toString();
  if (!(value instanceof Error)) return value;
  const error: Record<string, unknown> = { name: value.name, message: value.message };
  if (value.stack !== undefined) error.stack = value.stack;
  if (value.cause !== undefined) error.cause = value.cause;
  return error;
}

/** `value` as JSON, with {@link plain} applied and a reference to an object's own ancestor cut. */
function toJson(value: unknown): string {
  // The objects on the path to the key being written, as written and as found.
  const written: unknown[] = [];
  const found: unknown[] = [];
  return JSON.stringify(value, function (this: unknown, _key, raw: unknown) {
    const value = plain(raw);
    if (typeof value !== "object" || value === null) return value;
    // `this` is the object holding the key: leave the path below it.
    while (written.length > 0 && written.at(-1) !== this) {
      written.pop();
      found.pop();
    }
    if (found.includes(raw)) return "[Circular]";
    written.push(value);
    found.push(raw);
    return value;
  });
}

/** One record as a JSON line (with its newline). */
export function formatRecord(
  timestampMs: number,
  level: LogLevel,
  category: string,
  message: string,
  properties: LogProperties,
): string {
  // U+2028/U+2029 are valid in JSON but break line-oriented readers.
  const line = `{"@timestamp":${JSON.stringify(new Date(timestampMs).toISOString())},"level":"${
    LABEL[level]
  }","message":${JSON.stringify(message)},"logger":${JSON.stringify(category)},"properties":${
    toJson(properties)
  }}`;
  return line.replace(/[\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16)}`) + "\n";
}

/** A logger: one component's records, written where {@link configureLogging} says. */
export class Logger {
  /** The logger's name in each line (`mbcas.<component>`). */
  readonly category: string;

  /** A logger named `category`. */
  constructor(category: string) {
    this.category = category;
  }

  #log(level: LogLevel, message: string, properties: LogProperties): void {
    if (RANK[level] < sink.lowest) return;
    sink.write(formatRecord(sink.now(), level, this.category, message, properties));
  }

  /** Logs at `debug`. */
  debug(message: string, properties: LogProperties = {}): void {
    this.#log("debug", message, properties);
  }

  /** Logs at `info`. */
  info(message: string, properties: LogProperties = {}): void {
    this.#log("info", message, properties);
  }

  /** Logs at `warning`. */
  warn(message: string, properties: LogProperties = {}): void {
    this.#log("warning", message, properties);
  }

  /** Logs at `error`. */
  error(message: string, properties: LogProperties = {}): void {
    this.#log("error", message, properties);
  }
}

/** A logger under `mbcas`. */
export function logger(component: string): Logger {
  return new Logger(`mbcas.${component}`);
}

/** A `(level, message, fields)` sink writing to `log`, the shape the shared layer takes. */
export function logSink(
  log: Logger,
): (
  level: "debug" | "info" | "warn" | "error",
  message: string,
  fields?: Record<string, unknown>,
) => void {
  return (level, message, fields) => log[level](message, fields ?? {});
}
