/**
 * The metrics registry's label handling: values quoted as the Prometheus text
 * format wants them (backslash, double quote and newline escaped, nothing
 * else touched), labels in name order whatever order they were given in.
 */
import { strict as assert } from "node:assert";
import { Counter, Gauge, Series } from "../../src/metrics/mod.ts";

Deno.test("label values: escaped where the exposition format needs it, kept as they are otherwise", () => {
  const gauge = new Gauge("g", "help");
  gauge.set(1, { pod: 'a\\b"c\nd', namespace: "ns" });
  gauge.set(2, { pod: "plain-pod.with_dots", namespace: "ns" });
  assert.deepEqual(gauge.render(), [
    'g{namespace="ns",pod="a\\\\b\\"c\\nd"} 1',
    'g{namespace="ns",pod="plain-pod.with_dots"} 2',
  ]);
  assert.equal(gauge.get({ namespace: "ns", pod: 'a\\b"c\nd' }), 1, "the same series in any order");
});

Deno.test("label order does not make a new series", () => {
  const counter = new Counter("c_total", "help");
  counter.inc({ b: "2", a: "1" });
  counter.inc({ a: "1", b: "2" }, 2);
  assert.deepEqual(counter.render(), ['c_total{a="1",b="2"} 3']);
});

Deno.test("a Series rendered once is the same series as its labels, in any order", () => {
  const gauge = new Gauge("g", "help");
  const series = new Series({ pod: 'a"b', container: "c", namespace: "n" });
  gauge.set(1, series);
  assert.equal(gauge.get({ namespace: "n", pod: 'a"b', container: "c" }), 1);
  gauge.set(2, { container: "c", namespace: "n", pod: 'a"b' });
  assert.equal(gauge.get(series), 2);
  assert.deepEqual(gauge.render(), ['g{container="c",namespace="n",pod="a\\"b"} 2']);
  gauge.remove(series);
  assert.deepEqual(gauge.render(), []);
});
