/**
 * Boundary validation of markets: turns untrusted JSON into a typed {@link Market}
 * or a one-line error that names the bid and the field.
 *
 * @module
 */
import { z } from "zod";
import type { Market } from "./types.ts";

/** The largest CPU amount accepted, in millicores (a billion cores): sums of thousands stay exact. */
export const MAX_MILLICORES = 1e12;
/** The accepted range of bid weights. */
export const WEIGHT_RANGE = { min: 1e-9, max: 1e9 } as const;

/** A market that failed validation; `message` is one line naming the bid and field. */
export class MarketInputError extends Error {
  /** The offending field, e.g. `floor` or `capacity`; absent for whole-input problems. */
  readonly field?: string;
  /** The id of the offending bid, when the problem is inside one bid that has an id. */
  readonly bidId?: string;

  /** Creates the error; `field` and `bidId` locate the problem. */
  constructor(message: string, field?: string, bidId?: string) {
    super(message);
    this.name = "MarketInputError";
    this.field = field;
    this.bidId = bidId;
  }
}

const RULES: Record<string, string> = {
  capacity: `must be a non-negative integer number of millicores, at most ${MAX_MILLICORES}`,
  surplus: `must be "distribute" or "retain"`,
  bids: "must be an array of bids",
  id: "must be a non-empty string",
  weight: `must be a finite number from ${WEIGHT_RANGE.min} to ${WEIGHT_RANGE.max}`,
  floor: `must be a non-negative integer number of millicores, at most ${MAX_MILLICORES}`,
  demand: `must be a non-negative integer number of millicores, at most ${MAX_MILLICORES}`,
  cap: `must be a non-negative integer number of millicores, at most ${MAX_MILLICORES}`,
  tier: `must be "protected" or "elastic"`,
  usage: `must be a non-negative integer number of millicores, at most ${MAX_MILLICORES}`,
  headroom: `must be a non-negative integer number of millicores, at most ${MAX_MILLICORES}`,
  elasticYields: "must be true or false",
  yieldingCapacity:
    `must be a non-negative integer number of millicores, at most ${MAX_MILLICORES}`,
  protectedLimit: `must be "target" or "cap"`,
};

const millicores = z.number().int().min(0).max(MAX_MILLICORES);

const bidSchema = z.strictObject({
  id: z.string().min(1),
  weight: z.number().min(WEIGHT_RANGE.min).max(WEIGHT_RANGE.max),
  floor: millicores,
  demand: millicores,
  cap: millicores,
  tier: z.enum(["protected", "elastic"]).optional(),
  usage: millicores.optional(),
});

const marketSchema = z.strictObject({
  capacity: millicores,
  surplus: z.enum(["distribute", "retain"]).optional(),
  headroom: millicores.optional(),
  elasticYields: z.boolean().optional(),
  yieldingCapacity: millicores.optional(),
  protectedLimit: z.enum(["target", "cap"]).optional(),
  bids: z.array(bidSchema),
});

/** Marks a bare `NaN`/`Infinity` token that {@link parseMarketJson} let through, so errors can name it. */
const NON_FINITE = "\u0000non-finite:";

/**
 * Validates an already-parsed JSON value as a market.
 *
 * @throws {MarketInputError} naming the bid (by index and id) and the field.
 */
export function parseMarket(raw: unknown): Market {
  const result = marketSchema.safeParse(raw);
  if (!result.success) throw describeIssue(raw, result.error.issues[0]);
  const market = result.data;
  if (market.yieldingCapacity !== undefined && market.yieldingCapacity < market.capacity) {
    throw new MarketInputError(
      `market: field "yieldingCapacity" must be at least capacity ${market.capacity}, got ${market.yieldingCapacity}`,
      "yieldingCapacity",
    );
  }
  const seen = new Map<string, number>();
  market.bids.forEach((bid, index) => {
    const where = `bids[${index}] (id ${JSON.stringify(bid.id)})`;
    if (bid.floor > bid.cap) {
      throw new MarketInputError(
        `${where}: field "floor" must not exceed cap ${bid.cap}, got ${bid.floor}`,
        "floor",
        bid.id,
      );
    }
    const first = seen.get(bid.id);
    if (first !== undefined) {
      throw new MarketInputError(
        `${where}: field "id" must be unique, got a duplicate of bids[${first}]`,
        "id",
        bid.id,
      );
    }
    seen.set(bid.id, index);
  });
  return market;
}

