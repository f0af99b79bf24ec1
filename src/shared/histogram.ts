// Query and transaction latency histograms, kept per worker and per (pool, user) without
// allocation on the hot path: a fixed bucket table; the exporter sums every worker's copy.

/** Upper bounds in seconds (Prometheus `le`); the last bucket is +Inf. */
export const BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export interface HistogramData {
  /** Non-cumulative counts per bucket, BUCKETS.length + 1 entries (+Inf last). */
  counts: number[];
  sum: number;
}

export class LatencyHistogram {
  readonly counts = new Float64Array(BUCKETS.length + 1);
  sum = 0;

  observe(seconds: number): void {
    let i = 0;
    while (i < BUCKETS.length && seconds > BUCKETS[i]) i++;
    this.counts[i]++;
    this.sum += seconds;
  }

  data(): HistogramData {
    return { counts: Array.from(this.counts), sum: this.sum };
  }
}

/** The two histograms of one (pool, user) on one worker. */
export class PoolLatency {
  readonly query = new LatencyHistogram();
  readonly xact = new LatencyHistogram();
}
