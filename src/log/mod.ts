/**
 * JSON-lines logging for agent and controller (logtape), on stderr.
 *
 * @module
 */
import {
  configure,
  getLogger,
  getStreamSink,
  jsonLinesFormatter,
  type Logger,
} from "@logtape/logtape";

/** Log levels accepted in configuration. */
export const LOG_LEVELS = ["debug", "info", "warning", "error"] as const;
/** A log level. */
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Sends the `mbcas` loggers to stderr as JSON lines at `level` and above. */
export async function configureLogging(level: LogLevel): Promise<void> {
  await configure({
    reset: true,
    sinks: { stderr: getStreamSink(Deno.stderr.writable, { formatter: jsonLinesFormatter }) },
    loggers: [
      { category: ["mbcas"], lowestLevel: level, sinks: ["stderr"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["stderr"] },
    ],
  });
}

/** A logger under `mbcas`. */
export function logger(component: string): Logger {
  return getLogger(["mbcas", component]);
}

/** A `(level, message, fields)` sink writing to `log`, the shape the shared layer takes. */
export function logSink(
  log: Logger,
): (
  level: "debug" | "info" | "warn" | "error",
  message: string,
  fields?: Record<string, unknown>,
) => void {
  return (level, message, fields) => {
    const method = level === "warn" ? "warn" : level;
    log[method](message, fields ?? {});
  };
}
