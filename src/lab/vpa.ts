/**
 * A small, faithful model of the Vertical Pod Autoscaler's CPU recommender,
 * the lab bench's "VPA-style" policy: usage samples go into a decaying
 * histogram with exponentially growing buckets (first bucket 10m, each 5%
 * wider, as VPA's), weighted by the container's request (VPA weights CPU
 * samples by request, at least 100m) and decaying with a 24 h half-life; the
 * target is the 90th percentile plus a 15% safety margin. The lab applies it
 * as the CPU limit every minute. Pure: the caller passes times and samples.
 *
 * @module
 */

/** VPA's CPU histogram: first bucket size, millicores. */
const FIRST_BUCKET_MILLICORES = 10;
/** VPA's bucket growth ratio. */
const BUCKET_RATIO = 1.05;
/** VPA's histogram reaches 1000 cores. */
const MAX_MILLICORES = 1_000_000;
/** VPA's CPU histogram decay half-life, seconds. */
export const HALF_LIFE_SECONDS = 24 * 3600;
/** VPA's target percentile for CPU. */
export const TARGET_PERCENTILE = 0.9;
/** VPA's safety margin. */
export const SAFETY_MARGIN = 0.15;
/** How often the lab applies recommendations, seconds. */
export const APPLY_EVERY_SECONDS = 60;

/** Bucket index of a value. */
function bucketOf(millicores: number): number {
  if (millicores < FIRST_BUCKET_MILLICORES) return 0;
  // Bucket i starts at FIRST * (RATIO^i - 1) / (RATIO - 1).
  const i = Math.floor(
    Math.log(1 + (millicores * (BUCKET_RATIO - 1)) / FIRST_BUCKET_MILLICORES) /
      Math.log(BUCKET_RATIO),
  );
  return Math.min(i, bucketCount() - 1);
}

/** Start of bucket `i`, millicores. */
function bucketStart(i: number): number {
  return (FIRST_BUCKET_MILLICORES * (BUCKET_RATIO ** i - 1)) / (BUCKET_RATIO - 1);
}

function bucketCount(): number {
  return Math.ceil(
    Math.log(1 + (MAX_MILLICORES * (BUCKET_RATIO - 1)) / FIRST_BUCKET_MILLICORES) /
      Math.log(BUCKET_RATIO),
  ) + 1;
}

/** A decaying histogram of CPU usage, as VPA keeps per container. */
export interface CpuHistogram {
  /** Weight per bucket (sparse). */
  weights: Map<number, number>;
  /** Reference time of the decay, seconds. */
  referenceS: number;
}

/** An empty histogram. */
export function emptyHistogram(referenceS = 0): CpuHistogram {
  return { weights: new Map(), referenceS };
}

/**
 * Adds a usage sample taken at `tS` seconds: weight = max(request, 100m) in
 * cores, scaled by 2^((tS - reference) / half-life). Returns a new histogram.
 */
export function addSample(
  histogram: CpuHistogram,
  usageMillicores: number,
  requestMillicores: number,
  tS: number,
): CpuHistogram {
  const weight = (Math.max(requestMillicores, 100) / 1000) *
    2 ** ((tS - histogram.referenceS) / HALF_LIFE_SECONDS);
  const weights = new Map(histogram.weights);
  const bucket = bucketOf(Math.max(0, usageMillicores));
  weights.set(bucket, (weights.get(bucket) ?? 0) + weight);
  return { weights, referenceS: histogram.referenceS };
}

/** The value at percentile `p` (0..1): the end of the bucket where the cumulative weight reaches p; null when empty. */
export function histogramPercentile(histogram: CpuHistogram, p: number): number | null {
  const buckets = [...histogram.weights.entries()].filter(([, w]) => w > 0).sort((a, b) =>
    a[0] - b[0]
  );
  const total = buckets.reduce((s, [, w]) => s + w, 0);
  if (total === 0) return null;
  let cumulative = 0;
  for (const [i, w] of buckets) {
    cumulative += w;
    if (cumulative >= p * total) return bucketStart(i + 1);
  }
  return bucketStart(buckets[buckets.length - 1][0] + 1);
}

/**
 * The CPU limit VPA-style for a container: p90 × 1.15, never below the
 * request, in whole millicores; null without samples.
 */
export function recommendedLimit(
  histogram: CpuHistogram,
  requestMillicores: number,
): number | null {
  const p90 = histogramPercentile(histogram, TARGET_PERCENTILE);
  if (p90 === null) return null;
  return Math.max(requestMillicores, Math.ceil(p90 * (1 + SAFETY_MARGIN)));
}
