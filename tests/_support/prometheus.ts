/**
 * Helpers for the tests of deploy/components/monitoring: where promtool and
 * prometheus are (Debian's `prometheus` package, which
 * scripts/install_node_packages.sh installs), the rule and dashboard files
 * as data, their PromQL expressions, and the metric names an expression
 * uses.
 */
import * as k8s from "@kubernetes/client-node";

/** deploy/components/monitoring, absolute. */
export const MONITORING_DIR = new URL("../../deploy/components/monitoring/", import.meta.url)
  .pathname;

/** The plain Prometheus rules file. */
export const RULES_FILE = `${MONITORING_DIR}mbcas-rules.yaml`;

/** The PrometheusRule manifest carrying the same groups. */
export const PROMETHEUS_RULE_FILE = `${MONITORING_DIR}prometheusrule.yaml`;

/** The Grafana dashboard. */
export const DASHBOARD_FILE = `${MONITORING_DIR}mbcas-dashboard.json`;

/** The promtool unit tests. */
export const RULE_TESTS_DIR = `${MONITORING_DIR}tests/`;

/** One rule of a rules file. */
export interface Rule {
  /** Set on alerting rules. */
  alert?: string;
  /** Set on recording rules. */
  record?: string;
  /** The PromQL expression. */
  expr: string;
  /** How long the expression must hold before the alert fires. */
  for?: string;
  /** Labels added to the alert. */
  labels?: Record<string, string>;
  /** Annotations of the alert. */
  annotations?: Record<string, string>;
}

/** One rule group. */
export interface RuleGroup {
  /** The group's name. */
  name: string;
  /** Its rules. */
  rules: Rule[];
}

/** The YAML (or JSON) document in `text`, as plain data. */
export function parseYaml(text: string): unknown {
  // client-node's loader returns documents of kinds it has no model for unchanged.
  return k8s.loadYaml(text);
}

/** The rule groups of the plain rules file. */
export function readRuleGroups(file: string = RULES_FILE): RuleGroup[] {
  return (parseYaml(Deno.readTextFileSync(file)) as { groups: RuleGroup[] }).groups;
}

/** Every alerting rule of `groups`, in order. */
export function alertRules(groups: RuleGroup[]): (Rule & { alert: string })[] {
  return groups.flatMap((g) => g.rules.filter((r): r is Rule & { alert: string } => !!r.alert));
}

/** Why `command --version` cannot run here, or null. */
function commandMissing(command: string): string | null {
  try {
    const out = new Deno.Command(command, { args: ["--version"], stdout: "null", stderr: "null" })
      .outputSync();
    return out.success ? null : `\`${command} --version\` fails`;
  } catch {
    return `no ${command} on PATH (Debian's prometheus package; scripts/install_node_packages.sh installs it)`;
  }
}

/** Why promtool cannot run here, or null. */
export function promtoolMissing(): string | null {
  return commandMissing("promtool");
}

/** Why the prometheus server cannot run here, or null. */
export function prometheusMissing(): string | null {
  return commandMissing("prometheus");
}

/** Runs promtool with `args` in `cwd`; resolves to its exit code and output. */
export async function promtool(
  args: string[],
  cwd: string = MONITORING_DIR,
): Promise<{ code: number; output: string }> {
  const out = await new Deno.Command("promtool", {
    args,
    cwd,
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(120_000),
  }).output();
  const d = new TextDecoder();
  return { code: out.code, output: d.decode(out.stdout) + d.decode(out.stderr) };
}

/** A PromQL expression and where it comes from. */
export interface Expression {
  /** e.g. `rule MBCASAgentDown` or `panel "Price" target A`. */
  origin: string;
  /** The expression as written (Grafana variables included). */
  expr: string;
}

/** A dashboard panel, as far as these tests read it. */
export interface Panel {
  /** Its title. */
  title?: string;
  /** `timeseries`, `stat`, `table`, `row`, … */
  type?: string;
  /** Its queries. */
  targets?: { expr?: string; refId?: string }[];
  /** The panels of a collapsed row. */
  panels?: Panel[];
}

/** A Grafana dashboard, as far as these tests read it. */
export interface Dashboard {
  /** Its panels (rows, collapsed rows with their own panels, and the others). */
  panels: Panel[];
  /** Its variables. */
  templating?: {
    list: { name?: string; type?: string; query?: string | { query?: string } }[];
  };
}

/** The dashboard's panels, those inside collapsed rows included. */
export function dashboardPanels(dashboard: Dashboard): Panel[] {
  return dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
}

/**
 * Every PromQL expression of the rules and the dashboard: each rule's
 * `expr`, each panel target's `expr`, and the series selector of each
 * `label_values(<selector>, <label>)` variable query.
 */
