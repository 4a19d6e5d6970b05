/** Latency percentiles as reported, in milliseconds. */
export interface LatencySummary {
  readonly count: number
  readonly mean: number
  readonly p50: number
  readonly p90: number
  readonly p99: number
  readonly max: number
}

/**
 * Latencies counted in buckets of three significant digits of microseconds (a relative error of 0.5% at most), so a
 * replay of any length keeps a few thousand counters at most instead of every sample; the maximum is exact.
 */
export class LatencyHistogram {
  private readonly buckets = new Map<number, number>()
  private total = 0
  private sum = 0
  private largest = 0

  /** The bucket a latency in microseconds falls in: the value rounded to three significant digits. */
  static bucket(micros: number): number {
    if (micros < 1000) return micros
    const scale = 10 ** (Math.floor(Math.log10(micros)) - 2)
    return Math.round(micros / scale) * scale
  }

  record(millis: number): void {
    const micros = Math.max(0, Math.round(millis * 1000))
    const key = LatencyHistogram.bucket(micros)
    this.buckets.set(key, (this.buckets.get(key) ?? 0) + 1)
    this.total++
    this.sum += millis
    if (millis > this.largest) this.largest = millis
  }

  get count(): number {
    return this.total
  }

  /** The smallest recorded latency (within its bucket) that at least `p` percent of the samples do not exceed. */
  percentile(p: number): number {
    if (this.total === 0) return 0
    const rank = Math.max(1, Math.ceil((p / 100) * this.total))
    const keys = Array.from(this.buckets.keys()).sort((a, b) => a - b)
    let seen = 0
    for (const key of keys) {
      seen += this.buckets.get(key) ?? 0
      // Rounding to a bucket can land just above the exact maximum: never report more than was measured.
      if (seen >= rank) return Math.min(key / 1000, this.largest)
    }
    return this.largest
  }

  summary(): LatencySummary {
    return {
      count: this.total,
      mean: this.total === 0 ? 0 : this.sum / this.total,
      p50: this.percentile(50),
      p90: this.percentile(90),
      p99: this.percentile(99),
      max: this.largest,
    }
  }
}
