import { HttpApiBuilder } from "@effect/platform"
import { Effect } from "effect"
import { Api } from "./Api.ts"
import { type ClickPayload, makeTrackerHandlers, type SaveClickPayload } from "./TrackerHandlers.ts"

/**
 * The trackers' endpoints as HttpApi handlers: decode (done by the API), one actor message, encode. The two hot
 * POST routes are usually answered by the fast lane in front of the API (TrackerFastLane.ts) with the same logic.
 */
export const TrackerHttpLive = HttpApiBuilder.group(Api, "tracker", (handlers) =>
  Effect.gen(function* () {
    const tracker = yield* makeTrackerHandlers
    const save = ({
      payload,
      headers,
    }: {
      readonly payload: SaveClickPayload
      readonly headers: { readonly "idempotency-key"?: string | undefined }
    }) => tracker.save(payload, headers["idempotency-key"])
    const predict = ({ payload }: { readonly payload: ClickPayload }) => tracker.predict(payload)

    return handlers
      .handle("saveClick", save)
      .handle("newClick", save)
      .handle("predictCluster", predict)
      .handle("predictClick", predict)
      .handle("bestCluster", ({ urlParams }) => tracker.bestCluster(urlParams.page_uuid))
      .handle("version", () => Effect.succeed({ version: 0 as const }))
  }),
)
