import { HttpClient, HttpClientRequest } from "@effect/platform"
import { NodeHttpClient } from "@effect/platform-node"
import { Clock, Duration, Effect, Layer, Random } from "effect"
import { AppConfig } from "../Config.ts"
import { Metrics } from "../Metrics.ts"
import { type AttemptOutcome, type ClaimedDelivery, WebhookStore } from "../persistence/WebhookStore.ts"
import { signatureHeaders } from "./WebhookSignature.ts"
import { guardedLookup, refusedLiteral } from "./WebhookTarget.ts"

/** How much of a failing receiver's answer is kept with the attempt. */
const ERROR_BODY_CHARS = 200

/** An attempt's result before it is stored: the receiver's status, or why there was none. */
interface Sent {
  readonly status: number | null
  readonly error: string | null
}

/**
 * The delay before attempt `n + 1` after `n` failed ones: WEBHOOK_BACKOFF doubled per failure, capped at
 * WEBHOOK_BACKOFF_MAX, with "equal jitter" (between half and all of it) so receivers that failed together are not
 * retried together. Effect's Random, so a test can seed it.
 */
export const backoff = (failed: number, base: Duration.Duration, max: Duration.Duration) =>
  Effect.map(Random.next, (r) => {
    const full = Math.min(Duration.toMillis(max), Duration.toMillis(base) * 2 ** Math.max(0, failed - 1))
    return full / 2 + (full / 2) * r
  })

/**
 * Sends due webhook deliveries: claims them (WebhookStore.claim), posts each signed body with a timeout per
 * attempt, and records every attempt; a failed one is retried later with backoff, up to WEBHOOK_MAX_ATTEMPTS,
 * then it is dead (a manual retry schedules it again). Time is Effect's Clock (TestClock in tests).
 */
export class WebhookDelivery extends Effect.Service<WebhookDelivery>()("webhooks/WebhookDelivery", {
  effect: Effect.gen(function* () {
    const config = yield* AppConfig
    const store = yield* WebhookStore
    const metrics = yield* Metrics
    const client = yield* HttpClient.HttpClient
    /**
     * A worker holds a claimed delivery this long: an attempt ends by its timeout, and recording it takes one short
     * statement; the room beyond that is what a delivery of a killed process waits before another worker takes it.
     */
    const leaseMs = 2 * Duration.toMillis(config.webhookTimeout) + 1000

    const send = (delivery: ClaimedDelivery, at: number): Effect.Effect<Sent> => {
      const refused = refusedLiteral(delivery.url, config.webhookAllowPrivate)
      if (refused !== undefined) return Effect.succeed({ status: null, error: `refused: ${refused}` })
      const request = HttpClientRequest.post(delivery.url).pipe(
        HttpClientRequest.setHeaders({
          ...signatureHeaders(delivery.secret, delivery.event_id, new Date(at), delivery.payload),
          "user-agent": "click-clusters-webhooks",
        }),
        HttpClientRequest.bodyText(delivery.payload, "application/json"),
      )
      return client.execute(request).pipe(
        Effect.flatMap(
          (response): Effect.Effect<Sent> =>
            response.status >= 200 && response.status < 300
              ? Effect.as(Effect.ignore(response.text), { status: response.status, error: null })
              : response.text.pipe(
                  Effect.orElseSucceed(() => ""),
                  Effect.map((text) => ({
                    status: response.status,
                    error: `HTTP ${response.status}${text === "" ? "" : `: ${text.slice(0, ERROR_BODY_CHARS)}`}`,
                  })),
                ),
        ),
        Effect.timeoutFail({
          duration: config.webhookTimeout,
          onTimeout: () => `timed out after ${Duration.format(config.webhookTimeout)}`,
        }),
        Effect.catchAll((error) =>
          Effect.succeed<Sent>({
            status: null,
            error: typeof error === "string" ? error : describe(error.cause ?? error),
          }),
        ),
      )
    }

    /** One attempt of a claimed delivery, recorded with its outcome. */
    const attempt = Effect.fn("WebhookDelivery.attempt")(function* (delivery: ClaimedDelivery) {
      yield* Effect.annotateCurrentSpan({ delivery: delivery.id, event: delivery.event_id })
      const at = yield* Clock.currentTimeMillis
      const start = performance.now()
      // A process that stops mid-attempt gives the delivery back at once rather than leaving it to its lease.
      const sent = yield* send(delivery, at).pipe(
        Effect.onInterrupt(() => store.release(delivery.id).pipe(Effect.ignore)),
      )
      const latencyMs = performance.now() - start
      const failed = delivery.attempts + 1
      const delivered = sent.error === null
      const dead = !delivered && failed >= config.webhookMaxAttempts
      const outcome: AttemptOutcome = {
        at,
        status: sent.status,
        latencyMs,
        error: sent.error,
        state: delivered ? "delivered" : dead ? "dead" : "pending",
        nextAt:
          delivered || dead
            ? at
            : at + (yield* backoff(failed, config.webhookBackoff, config.webhookBackoffMax)),
      }
      yield* store.settle(delivery.id, outcome)
      metrics.webhookDeliveries.inc({ outcome: delivered ? "delivered" : dead ? "dead" : "retry" })
      metrics.webhookLatency.observe(latencyMs / 1000)
      if (!delivered)
        yield* Effect.logInfo("webhook attempt failed").pipe(
          Effect.annotateLogs({ delivery: delivery.id, error: sent.error, dead }),
        )
    })

    return {
      /**
       * Claims the deliveries due now (up to WEBHOOK_CONCURRENCY) and attempts them concurrently; answers how many
       * it claimed. Only a (subscription, page)'s first pending event is ever due, so concurrency keeps order.
       */
      runOnce: Effect.gen(function* () {
        const now = yield* Clock.currentTimeMillis
        const claimed = yield* store.claim(now, leaseMs, config.webhookConcurrency)
        yield* Effect.forEach(claimed, attempt, { concurrency: config.webhookConcurrency, discard: true })
        return claimed.length
      }),
    }
  }),
}) {
  /**
   * The outgoing HTTP client: Node's agent, connecting only to the addresses WebhookTarget allows (checked as
   * they are resolved), so the check cannot be bypassed by DNS.
   */
  static readonly client = Layer.unwrapEffect(
    Effect.map(AppConfig, (config) =>
      NodeHttpClient.layerWithoutAgent.pipe(
        Layer.provide(NodeHttpClient.makeAgentLayer({ lookup: guardedLookup(config.webhookAllowPrivate) })),
      ),
    ),
  )
}

/** A failure's message, with the code of a system error (ECONNREFUSED...). */
const describe = (error: unknown): string => {
  if (error instanceof Error) {
    const code = (error as NodeJS.ErrnoException).code
    const inner = describeCause(error)
    return code === undefined ? inner : `${code}: ${inner}`
  }
  return String(error)
}

const describeCause = (error: Error): string =>
  error.cause instanceof Error ? `${error.message} (${describe(error.cause)})` : error.message
