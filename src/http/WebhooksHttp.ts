import { randomUUID } from "node:crypto"
import { HttpApiBuilder } from "@effect/platform"
import { Clock, Effect, Layer, Option } from "effect"
import { AppConfig } from "../Config.ts"
import { readOrUnavailable } from "../persistence/DatabaseDeadline.ts"
import { type Subscription, WebhookStore } from "../persistence/WebhookStore.ts"
import { newSecret } from "../webhooks/WebhookSignature.ts"
import { checkTarget } from "../webhooks/WebhookTarget.ts"
import { AdminAuthLive } from "./AdminAuthLive.ts"
import { Api, InvalidRequest } from "./Api.ts"
import { WebhookNotFound } from "./WebhookSchemas.ts"

/** A subscription as listed: everything but its secret. */
const withoutSecret = ({ secret: _, ...rest }: Subscription) => rest

const notFound = (id: string) => new WebhookNotFound({ message: `no webhook subscription ${id}` })

/** The webhook subscriptions and their deliveries (README, Webhooks). */
export const WebhooksHttpLive = HttpApiBuilder.group(Api, "webhooks", (handlers) =>
  Effect.gen(function* () {
    const store = yield* WebhookStore
    const config = yield* AppConfig
    /** Every call is one short statement, bounded as the other database reads are. */
    const bounded = (what: string) => readOrUnavailable(config.dbTimeout, what)
    const found = <A>(id: string) =>
      Effect.flatMap((o: Option.Option<A>) =>
        Option.match(o, { onNone: () => Effect.fail(notFound(id)), onSome: Effect.succeed }),
      )

    return handlers
      .handle("createWebhook", ({ payload }) =>
        Effect.gen(function* () {
          const url = yield* checkTarget(payload.url, config.webhookAllowPrivate).pipe(
            Effect.mapError((message) => new InvalidRequest({ message, issues: [{ path: "url", message }] })),
          )
          return yield* store
            .create({
              id: randomUUID(),
              url: url.href,
              events: [...new Set(payload.events)],
              pages: payload.pages === undefined ? null : [...new Set(payload.pages)],
              thresholds: [...new Set(payload.thresholds ?? [])].sort((a, b) => a - b),
              secret: newSecret(),
            })
            .pipe(bounded("storing the subscription"))
        }),
      )
      .handle("listWebhooks", () =>
        store.list().pipe(
          bounded("reading the subscriptions"),
          Effect.map((all) => ({ webhooks: all.map(withoutSecret) })),
        ),
      )
      .handle("getWebhook", ({ path }) =>
        store
          .get(path.id)
          .pipe(bounded("reading the subscription"), found(path.id), Effect.map(withoutSecret)),
      )
      .handle("deleteWebhook", ({ path }) =>
        store.remove(path.id).pipe(
          bounded("deleting the subscription"),
          Effect.flatMap((removed) => (removed ? Effect.void : Effect.fail(notFound(path.id)))),
        ),
      )
      .handle("rotateWebhookSecret", ({ path }) =>
        store.rotateSecret(path.id, newSecret()).pipe(bounded("rotating the secret"), found(path.id)),
      )
      .handle("listDeliveries", ({ path, urlParams }) =>
        Effect.gen(function* () {
          yield* store.get(path.id).pipe(bounded("reading the subscription"), found(path.id))
          const limit = urlParams.limit ?? 100
          const deliveries = yield* store
            .deliveries(path.id, { state: urlParams.state, after: urlParams.after, limit })
            .pipe(bounded("reading the deliveries"))
          return {
            deliveries,
            next_after: deliveries.length === limit ? (deliveries.at(-1)?.id ?? null) : null,
          }
        }),
      )
      .handle("retryDelivery", ({ path }) =>
        Effect.gen(function* () {
          const now = yield* Clock.currentTimeMillis
          return yield* store.retry(path.id, path.delivery, now).pipe(
            bounded("scheduling the delivery"),
            Effect.flatMap(
              Option.match({
                onNone: () =>
                  Effect.fail(
                    new WebhookNotFound({
                      message: `no delivery ${path.delivery} of webhook subscription ${path.id}`,
                    }),
                  ),
                onSome: Effect.succeed,
              }),
            ),
          )
        }),
      )
  }),
).pipe(Layer.provide(AdminAuthLive))
