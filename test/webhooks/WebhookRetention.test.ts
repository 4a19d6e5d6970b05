import { SqlClient } from "@effect/sql"
import { describe, expect, layer } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { eventPayload } from "../../src/persistence/Outbox.ts"
import { WebhookInterest } from "../../src/persistence/WebhookInterest.ts"
import { WebhookStore } from "../../src/persistence/WebhookStore.ts"
import { newSecret } from "../../src/webhooks/WebhookSignature.ts"
import { sharedDatabase } from "../support/PageServices.ts"
import { storageModes } from "../support/StorageModes.ts"

describe.each(storageModes())("webhook retention, $name database", (mode) => {
  layer(sharedDatabase(mode), { timeout: 120_000 })((it) => {
    it.scoped(
      "settled deliveries past the retention go with their attempts and events; pending ones stay",
      () =>
        Effect.gen(function* () {
          const sql = yield* SqlClient.SqlClient
          const store = yield* WebhookStore
          const subscription = yield* store.create({
            id: crypto.randomUUID(),
            url: "http://127.0.0.1:9/hook",
            events: ["cluster.created"],
            pages: null,
            thresholds: [],
            secret: newSecret(),
          })
          const at = 1_000_000
          const events = ["a", "b"].map((name) => {
            const id = crypto.randomUUID()
            const page = `retention-${subscription.id}/${name}`
            return {
              id,
              type: "cluster.created",
              page,
              threshold: null,
              at,
              payload: eventPayload(id, "cluster.created", at, {}),
            }
          })
          yield* store.publish(events)
          // Page a's delivery is delivered at `at`; page b's stays pending.
          const [claimedA] = (yield* store.claim(at, 1000, 10)).filter((d) => d.event_id === events[0]!.id)
          yield* store.settle(claimedA!.id, {
            at,
            status: 200,
            latencyMs: 1,
            error: null,
            state: "delivered",
            nextAt: at,
          })
          const ids = events.map((e) => e.id)
          const first = (rows: ReadonlyArray<{ n: number }>) => rows[0]?.n
          const count = {
            deliveries: sql<{ n: number }>`
            SELECT count(*)::int AS n FROM webhook_deliveries WHERE subscription_id = ${subscription.id}
          `.pipe(Effect.map(first)),
            attempts: sql<{ n: number }>`
            SELECT count(*)::int AS n FROM webhook_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id
            WHERE d.subscription_id = ${subscription.id}
          `.pipe(Effect.map(first)),
            events: sql<{ n: number }>`
            SELECT count(*)::int AS n FROM webhook_events WHERE id::text IN (${ids[0]!}, ${ids[1]!})
          `.pipe(Effect.map(first)),
          }
          expect(yield* count.attempts).toBe(1)
          expect(yield* store.purge(at)).toBe(0)
          expect(yield* count.deliveries).toBe(2)
          expect(yield* store.purge(at + 1)).toBe(1)
          expect(yield* count.deliveries).toBe(1)
          expect(yield* count.attempts).toBe(0)
          expect(yield* count.events).toBe(1)
          const [left] = yield* store.deliveries(subscription.id, { limit: 10 })
          expect(left?.event_id).toBe(events[1]!.id)
          expect(left?.state).toBe("pending")
        }).pipe(Effect.provide(WebhookStore.Default.pipe(Layer.provide(WebhookInterest.Default)))),
    )
  })
})
