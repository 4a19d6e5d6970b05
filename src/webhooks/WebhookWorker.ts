import { Clock, Duration, Effect, Layer, Schedule } from "effect"
import { AppConfig } from "../Config.ts"
import { Metrics } from "../Metrics.ts"
import { OutboxSignal } from "../persistence/Outbox.ts"
import { WebhookStore } from "../persistence/WebhookStore.ts"
import { WebhookDelivery } from "./WebhookDelivery.ts"

const HOUSEKEEPING_EVERY_MS = 5000
const PURGE_EVERY = Duration.minutes(10)

/**
 * The delivery worker of this process: delivers what is due, then waits for the click log's signal (events
 * committed here) or WEBHOOK_POLL_INTERVAL (events committed by another process, retries coming due). Every
 * process may run one: deliveries are claimed with FOR UPDATE SKIP LOCKED and a lease (WebhookStore.claim),
 * not by electing a single worker, so delivery goes on while any process lives, and a process that dies mid-attempt
 * leaves a lease that runs out and the delivery to another attempt (at least once; receivers deduplicate by the
 * event id). Stopping interrupts the attempts in flight the same way.
 */
export const WebhookWorkerLive = Layer.scopedDiscard(
  Effect.gen(function* () {
    const config = yield* AppConfig
    const delivery = yield* WebhookDelivery
    const store = yield* WebhookStore
    const signal = yield* OutboxSignal
    const metrics = yield* Metrics

    const observeBacklog = store.backlog.pipe(
      Effect.tap((backlog) =>
        Effect.sync(() => {
          metrics.webhookOutboxDepth.set(backlog.depth)
          metrics.webhookOutboxAge.set(backlog.oldest_age ?? 0)
        }),
      ),
    )

    /** Every few seconds, not every pass: both read every pending delivery. */
    let lastHousekeeping = Number.NEGATIVE_INFINITY
    const housekeeping = Effect.gen(function* () {
      const now = yield* Clock.currentTimeMillis
      if (now - lastHousekeeping < HOUSEKEEPING_EVERY_MS) return
      lastHousekeeping = now
      yield* store.sweep(now)
      yield* observeBacklog
    })

    /** Settled deliveries past WEBHOOK_RETENTION go, with their attempts and events (the tables stay bounded). */
    const purge = Effect.gen(function* () {
      const now = yield* Clock.currentTimeMillis
      const removed = yield* store.purge(now - Duration.toMillis(config.webhookRetention))
      if (removed > 0)
        yield* Effect.logInfo(`${removed} settled webhook deliveries past WEBHOOK_RETENTION removed`)
    }).pipe(Effect.catchAll((error) => Effect.logWarning("settled webhook deliveries not removed", error)))
    yield* Effect.forkScoped(Effect.repeat(purge, Schedule.spaced(PURGE_EVERY)))

    const turn = Effect.gen(function* () {
      const claimed = yield* delivery.runOnce
      // A full claim: more may be due at once.
      if (claimed < config.webhookConcurrency) {
        yield* housekeeping
        yield* signal.wait(config.webhookPollInterval)
      }
    }).pipe(
      Effect.catchAllCause((cause) =>
        Effect.logWarning(
          "webhook delivery pass failed; tried again after WEBHOOK_POLL_INTERVAL",
          cause,
        ).pipe(Effect.zipRight(Effect.sleep(config.webhookPollInterval))),
      ),
    )
    yield* Effect.forkScoped(Effect.repeat(turn, Schedule.forever))
  }),
).pipe(Layer.provide(WebhookDelivery.Default), Layer.provide(WebhookDelivery.client))
