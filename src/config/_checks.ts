/**
 * Hand-written option checks: what zod does for the agent's options, without
 * loading zod (several MB of memory in a process that runs on every node).
 * Each check takes an option's text and returns its value or a message; the
 * messages read like the rest ("must be at least 100"), and {@link readOptions}
 * prefixes the flag or variable and appends the value.
 *
 * @module
 */

/** A check's verdict on one option's text. */
export type CheckResult<T> = { ok: true; value: T } | { ok: false; message: string };

/** Checks one option's text. */
export type OptionCheck<T> = (text: string) => CheckResult<T>;

/** One failed check, located by option name (the shape of a zod issue). */
export interface OptionIssue {
  /** `[optionName]`. */
  path: readonly PropertyKey[];
  /** What is wrong, e.g. `must be at least 100`. */
  message: string;
}

/**
 * What {@link readOptions} validates option texts with: a zod schema, or
 * {@link checkedOptions}. Only the first issue is reported.
 */
export interface OptionsSchema<T> {
  /** Validates every option's text. */
  safeParse(
    raw: Record<string, string>,
  ):
    | { success: true; data: T }
    | { success: false; error: { issues: readonly OptionIssue[] } };
}

/** The value type of an {@link OptionCheck}. */
export type CheckValue<C> = C extends OptionCheck<infer T> ? T : never;

/**
 * An {@link OptionsSchema} from one check per option, run in the order given;
 * the first failure is the first issue (as zod reports an object's).
 */
export function checkedOptions<C extends Record<string, OptionCheck<unknown>>>(
  checks: C,
): OptionsSchema<{ [K in keyof C]: CheckValue<C[K]> }> {
  return {
    safeParse(raw) {
      const data: Record<string, unknown> = {};
      for (const [name, check] of Object.entries(checks)) {
        const result = check(raw[name] ?? "");
        if (!result.ok) {
          return { success: false, error: { issues: [{ path: [name], message: result.message }] } };
        }
        data[name] = result.value;
      }
      return { success: true, data: data as { [K in keyof C]: CheckValue<C[K]> } };
    },
  };
}

/** A bound and, optionally, the message when it is not met. */
type Bound = number | [number, string];

function bound(rule: Bound | undefined): [number, string | undefined] | undefined {
  if (rule === undefined) return undefined;
  return typeof rule === "number" ? [rule, undefined] : rule;
}

/** Rules of {@link textOption}, checked in this order. */
export interface TextRules {
  /** At least this many characters (message default: `must not be empty` for 1). */
  minLength?: Bound;
  /** Matches this pattern, else this message. */
  pattern?: [RegExp, string];
  /** At most this many characters. */
  maxLength?: Bound;
  /** Passes this test, else this message. */
  refine?: [(text: string) => boolean, string];
}

/** A text option. */
export function textOption(rules: TextRules = {}): OptionCheck<string> {
  const min = bound(rules.minLength);
  const max = bound(rules.maxLength);
  return (text) => {
    if (min !== undefined && text.length < min[0]) {
      const fallback = min[0] === 1 ? "must not be empty" : `must be at least ${min[0]} characters`;
      return { ok: false, message: min[1] ?? fallback };
    }
    if (rules.pattern !== undefined && !rules.pattern[0].test(text)) {
      return { ok: false, message: rules.pattern[1] };
    }
    if (max !== undefined && text.length > max[0]) {
      return { ok: false, message: max[1] ?? `must be at most ${max[0]} characters` };
    }
    if (rules.refine !== undefined && !rules.refine[0](text)) {
      return { ok: false, message: rules.refine[1] };
    }
    return { ok: true, value: text };
  };
}

/** Rules of {@link numberOption}, checked in this order after the conversion. */
export interface NumberRules {
  /** The message when the text is not a finite number, e.g. `must be a number of seconds`. */
  notNumber: string;
  /** A whole number (message default: `must be a whole number`). */
  integer?: boolean | string;
  /** Above this (message default: `must be above N`). */
  above?: Bound;
  /** At least this (message default: `must be at least N`). */
  min?: Bound;
  /** At most this (message default: `must be at most N`). */
  max?: Bound;
}

/**
 * A number option. The text is converted as `Number(text)` (as zod's
 * `z.coerce.number()` does: `""` is 0, surrounding blanks are ignored); a
 * result that is not finite is not a number.
 */
export function numberOption(rules: NumberRules): OptionCheck<number> {
  const above = bound(rules.above);
  const min = bound(rules.min);
  const max = bound(rules.max);
  return (text) => {
    const value = Number(text);
    if (!Number.isFinite(value)) return { ok: false, message: rules.notNumber };
    if (rules.integer !== undefined && rules.integer !== false && !Number.isSafeInteger(value)) {
      const message = typeof rules.integer === "string" ? rules.integer : "must be a whole number";
      return { ok: false, message };
    }
    if (above !== undefined && !(value > above[0])) {
      return { ok: false, message: above[1] ?? `must be above ${above[0]}` };
    }
    if (min !== undefined && value < min[0]) {
      return { ok: false, message: min[1] ?? `must be at least ${min[0]}` };
    }
    if (max !== undefined && value > max[0]) {
      return { ok: false, message: max[1] ?? `must be at most ${max[0]}` };
    }
    return { ok: true, value };
  };
}

/** An option that must be one of `values`, else `message`. */
export function choiceOption<const V extends readonly string[]>(
  values: V,
  message: string,
): OptionCheck<V[number]> {
  return (text) =>
    (values as readonly string[]).includes(text)
      ? { ok: true, value: text as V[number] }
      : { ok: false, message };
}
