import { describe, expect, layer } from "@effect/vitest"
import { Clock, ConfigProvider, Effect, Layer, TestClock } from "effect"
import { AppConfig } from "../../src/Config.ts"
import { Metrics } from "../../src/Metrics.ts"
import { eventPayload } from "../../src/persistence/Outbox.ts"
import { WebhookInterest } from "../../src/persistence/WebhookInterest.ts"
import { WebhookStore } from "../../src/persistence/WebhookStore.ts"
import { WebhookDelivery } from "../../src/webhooks/WebhookDelivery.ts"
import { newSecret } from "../../src/webhooks/WebhookSignature.ts"
import { sharedDatabase } from "../support/PageServices.ts"
import { storageModes } from "../support/StorageModes.ts"
import { WebhookReceiver } from "./WebhookReceiver.ts"

const env = {
  LOG_LEVEL: "error",
  WEBHOOK_ALLOW_PRIVATE: "true",
  WEBHOOK_BACKOFF: "10 seconds",
  WEBHOOK_BACKOFF_MAX: "1 hour",
  WEBHOOK_MAX_ATTEMPTS: "5",
}

/** The delivery service alone (no worker loop): the test drives each pass, on a TestClock. */
const delivery = WebhookDelivery.Default.pipe(
  Layer.provide(WebhookDelivery.client),
  Layer.provideMerge(WebhookStore.Default),
  Layer.provide(WebhookInterest.Default),
  Layer.provide(Metrics.Default),
  Layer.provideMerge(AppConfig.Default),
  Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env))))),
)

describe.each(storageModes())("webhook backoff on a TestClock, $name database", (mode) => {
  layer(sharedDatabase(mode), { timeout: 120_000 })((it) => {
    it.scoped(
      "500 three times then 200: each retry comes due only after its backoff (doubling, with jitter), the same event each time",
      () =>
        Effect.gen(function* () {
          const receiver = yield* Effect.acquireRelease(
            Effect.promise(() => WebhookReceiver.start((n) => (n < 3 ? 500 : 200))),
            (r) => Effect.promise(() => r.close()),
          )
          const { runOnce } = yield* WebhookDelivery
          const store = yield* WebhookStore
          const subscription = yield* store.create({
            id: crypto.randomUUID(),
            url: receiver.url,
            events: ["export.completed"],
            pages: null,
            thresholds: [],
            secret: newSecret(),
          })
          receiver.secret = subscription.secret
          const id = crypto.randomUUID()
          const at = yield* Clock.currentTimeMillis
          yield* store.publish([
            {
              id,
              type: "export.completed",
              page: null,
              threshold: null,
              at,
              payload: eventPayload(id, "export.completed", at, { export_id: "x" }),
            },
          ])
          const due = (ms: number) => Effect.zipRight(TestClock.adjust(ms), runOnce)

          expect(yield* runOnce).toBe(1)
          expect(receiver.received.map((r) => r.status)).toEqual([500])
          // The n-th retry waits between half and all of 10 s × 2^(n-1).
          for (const wait of [10_000, 20_000, 40_000]) {
            expect(yield* runOnce).toBe(0)
            expect(yield* due(wait / 2 - 1)).toBe(0)
            expect(yield* due(wait / 2 + 1)).toBe(1)
          }
          expect(receiver.received.map((r) => r.status)).toEqual([500, 500, 500, 200])
          expect(new Set(receiver.received.map((r) => r.id))).toEqual(new Set([id]))
          expect(receiver.received.every((r) => r.verified)).toBe(true)
          const [settled] = yield* store.deliveries(subscription.id, { limit: 10 })
          expect(settled?.state).toBe("delivered")
          expect(settled?.attempt_log.map((a) => a.status)).toEqual([500, 500, 500, 200])
          // Nothing more is ever due.
          expect(yield* due(600_000)).toBe(0)
        }).pipe(
          Effect.provide(delivery),
          // Signatures carry the clock's time, which the receiver checks against its own: start at the real time
          // (before the services start, whose periodic work would otherwise be run for every period since 1970).
          (inner) => Effect.zipRight(TestClock.setTime(Date.now()), inner),
        ),
    )
  })
})
