/**
 * A small Prometheus metrics registry (counters, gauges, histograms with
 * labels) rendered in the text exposition format, for agent and controller.
 *
 * @module
 */
import { getHeapStatistics } from "node:v8";

type Labels = Record<string, string>;

const NEEDS_ESCAPE = /[\\"\n]/;

/** A label value as the exposition format quotes it. */
function escapeLabelValue(value: string): string {
  if (!NEEDS_ESCAPE.test(value)) return value; // the common case: one test, no copies
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

function labelKey(labels: Labels | Series): string {
  if (labels instanceof Series) return labels.key;
  const keys = Object.keys(labels).sort();
  return keys.map((k) => `${k}="${escapeLabelValue(String(labels[k]))}"`).join(",");
}

/**
 * A set of labels rendered once, for setting several metrics of the same
 * series (the agent sets five gauges per container at every clearing).
 */
export class Series {
  /** The labels as the exposition format writes them, sorted by name. */
  readonly key: string;
  /** Renders `labels`. */
  constructor(labels: Labels) {
    this.key = labelKey(labels);
  }
}

interface Metric {
  name: string;
  help: string;
  type: "counter" | "gauge" | "histogram";
  render(): string[];
}

/** A monotonically increasing counter. */
export class Counter implements Metric {
  readonly type = "counter";
  readonly #values = new Map<string, number>();
  /** Creates a counter; register it with {@link Registry.add}. */
  constructor(readonly name: string, readonly help: string) {}
  /** Adds `value` (default 1). */
  inc(labels: Labels = {}, value = 1): void {
    const key = labelKey(labels);
    this.#values.set(key, (this.#values.get(key) ?? 0) + value);
  }
  /** The current value for `labels`. */
  get(labels: Labels = {}): number {
    return this.#values.get(labelKey(labels)) ?? 0;
  }
  /** Exposition lines. */
  render(): string[] {
    return [...this.#values].map(([k, v]) => `${this.name}${k ? `{${k}}` : ""} ${v}`);
  }
}

/** A value that goes up and down. */
export class Gauge implements Metric {
  readonly type = "gauge";
  readonly #values = new Map<string, number>();
  /** Creates a gauge. */
  constructor(readonly name: string, readonly help: string) {}
  /** Sets the value for `labels` (or a {@link Series}). */
  set(value: number, labels: Labels | Series = {}): void {
    this.#values.set(labelKey(labels), value);
  }
  /** Removes every series. */
  clear(): void {
    this.#values.clear();
  }

  /** Removes the series for `labels` (or a {@link Series}). */
  remove(labels: Labels | Series = {}): void {
    this.#values.delete(labelKey(labels));
  }
  /** The current value for `labels` (or a {@link Series}). */
  get(labels: Labels | Series = {}): number | undefined {
    return this.#values.get(labelKey(labels));
  }
  /** Exposition lines. */
  render(): string[] {
    return [...this.#values].map(([k, v]) => `${this.name}${k ? `{${k}}` : ""} ${v}`);
  }
}

/** A histogram of observations with fixed buckets. */
export class Histogram implements Metric {
  readonly type = "histogram";
  readonly #series = new Map<string, { counts: number[]; sum: number; count: number }>();
  /** Creates a histogram with upper bounds `buckets` (ascending). */
  constructor(readonly name: string, readonly help: string, readonly buckets: number[]) {}
  /** Records one observation. */
  observe(value: number, labels: Labels = {}): void {
    const key = labelKey(labels);
    let s = this.#series.get(key);
    if (s === undefined) {
      s = { counts: this.buckets.map(() => 0), sum: 0, count: 0 };
      this.#series.set(key, s);
    }
    this.buckets.forEach((b, i) => value <= b && s!.counts[i]++);
    s.sum += value;
    s.count++;
  }
  /** Exposition lines. */
  render(): string[] {
    const lines: string[] = [];
    for (const [key, s] of this.#series) {
      const sep = key ? `${key},` : "";
      this.buckets.forEach((b, i) =>
        lines.push(`${this.name}_bucket{${sep}le="${b}"} ${s.counts[i]}`)
      );
      lines.push(`${this.name}_bucket{${sep}le="+Inf"} ${s.count}`);
      lines.push(`${this.name}_sum${key ? `{${key}}` : ""} ${s.sum}`);
      lines.push(`${this.name}_count${key ? `{${key}}` : ""} ${s.count}`);
    }
    return lines;
  }
}

/** A set of metrics rendered together. */
export class Registry {
  readonly #metrics: Metric[] = [];
  readonly #collectors: (() => void)[] = [];
  /** Registers a metric and returns it. */
  add<T extends Metric>(metric: T): T {
    this.#metrics.push(metric);
    return metric;
  }
  /**
   * Registers a function that refreshes gauges from current state just
   * before each {@link Registry.render}. A collector that throws leaves its
   * gauges as they were; the others and the render go on.
   */
  onRender(collect: () => void): void {
    this.#collectors.push(collect);
  }
  /** The text exposition format (version 0.0.4), with the process's memory gauges. */
  render(): string {
    for (const collect of this.#collectors) {
      try {
        collect();
      } catch {
        // A broken collector must not take the whole scrape down.
      }
    }
    const memory = Deno.memoryUsage();
    const process = [
      "# HELP process_resident_memory_bytes Resident memory size in bytes.",
      "# TYPE process_resident_memory_bytes gauge",
      `process_resident_memory_bytes ${memory.rss}`,
      "# HELP deno_heap_used_bytes V8 heap in use, bytes.",
      "# TYPE deno_heap_used_bytes gauge",
      `deno_heap_used_bytes ${memory.heapUsed}`,
      "# HELP deno_heap_limit_bytes V8 heap size limit in force (DENO_V8_FLAGS --max-old-space-size plus the young generation), bytes.",
      "# TYPE deno_heap_limit_bytes gauge",
      `deno_heap_limit_bytes ${getHeapStatistics().heap_size_limit}`,
    ];
    const blocks = this.#metrics.map((m) =>
      [`# HELP ${m.name} ${m.help}`, `# TYPE ${m.name} ${m.type}`, ...m.render()].join("\n")
    );
    return [...blocks, process.join("\n")].join("\n") + "\n";
  }
}

/** Content type of {@link Registry.render}. */
export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";
