import { describe, expect, layer } from "@effect/vitest"
import { Clock, ConfigProvider, Effect, Layer } from "effect"
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

const env = { LOG_LEVEL: "error", WEBHOOK_ALLOW_PRIVATE: "true", WEBHOOK_CONCURRENCY: "4" }

/** One worker's delivery service, as each process builds its own (its own store and HTTP client). */
const worker = () =>
  WebhookDelivery.Default.pipe(
    Layer.provide(WebhookDelivery.client),
    Layer.provide(WebhookStore.Default),
    Layer.provide(WebhookInterest.Default),
    Layer.provide(Metrics.Default),
    Layer.provide(AppConfig.Default),
    Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env))))),
  )

describe.each(storageModes())("webhook claims by several workers, $name database", (mode) => {
  layer(sharedDatabase(mode), { timeout: 120_000 })((it) => {
    it.scoped("workers claiming side by side send every delivery once, and each page's events in order", () =>
      Effect.gen(function* () {
        const receiver = yield* Effect.acquireRelease(
          Effect.promise(() => WebhookReceiver.start(() => 200)),
          (r) => Effect.promise(() => r.close()),
        )
        const store = yield* WebhookStore.pipe(
          Effect.provide(WebhookStore.Default.pipe(Layer.provide(WebhookInterest.Default))),
        )
        const subscription = yield* store.create({
          id: crypto.randomUUID(),
          url: receiver.url,
          events: ["cluster.created"],
          pages: null,
          thresholds: [],
          secret: newSecret(),
        })
        receiver.secret = subscription.secret
        // 10 pages, 6 events each, interleaved as a click log would write them.
        const events = Array.from({ length: 60 }, (_, i) => {
          const id = crypto.randomUUID()
          const page = `claims-${subscription.id}/${i % 10}`
          const data = {
            page_uuid: page,
            cluster_idx: Math.floor(i / 10),
            centroid: { x: 0, y: 0 },
            count: 1,
          }
          return {
            id,
            type: "cluster.created",
            page,
            threshold: null,
            at: Date.now(),
            payload: eventPayload(id, "cluster.created", Date.now(), data),
          }
        })
        yield* store.publish(events)
        const workers = yield* Effect.all([
          Layer.build(worker()),
          Layer.build(worker()),
          Layer.build(worker()),
        ])
        const passes = workers.map((context) =>
          Effect.flatMap(WebhookDelivery, (d) => d.runOnce).pipe(Effect.provide(context)),
        )
        // Each worker passes until nothing is due for any of them.
        let claimed = 1
        while (claimed > 0) {
          const counts = yield* Effect.all(passes, { concurrency: "unbounded" })
          claimed = counts.reduce((a, b) => a + b, 0)
        }
        const ids = receiver.received.map((r) => r.id)
        expect(ids.length).toBe(60)
        expect(new Set(ids)).toEqual(new Set(events.map((e) => e.id)))
        for (let p = 0; p < 10; p++) {
          const page = `claims-${subscription.id}/${p}`
          const order = receiver.received
            .filter((r) => r.payload.data.page_uuid === page)
            .map((r) => r.payload.data.cluster_idx)
          expect(order, page).toEqual([0, 1, 2, 3, 4, 5])
        }
      }).pipe(
        // The real clock: deliveries come due at the time they were written.
        Effect.withClock(Clock.make()),
      ),
    )
  })
})