export function collectExpressions(groups: RuleGroup[], dashboard: Dashboard): Expression[] {
  const out: Expression[] = [];
  for (const g of groups) {
    for (const r of g.rules) out.push({ origin: `rule ${r.alert ?? r.record}`, expr: r.expr });
  }
  for (const p of dashboardPanels(dashboard)) {
    for (const t of p.targets ?? []) {
      if (t.expr !== undefined) {
        out.push({ origin: `panel "${p.title}" target ${t.refId}`, expr: t.expr });
      }
    }
  }
  for (const v of dashboard.templating?.list ?? []) {
    if (v.type !== "query") continue;
    const query = typeof v.query === "string" ? v.query : v.query?.query;
    const m = /^label_values\((.+),\s*[a-zA-Z_]\w*\s*\)$/.exec(String(query).trim());
    if (m === null) throw new Error(`variable ${v.name}: not label_values(<selector>, <label>)`);
    out.push({ origin: `variable ${v.name}`, expr: m[1] });
  }
  return out;
}

/**
 * `expr` with Grafana's variables replaced by values a query could have:
 * `$__rate_interval` and the other intervals by `1m`, `$node`, `$pod` (any
 * `$name` or `${name}`) by a name.
 */
export function substituteVariables(expr: string): string {
  return expr
    .replace(
      /\$__(?:rate_interval|interval|range)\b|\$\{__(?:rate_interval|interval|range)\}/g,
      "1m",
    )
    .replace(/\$\{(\w+)\}|\$(\w+)/g, "some-$1$2");
}

/** PromQL's functions and aggregation operators (Prometheus 2.42). */
const CALLABLE = new Set([
  // aggregation operators
  "sum",
  "min",
  "max",
  "avg",
  "group",
  "stddev",
  "stdvar",
  "count",
  "count_values",
  "bottomk",
  "topk",
  "quantile",
  // functions
  "abs",
  "absent",
  "absent_over_time",
  "ceil",
  "changes",
  "clamp",
  "clamp_max",
  "clamp_min",
  "day_of_month",
  "day_of_week",
  "day_of_year",
  "days_in_month",
  "delta",
  "deriv",
  "exp",
  "floor",
  "histogram_count",
  "histogram_fraction",
  "histogram_quantile",
  "histogram_sum",
  "holt_winters",
  "hour",
  "idelta",
  "increase",
  "irate",
  "label_join",
  "label_replace",
  "ln",
  "log2",
  "log10",
  "minute",
  "month",
  "predict_linear",
  "rate",
  "resets",
  "round",
  "scalar",
  "sgn",
  "sort",
  "sort_desc",
  "sqrt",
  "time",
  "timestamp",
  "vector",
  "year",
  "avg_over_time",
  "min_over_time",
  "max_over_time",
  "sum_over_time",
  "count_over_time",
  "quantile_over_time",
  "stddev_over_time",
  "stdvar_over_time",
  "last_over_time",
  "present_over_time",
  "acos",
  "acosh",
  "asin",
  "asinh",
  "atan",
  "atanh",
  "cos",
  "cosh",
  "sin",
  "sinh",
  "tan",
  "tanh",
  "deg",
  "pi",
  "rad",
]);

/** Words of PromQL that are neither functions nor metric names. */
const KEYWORDS = new Set([
  "and",
  "or",
  "unless",
  "atan2",
  "bool",
  "offset",
  "by",
  "without",
  "on",
  "ignoring",
  "group_left",
  "group_right",
  "inf",
  "nan",
]);

/**
 * The metric names a PromQL expression selects: its identifiers that are not
 * functions, aggregation operators, keywords, label names (inside `{…}`,
 * `by (…)`, `on (…)` …) or strings. Throws on a call of something PromQL does
 * not know, so a misspelled function does not pass as a metric.
 */
export function metricNames(expr: string): string[] {
  const s = substituteVariables(expr)
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, " ") // strings
    .replace(/\{[^}]*\}/g, " ") // label matchers
    .replace(/\[[^\]]*\]/g, " ") // ranges and subqueries
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/gi, " ") // label lists
    .replace(/#.*$/gm, " "); // comments
  const names = new Set<string>();
  for (const m of s.matchAll(/(?<![\w.])[a-zA-Z_:][\w:]*/g)) {
    const word = m[0];
    const rest = s.slice(m.index! + word.length);
    if (/^\s*\(/.test(rest)) {
      if (!CALLABLE.has(word)) throw new Error(`${expr}: ${word}(…) is no PromQL function`);
      continue;
    }
    if (KEYWORDS.has(word.toLowerCase())) continue;
    names.add(word);
  }
  return [...names];
}

/**
 * The metric names an exposition (a `/metrics` answer) declares in its
 * `# TYPE` lines, histograms with their `_bucket`, `_sum` and `_count` series.
 */
export function exportedMetricNames(exposition: string): Set<string> {
  const names = new Set<string>();
  for (const m of exposition.matchAll(/^# TYPE (\S+) (\w+)$/gm)) {
    names.add(m[1]);
    if (m[2] === "histogram" || m[2] === "summary") {
      for (const suffix of ["_sum", "_count"]) names.add(`${m[1]}${suffix}`);
      if (m[2] === "histogram") names.add(`${m[1]}_bucket`);
    }
  }
  return names;
}