/**
 * Parses JSON text and validates it as a market. Bare `NaN` and `Infinity`
 * (not JSON, but what careless encoders write) are reported against the field
 * that holds them instead of as a syntax error.
 *
 * @throws {MarketInputError} for text that is not JSON or not a valid market.
 */
export function parseMarketJson(text: string): Market {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    const marked = markNonFinite(text);
    try {
      raw = JSON.parse(marked);
    } catch {
      throw new MarketInputError(`not valid JSON: ${(error as Error).message}`);
    }
  }
  return parseMarket(raw);
}

function describeIssue(raw: unknown, issue: z.core.$ZodIssue): MarketInputError {
  const path = issue.path.map((p) => (typeof p === "symbol" ? p.toString() : p));
  if (issue.code === "unrecognized_keys") {
    const where = path.length === 0 ? { text: "market", bidId: undefined } : locate(raw, path);
    const field = issue.keys[0];
    return new MarketInputError(
      `${where.text}: unknown field ${JSON.stringify(field)}`,
      field,
      where.bidId,
    );
  }
  const field = path.length === 0 ? undefined : String(path[path.length - 1]);
  const owner = path.slice(0, -1);
  const where = owner.length === 0 ? { text: "market", bidId: undefined } : locate(raw, owner);
  const value = valueAt(raw, path);
  if (field === undefined) {
    return new MarketInputError(`market: must be a JSON object, got ${show(value)}`);
  }
  if (typeof path[path.length - 1] === "number") {
    // A bid that is not an object at all.
    return new MarketInputError(`bids[${field}]: must be an object, got ${show(value)}`, "bids");
  }
  if (value === undefined) {
    return new MarketInputError(`${where.text}: field "${field}" is missing`, field, where.bidId);
  }
  const rule = RULES[field] ?? issue.message;
  return new MarketInputError(
    `${where.text}: field "${field}" ${rule}, got ${show(value)}`,
    field,
    where.bidId,
  );
}

function locate(raw: unknown, path: readonly PropertyKey[]): { text: string; bidId?: string } {
  if (path.length === 2 && path[0] === "bids" && typeof path[1] === "number") {
    const bid = valueAt(raw, path);
    const id = isRecord(bid) && typeof bid.id === "string" ? bid.id : undefined;
    return {
      text: id === undefined ? `bids[${path[1]}]` : `bids[${path[1]}] (id ${JSON.stringify(id)})`,
      bidId: id,
    };
  }
  return { text: path.map(String).join(".") };
}

function valueAt(raw: unknown, path: readonly PropertyKey[]): unknown {
  let value: unknown = raw;
  for (const key of path) {
    if (!isRecord(value) && !Array.isArray(value)) return undefined;
    value = (value as Record<PropertyKey, unknown>)[key];
  }
  return value;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function show(value: unknown): string {
  if (typeof value === "string" && value.startsWith(NON_FINITE)) {
    return value.slice(NON_FINITE.length);
  }
  const text = JSON.stringify(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

/** Replaces bare NaN / Infinity / -Infinity tokens outside strings with marked strings. */
function markNonFinite(text: string): string {
  let out = "";
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === '"') {
      let j = i + 1;
      while (j < text.length && text[j] !== '"') j += text[j] === "\\" ? 2 : 1;
      out += text.slice(i, j + 1);
      i = j + 1;
      continue;
    }
    const match = /^(-?Infinity|NaN)/.exec(text.slice(i, i + 9));
    if (match) {
      out += JSON.stringify(NON_FINITE + match[1]);
      i += match[1].length;
      continue;
    }
    out += c;
    i++;
  }
  return out;
}
