/**
 * The agent's option checks are hand-written (src/config checks, so the agent
 * never loads zod). They must accept and reject exactly what the zod schema
 * they replaced did, with the same values, the same first invalid option and,
 * where the schema had its own message, the same message; the zod schema is
 * kept here as the oracle.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { z } from "zod";
import { AGENT_OPTION_CHECKS, AGENT_OPTIONS, parseAgentConfig } from "../../src/agent/mod.ts";
import { parseMillicores } from "../../src/api/mod.ts";
import { ConfigError, readOptions } from "../../src/config/mod.ts";
import { LOG_LEVELS } from "../../src/log/mod.ts";

const quantity = (allowEmpty: boolean) =>
  z.string().refine(
    (v) => (allowEmpty && v === "") || (parseMillicores(v) ?? -1) >= 0,
    "must be a CPU quantity such as 500m or 2",
  );

/** The zod schema the checks replaced (src/agent/config.ts before issue 16; `elastic-yield` and `protected-limit` added since). */
const ZOD_SCHEMA = z.object({
  kubeconfig: z.string(),
  "node-name": z.string().min(1, "must be set (the DaemonSet passes spec.nodeName)"),
  namespace: z.string().regex(
    /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/,
    "must be a namespace name (lower-case letters, digits and '-')",
  ).max(63),
  "cgroup-root": z.string().min(1, "must not be empty"),
  "sampling-interval-ms": z.coerce.number({ error: "must be a number of milliseconds" }).int().min(
    100,
    "must be at least 100",
  ).max(60_000),
  "market-interval-ms": z.coerce.number({ error: "must be a number of milliseconds" }).int().min(
    200,
    "must be at least 200",
  ).max(600_000),
  "heavy-throttle-ratio": z.coerce.number({ error: "must be a number" }).gt(0, "must be above 0")
    .max(1, "must be at most 1"),
  headroom: z.coerce.number({ error: "must be a number" }).min(0, "must be at least 0").max(
    10,
    "must be at most 10",
  ),
  "release-half-life-seconds": z.coerce.number({ error: "must be a number of seconds" }).gt(
    0,
    "must be above 0",
  ).max(86_400),
  "max-cpu": quantity(true),
  "reserve-cpu": quantity(false),
  "elastic-headroom": z.coerce.number({ error: "must be a number" }).min(0, "must be at least 0")
    .max(1, "must be at most 1"),
  "elastic-release-seconds": z.coerce.number({ error: "must be a number of seconds" }).min(
    0,
    "must be at least 0",
  ).max(3600, "must be at most 3600"),
  "elastic-yield": z.enum(["true", "false"], { error: 'must be "true" or "false"' }),
  "protected-limit": z.enum(["target", "cap"], { error: 'must be "target" or "cap"' }),
  "min-change-fraction": z.coerce.number({ error: "must be a number" }).min(0).max(
    1,
    "must be at most 1",
  ),
  "min-change-millicores": z.coerce.number({ error: "must be a number" }).int().min(0).max(100_000),
  "writes-per-second": z.coerce.number({ error: "must be a number" }).gt(0, "must be above 0").max(
    1000,
  ),
  "bind-address": z.string().min(1),
  "metrics-port": z.coerce.number({ error: "must be a port number" }).int().min(0).max(65535),
  "log-level": z.enum(LOG_LEVELS, { error: `must be one of ${LOG_LEVELS.join(", ")}` }),
});

/** Texts around every bound, format and kind of value the options take. */
const TEXTS = [
  "",
  " ",
  "0",
  "-0",
  "1",
  "-1",
  "0.5",
  "1.5",
  " 12 ",
  "1e3",
  "0x10",
  "99",
  "100",
  "199",
  "200",
  "3600",
  "3601",
  "60000",
  "60001",
  "86400",
  "86401",
  "100000",
  "100001",
  "600000",
  "600001",
  "65535",
  "65536",
  "1000",
  "1000.5",
  "10",
  "10.01",
  "9007199254740993",
  "abc",
  "NaN",
  "Infinity",
  "-Infinity",
  "500m",
  "2",
  "0m",
  "-1m",
  "lots",
  "debug",
  "info",
  "warning",
  "error",
  "INFO",
  "mbcas-system",
  "Bad_NS",
  "-ns",
  "a".repeat(63),
  "a".repeat(64),
  "::",
  "/host/cgroup",
  "true",
  "false",
  "TRUE",
  "yes",
  "target",
  "cap",
  "CAP",
];

type Outcome = { ok: true; value: unknown } | { ok: false; message: string };

