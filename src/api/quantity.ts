/**
 * Kubernetes resource quantities for CPU: parsing to integer millicores (as
 * the API server's `MilliValue`, rounding up) and formatting back.
 *
 * @module
 */

const QUANTITY = /^([+-]?)(\d+\.?\d*|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?\d+)?$/;
const DECIMAL_SI: Record<string, number> = {
  n: -9,
  u: -6,
  m: -3,
  "": 0,
  k: 3,
  M: 6,
  G: 9,
  T: 12,
  P: 15,
  E: 18,
};
const BINARY_SI: Record<string, number> = { Ki: 1, Mi: 2, Gi: 3, Ti: 4, Pi: 5, Ei: 6 };

/** Whether `text` is a Kubernetes quantity (the grammar of CEL's `isQuantity`). */
export function isQuantity(text: string): boolean {
  return QUANTITY.test(text);
}

/**
 * A quantity in millicores, rounded up to a whole millicore as the API server
 * does (`0.5m` is 1m); null when `text` is not a quantity.
 */
export function parseMillicores(text: string): number | null {
  const match = QUANTITY.exec(text);
  if (match === null) return null;
  const [, sign, number, suffix = ""] = match;
  const [whole, fraction = ""] = number.split(".");
  let exponent10 = 3 - fraction.length; // value × 1000, with the fraction's digits as an integer
  let binary = 0;
  if (suffix in DECIMAL_SI) exponent10 += DECIMAL_SI[suffix];
  else if (suffix in BINARY_SI) binary = BINARY_SI[suffix];
  else exponent10 += Number(suffix.slice(1));
  if (Math.abs(exponent10) > 400) return exponent10 > 0 ? Number.POSITIVE_INFINITY : 0;
  let numerator = BigInt((whole || "0") + fraction) * 1024n ** BigInt(binary);
  let denominator = 1n;
  if (exponent10 >= 0) numerator *= 10n ** BigInt(exponent10);
  else denominator = 10n ** BigInt(-exponent10);
  let millis = numerator / denominator + (numerator % denominator === 0n ? 0n : 1n);
  if (sign === "-") millis = -(numerator / denominator);
  return Number(millis);
}

/** Formats millicores canonically: whole cores without a suffix (`2`), otherwise `1500m`. */
export function formatMillicores(millicores: number): string {
  return millicores % 1000 === 0 ? String(millicores / 1000) : `${millicores}m`;
}

/**
 * Whether two quantities have the same value (`1Gi` and `1024Mi` do), as the
 * API server compares them; false when either is not a quantity.
 */
export function quantitiesEqual(a: string, b: string): boolean {
  const x = parseMillicores(a);
  const y = parseMillicores(b);
  return x !== null && y !== null && x === y;
}
