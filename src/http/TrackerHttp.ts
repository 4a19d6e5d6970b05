import { HttpApiBuilder } from "@effect/platform"
import { Effect, Option } from "effect"
import { IngestLimits } from "../actors/IngestLimits.ts"
import { Api } from "./Api.ts"
import { makeBatchClicks } from "./BatchClicks.ts"
import { clientOf, withRetryAfter } from "./RateLimit.ts"
import { type ClickPayload, makeTrackerHandlers, type SaveClickPayload } from "./TrackerHandlers.ts"

/**
 * The trackers' endpoints as HttpApi handlers: decode (done by the API), one actor message, encode. The two hot
 * POST routes are usually answered by the fast lane in front of the API (TrackerFastLane.ts) with the same logic;
 * with ingestion rate limits configured, the lane is off: a client's allowance is taken here, a page's where the
 * page is served (IngestLimits.ts).
 */
export const TrackerHttpLive = HttpApiBuilder.group(Api, "tracker", (handlers) =>
  Effect.gen(function* () {
    const tracker = yield* makeTrackerHandlers
    const batch = yield* makeBatchClicks
    const limits = yield* IngestLimits
    const save = ({
      payload,
      headers,
    }: {
      readonly payload: SaveClickPayload
      readonly headers: { readonly "idempotency-key"?: string | undefined }
    }) =>
      limits.enabled
        ? withRetryAfter(
            Option.match(limits.client, {
              onNone: () => tracker.save(payload, headers["idempotency-key"]),
              onSome: (allowance) =>
                clientOf.pipe(
                  Effect.flatMap((client) => allowance(client, 1)),
                  Effect.zipRight(tracker.save(payload, headers["idempotency-key"])),
                ),
            }),
          )
        : tracker.save(payload, headers["idempotency-key"])
    const predict = ({ payload }: { readonly payload: ClickPayload }) => tracker.predict(payload)

    return handlers
      .handle("saveClick", save)
      .handle("newClick", save)
      .handle("predictCluster", predict)
      .handle("predictClick", predict)
      .handle("saveClicks", ({ payload }) =>
        withRetryAfter(Effect.flatMap(clientOf, (client) => batch(payload, client))),
      )
      .handle("bestCluster", ({ urlParams }) => tracker.bestCluster(urlParams.page_uuid))
      .handle("version", () => Effect.succeed({ version: 0 as const }))
  }),
)
