import assert from "node:assert/strict";
import fc from "fast-check";
import {
  formatMillicores,
  isQuantity,
  parseMillicores,
  quantitiesEqual,
} from "../../src/api/mod.ts";

Deno.test("quantity: CPU quantities parse to millicores, rounding up like the API server", () => {
  const cases: [string, number][] = [
    ["250m", 250],
    ["1", 1000],
    ["1.5", 1500],
    ["0.1", 100],
    [".5", 500],
    ["2.", 2000],
    ["0.5m", 1],
    ["1.0001", 1001],
    ["100u", 1],
    ["5n", 1],
    ["1k", 1_000_000],
    ["1Ki", 1_024_000],
    ["1e3", 1_000_000],
    ["1e-3", 1],
    ["-1", -1000],
  ];
  for (const [text, expected] of cases) assert.equal(parseMillicores(text), expected, text);
  for (const bad of ["", "abc", "1.2.3", "m", "1mm", "1 m", "0x10", "1KI"]) {
    assert.equal(isQuantity(bad), false, bad);
    assert.equal(parseMillicores(bad), null, bad);
  }
});

Deno.test("quantity property: formatMillicores and parseMillicores round-trip", () => {
  fc.assert(fc.property(fc.integer({ min: 0, max: 1e9 }), (m) => {
    assert.equal(parseMillicores(formatMillicores(m)), m);
  }));
  assert.equal(formatMillicores(2000), "2");
  assert.equal(formatMillicores(1500), "1500m");
});

Deno.test("quantitiesEqual: by value as the API server compares them, never by spelling", () => {
  assert.equal(quantitiesEqual("1Gi", "1024Mi"), true);
  assert.equal(quantitiesEqual("64Mi", "65536Ki"), true);
  assert.equal(quantitiesEqual("1G", "1000M"), true);
  assert.equal(quantitiesEqual("1G", "1Gi"), false);
  assert.equal(quantitiesEqual("500m", "0.5"), true);
  assert.equal(quantitiesEqual("lots", "lots"), false, "not a quantity: never equal");
});
