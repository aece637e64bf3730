/**
 * The JSON-lines logger (src/log): the line format (logtape's JSON-lines
 * shape, which the project's log readers and tests parse), level filtering,
 * and properties that plain JSON.stringify would lose or choke on.
 */
import { strict as assert } from "node:assert";
import { configureLogging, formatRecord, logger, logSink } from "../../src/log/mod.ts";

const T = Date.UTC(2026, 11, 3, 12, 0, 0, 250);

function capture(level: "debug" | "info" | "warning" | "error"): string[] {
  const lines: string[] = [];
  configureLogging(level, { write: (line) => lines.push(line), now: () => T });
  return lines;
}

Deno.test("a record is one JSON line with timestamp, level, message, logger and properties", () => {
  const line = formatRecord(T, "warning", "mbcas.agent", 'a "quoted"\nmessage', { pod: "p" });
  assert.ok(line.endsWith("}\n"));
  assert.equal(line.indexOf("\n"), line.length - 1, "the message's newline is escaped");
  assert.deepEqual(JSON.parse(line), {
    "@timestamp": "2026-12-03T12:00:00.250Z",
    level: "WARN",
    message: 'a "quoted"\nmessage',
    logger: "mbcas.agent",
    properties: { pod: "p" },
  });
  // The keys come in logtape's order, which log shippers may have been set up for.
  assert.deepEqual(Object.keys(JSON.parse(line)), [
    "@timestamp",
    "level",
    "message",
    "logger",
    "properties",
  ]);
});

Deno.test("records below the configured level are dropped", () => {
  const lines = capture("warning");
  const log = logger("controller");
  log.debug("d");
  log.info("i");
  log.warn("w", { n: 1 });
  log.error("e");
  assert.deepEqual(lines.map((l) => [JSON.parse(l).level, JSON.parse(l).message]), [
    ["WARN", "w"],
    ["ERROR", "e"],
  ]);
  assert.equal(JSON.parse(lines[0]).logger, "mbcas.controller");
  assert.deepEqual(JSON.parse(lines[1]).properties, {});
  configureLogging("info");
});

Deno.test("logSink maps the shared layer's levels onto the logger", () => {
  const lines = capture("debug");
  const sink = logSink(logger("agent"));
  sink("debug", "d");
  sink("warn", "w", { pod: "x" });
  assert.deepEqual(lines.map((l) => JSON.parse(l).level), ["DEBUG", "WARN"]);
  assert.deepEqual(JSON.parse(lines[1]).properties, { pod: "x" });
  configureLogging("info");
});

Deno.test("errors, bigints, cycles and line separators in properties", () => {
  const cause = new TypeError("inner");
  const error = new Error("outer", { cause });
  const node: Record<string, unknown> = { name: "n" };
  node.self = node;
  const shared = { v: 1 };
  const self = new Error("loop");
  self.cause = self;
  const parsed = JSON.parse(formatRecord(T, "error", "mbcas.x", "m\u2028", {
    error,
    big: 12n,
    node,
    a: shared,
    b: shared,
    self,
  }));
  assert.equal(parsed.properties.error.name, "Error");
  assert.equal(parsed.properties.error.message, "outer");
  assert.match(parsed.properties.error.stack, /outer/);
  assert.equal(parsed.properties.error.cause.message, "inner");
  assert.equal(parsed.properties.error.cause.name, "TypeError");
  assert.equal(parsed.properties.big, "12");
  assert.deepEqual(parsed.properties.node, { name: "n", self: "[Circular]" });
  assert.deepEqual(parsed.properties.a, { v: 1 }, "an object seen twice, not in a cycle, is kept");
  assert.deepEqual(parsed.properties.b, { v: 1 });
  assert.equal(parsed.properties.self.cause, "[Circular]");
  assert.equal(parsed.message, "m\u2028");
  assert.ok(
    !formatRecord(T, "info", "x", "m\u2028", {}).includes("\u2028"),
    "U+2028 escaped",
  );
});
