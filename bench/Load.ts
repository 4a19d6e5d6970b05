import { loadavg } from "node:os"
import autocannon from "autocannon"
import { Effect } from "effect"
import { LatencyHistogram, type LatencySummary } from "../src/cli/LatencyHistogram.ts"
import { BenchError } from "./Processes.ts"
import type { Bodies } from "./Workload.ts"

/** One load-generator run against one endpoint at one number of connections. */
export interface Measurement {
  readonly connections: number
  readonly seconds: number
  /** Answered requests (any status). */
  readonly requests: number
  readonly rps: number
  /** Every answered request's latency (not only 2xx), microsecond resolution. */
  readonly latencyMs: LatencySummary
  /** Connection errors and timeouts (no answer). */
  readonly errors: number
  readonly timeouts: number
  readonly non2xx: number
  readonly statusCodes: Readonly<Record<string, number>>
  /** The machine's 1-minute load average when the run started: other work on the box shows here. */
  readonly loadAverage: number
}

export interface LoadSpec {
  readonly url: string
  readonly path: string
  readonly bodies: Bodies
  readonly connections: number
  /** Run for this many seconds, or until `amount` requests were answered. */
  readonly seconds?: number
  readonly amount?: number
  /** Called with each answer's status and body (costs a string per answer: only for checks). */
  readonly onBody?: (status: number, body: string) => void
}

/**
 * Runs autocannon in this process. Each request takes the pool's next body (`setupRequest`), so concurrent
 * connections spread over the pages as trackers would, instead of every connection walking the same list. The
 * latency is recorded from autocannon's per-response time: its own histogram has a 1 ms floor, too coarse for a
 * server that answers in a fraction of one.
 */
export const runLoad = (spec: LoadSpec): Effect.Effect<Measurement, BenchError> =>
  Effect.async<Measurement, BenchError>((resume) => {
    const latency = new LatencyHistogram()
    const load = loadavg()[0] ?? 0
    const onBody = spec.onBody
    const instance = autocannon(
      {
        url: spec.url,
        connections: spec.connections,
        ...(spec.amount === undefined ? { duration: spec.seconds ?? 10 } : { amount: spec.amount }),
        timeout: 30,
        requests: [
          {
            method: "POST",
            path: spec.path,
            headers: { "content-type": "application/json" },
            setupRequest: (request) => {
              request.body = spec.bodies.next()
              return request
            },
            ...(onBody === undefined
              ? {}
              : { onResponse: (status: number, body: string) => onBody(status, body) }),
          },
        ],
      },
      (error, result) => {
        if (error !== null && error !== undefined) {
          resume(Effect.fail(new BenchError({ message: `autocannon failed: ${String(error)}` })))
          return
        }
        const statusCodes: Record<string, number> = {}
        for (const [status, stats] of Object.entries(result.statusCodeStats ?? {}))
          statusCodes[status] = stats.count ?? 0
        const requests = latency.count
        resume(
          Effect.succeed({
            connections: spec.connections,
            seconds: result.duration,
            requests,
            rps: result.duration > 0 ? requests / result.duration : 0,
            latencyMs: latency.summary(),
            errors: result.errors,
            timeouts: result.timeouts,
            non2xx: result.non2xx,
            statusCodes,
            loadAverage: load,
          }),
        )
      },
    )
    instance.on("response", (_client, _status, _bytes, responseTime) => latency.record(responseTime))
    return Effect.sync(() => instance.stop())
  })