function outcome(parse: () => unknown): Outcome {
  try {
    return { ok: true, value: parse() };
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    return { ok: false, message: error.message };
  }
}

/** The checks' own wording for bounds the zod schema gave no message for. */
const DEFAULT_MESSAGE =
  /^invalid [^:]+: must (be at least \d+|be at most \d+( characters)?|be a whole number|not be empty), got /;

Deno.test("agent options: the hand-written checks agree with the zod schema they replaced", () => {
  const names = Object.keys(AGENT_OPTIONS) as (keyof typeof AGENT_OPTIONS)[];
  const setting = fc.record({
    flags: fc.dictionary(fc.constantFrom(...names), fc.constantFrom(...TEXTS), { maxKeys: 4 }),
    env: fc.dictionary(fc.constantFrom(...names), fc.constantFrom(...TEXTS), { maxKeys: 3 }),
  });
  let rejected = 0;
  fc.assert(
    fc.property(setting, ({ flags, env }) => {
      // A node name is required; set it unless the case sets it.
      const args = Object.entries({ "node-name": "n", ...flags }).map(([k, v]) => `--${k}=${v}`);
      const variables = new Map<string, string>(
        Object.entries(env).map((
          [k, v],
        ) => [AGENT_OPTIONS[k as keyof typeof AGENT_OPTIONS].env, v]),
      );
      const read = (name: string) => variables.get(name);
      const expected = outcome(() => readOptions(AGENT_OPTIONS, ZOD_SCHEMA, args, read));
      const actual = outcome(() => readOptions(AGENT_OPTIONS, AGENT_OPTION_CHECKS, args, read));
      assert.equal(actual.ok, expected.ok, JSON.stringify({ args, env, expected, actual }));
      if (expected.ok && actual.ok) {
        assert.deepEqual(actual.value, expected.value);
      } else if (!expected.ok && !actual.ok) {
        rejected++;
        const where = (m: string) => m.slice(0, m.indexOf(":"));
        assert.equal(where(actual.message), where(expected.message), "the same option is named");
        // The schema's own messages are kept; where it gave none, zod said
        // "Too big…" or repeated the type's message ("must be a number of
        // milliseconds" for 600000): the checks name the bound instead.
        if (actual.message !== expected.message) assert.match(actual.message, DEFAULT_MESSAGE);
      }
    }),
    { numRuns: 3000, seed: 16 },
  );
  assert.ok(rejected > 300, `rejections exercised: ${rejected}`);
});

Deno.test("agent options: messages name the option, the source and the value", () => {
  const cases: [string[], Record<string, string>, string][] = [
    [
      ["--node-name=n", "--sampling-interval-ms=5"],
      {},
      'invalid --sampling-interval-ms: must be at least 100, got "5"',
    ],
    [
      ["--node-name=n", "--sampling-interval-ms=150.5"],
      {},
      'invalid --sampling-interval-ms: must be a whole number, got "150.5"',
    ],
    [
      ["--node-name=n", "--market-interval-ms=x"],
      {},
      'invalid --market-interval-ms: must be a number of milliseconds, got "x"',
    ],
    [
      ["--node-name=n"],
      { MBCAS_MAX_CPU: "lots" },
      'invalid MBCAS_MAX_CPU (--max-cpu): must be a CPU quantity such as 500m or 2, got "lots"',
    ],
    [
      ["--node-name=n"],
      { MBCAS_METRICS_PORT: "70000" },
      'invalid MBCAS_METRICS_PORT (--metrics-port): must be at most 65535, got "70000"',
    ],
    [
      ["--node-name=n", "--namespace=Shop"],
      {},
      `invalid --namespace: must be a namespace name (lower-case letters, digits and '-'), got "Shop"`,
    ],
    [
      ["--node-name=n", `--namespace=${"a".repeat(64)}`],
      {},
      `invalid --namespace: must be at most 63 characters, got "${"a".repeat(64)}"`,
    ],
    [
      ["--node-name=n", "--log-level=loud"],
      {},
      'invalid --log-level: must be one of debug, info, warning, error, got "loud"',
    ],
    [["--node-name=n", "--bind-address="], {}, 'invalid --bind-address: must not be empty, got ""'],
    [[], {}, 'invalid --node-name: must be set (the DaemonSet passes spec.nodeName), got ""'],
  ];
  for (const [args, env, message] of cases) {
    assert.throws(() => parseAgentConfig(args, (name) => env[name]), (error: Error) => {
      assert.ok(error instanceof ConfigError);
      assert.equal(error.message, message);
      return true;
    });
  }
});
