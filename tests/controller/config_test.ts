import assert from "node:assert/strict";
import {
  ConfigError,
  CONTROLLER_OPTIONS,
  parseControllerConfig,
} from "../../src/controller/config.ts";
import { DEFAULT_POLICY } from "../../src/controller/mod.ts";

const noEnv = () => undefined;

Deno.test("config: defaults give the documented policy and limits", () => {
  const c = parseControllerConfig([], noEnv);
  assert.deepEqual(c.policy, DEFAULT_POLICY);
  assert.equal(c.leaderElect, true);
  assert.equal(c.dryRun, false);
  assert.equal(c.namespace, "mbcas-system");
  assert.equal(c.metricsPort, 8080);
  assert.deepEqual(c.rateLimit, {
    global: { perSecond: 20, burst: 50 },
    perNode: { perSecond: 5, burst: 10 },
  });
  assert.equal(c.kubeconfig, undefined);
  assert.match(c.identity, /-[0-9a-f]{8}$/);
});

Deno.test("config: flags win over environment variables, which win over defaults", () => {
  const env = (name: string) =>
    ({
      MBCAS_COOLDOWN_SECONDS: "45",
      MBCAS_DRY_RUN: "true",
      POD_NAME: "ctl-0",
      MBCAS_MAX_LIMIT: "3500m",
    } as Record<string, string>)[name];
  const c = parseControllerConfig(["--cooldown-seconds", "5", "--max-step-down=0.25"], env);
  assert.equal(c.policy.cooldownMs, 5000);
  assert.equal(c.policy.maxStepDownFraction, 0.25);
  assert.equal(c.dryRun, true);
  assert.equal(c.identity, "ctl-0");
  assert.equal(c.policy.maxLimitMillicores, 3500);
});

Deno.test("config: an invalid value names the flag or variable and the value", () => {
  const cases: [string[], Record<string, string>, RegExp][] = [
    [
      ["--cooldown-seconds", "soon"],
      {},
      /invalid --cooldown-seconds: must be a number of seconds, got "soon"/,
    ],
    [["--max-step-down", "0"], {}, /invalid --max-step-down: must be above 0, got "0"/],
    [["--dry-run", "yes"], {}, /invalid --dry-run: must be true or false, got "yes"/],
    [["--metrics-port", "70000"], {}, /invalid --metrics-port/],
    [
      [],
      { MBCAS_MAX_LIMIT: "lots" },
      /invalid MBCAS_MAX_LIMIT \(--max-limit\): must be empty or a positive CPU quantity/,
    ],
    [
      [],
      { MBCAS_LOG_LEVEL: "loud" },
      /invalid MBCAS_LOG_LEVEL \(--log-level\): must be one of debug, info, warning, error, got "loud"/,
    ],
    [["--no-such-flag", "1"], {}, /no-such-flag/],
  ];
  for (const [args, env, pattern] of cases) {
    assert.throws(
      () => parseControllerConfig(args, (n) => env[n]),
      (e: Error) => e instanceof ConfigError && pattern.test(e.message),
      `${args} ${JSON.stringify(env)}`,
    );
  }
});

Deno.test("config: docs/configuration.md documents every flag and environment variable with its default", () => {
  const whole = Deno.readTextFileSync(new URL("../../docs/configuration.md", import.meta.url));
  const start = whole.indexOf("\n## Controller configuration\n");
  assert.ok(start >= 0, "docs/configuration.md lacks its section ## Controller configuration");
  const next = whole.indexOf("\n## ", start + 1);
  const section = whole.slice(start, next < 0 ? undefined : next);
  for (const [name, spec] of Object.entries(CONTROLLER_OPTIONS)) {
    // deno fmt pads table cells with spaces.
    const row = section.split("\n").find((l) => new RegExp(`^\\|\\s*\`--${name}\`\\s*\\|`).test(l));
    assert.ok(row, `docs/configuration.md lacks --${name}`);
    assert.ok(
      row.includes(`\`${spec.env}\``),
      `docs/configuration.md row of --${name} lacks ${spec.env}`,
    );
    assert.ok(
      spec.default === "" ? row.includes("(empty)") : row.includes(`\`${spec.default}\``),
      `docs/configuration.md default of --${name}`,
    );
  }
});

Deno.test("config: leader-election timings default to client-go-like values and can be set", () => {
  const c = parseControllerConfig([], noEnv);
  assert.equal(c.leaseDurationMs, 10_000);
  assert.equal(c.renewDeadlineMs, 6_666);
  assert.equal(c.retryPeriodMs, 2_000);
  const env = (name: string) =>
    ({ MBCAS_RETRY_PERIOD_SECONDS: "0.5" } as Record<string, string>)[name];
  const d = parseControllerConfig(
    ["--lease-duration-seconds", "15", "--renew-deadline-seconds=10"],
    env,
  );
  assert.deepEqual([d.leaseDurationMs, d.renewDeadlineMs, d.retryPeriodMs], [15_000, 10_000, 500]);
});

Deno.test("config: an invalid leader-election combination names the flags and values", () => {
  const cases: [string[], RegExp][] = [
    [
      ["--lease-duration-seconds", "10", "--renew-deadline-seconds", "10"],
      /invalid leader election timing: --lease-duration-seconds \(10\) must be greater than --renew-deadline-seconds \(10\)/,
    ],
    [
      ["--renew-deadline-seconds", "5", "--retry-period-seconds", "5"],
      /--renew-deadline-seconds \(5\) must be greater than 1\.2 × --retry-period-seconds \(5\), that is 6/,
    ],
    [
      ["--lease-duration-seconds", "3"],
      /--renew-deadline-seconds \(2, 2\/3 of --lease-duration-seconds\) must be greater than 1\.2 × --retry-period-seconds \(2\)/,
    ],
    [["--retry-period-seconds", "0"], /invalid --retry-period-seconds: must be above 0, got "0"/],
    [
      ["--renew-deadline-seconds=-1"],
      /invalid --renew-deadline-seconds: must be above 0, got "-1"/,
    ],
    [
      ["--renew-deadline-seconds", "soon"],
      /invalid --renew-deadline-seconds: must be a number of seconds, got "soon"/,
    ],
  ];
  for (const [args, pattern] of cases) {
    assert.throws(
      () => parseControllerConfig(args, noEnv),
      (e: Error) => e instanceof ConfigError && pattern.test(e.message),
      args.join(" "),
    );
  }
});
