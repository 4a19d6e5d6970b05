import { describe, expect, it } from "@effect/vitest"
import { LatencyHistogram } from "../../src/cli/LatencyHistogram.ts"

describe("latency histogram", () => {
  it("reports percentiles within 0.5% of the exact ones and the exact maximum", () => {
    const histogram = new LatencyHistogram()
    // Log-normal-ish latencies from 0.05 ms to a few seconds, like a loaded server's.
    const samples = Array.from({ length: 20_000 }, (_, i) => 0.05 * Math.exp(((i * 7919) % 20_000) / 1800))
    for (const s of samples) histogram.record(s)
    const sorted = [...samples].sort((a, b) => a - b)
    const exact = (p: number) => sorted[Math.ceil((p / 100) * sorted.length) - 1] ?? 0
    // Three significant digits: 0.5% at most, plus half a microsecond from rounding to whole microseconds.
    for (const p of [50, 90, 99, 99.9]) {
      expect(Math.abs(histogram.percentile(p) - exact(p)) / exact(p)).toBeLessThanOrEqual(
        0.005 + 0.0005 / exact(p),
      )
    }
    const summary = histogram.summary()
    expect(summary.count).toBe(20_000)
    expect(summary.max).toBe(sorted.at(-1))
    expect(summary.p99).toBeLessThanOrEqual(summary.max)
  })

  it("answers zeros when empty", () => {
    expect(new LatencyHistogram().summary()).toEqual({ count: 0, mean: 0, p50: 0, p90: 0, p99: 0, max: 0 })
  })
})
