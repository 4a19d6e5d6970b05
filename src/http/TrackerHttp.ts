import { HttpApiBuilder } from "@effect/platform"
import { Effect, Option } from "effect"
import { PageActorHost } from "../actors/PageActorHost.ts"
import { PageNotFound } from "../actors/PageErrors.ts"
import { storageUnavailable } from "../actors/StorageFailure.ts"
import { AppConfig } from "../Config.ts"
import { ClickRepository } from "../persistence/ClickRepository.ts"
import { Api, InvalidRequest } from "./Api.ts"
import { notePage } from "./RequestObservability.ts"

interface ClickPayload {
  readonly page_uuid: string
  readonly coordinates: { readonly x: number; readonly y: number }
}

/** The one idempotency key of a save (body or header, lower-cased as Postgres prints UUIDs), or null. */
const idempotencyKey = (fromBody: string | undefined, fromHeader: string | undefined) => {
  const body = fromBody?.toLowerCase()
  const header = fromHeader?.toLowerCase()
  if (body !== undefined && header !== undefined && body !== header) {
    const message = "request_id and the Idempotency-Key header differ; send one key"
    return Effect.fail(new InvalidRequest({ message, issues: [{ path: "request_id", message }] }))
  }
  return Effect.succeed(body ?? header ?? null)
}

/** The trackers' endpoints: decode (done by the API), one actor message, encode. */
export const TrackerHttpLive = HttpApiBuilder.group(Api, "tracker", (handlers) =>
  Effect.gen(function* () {
    const host = yield* PageActorHost
    const clicks = yield* ClickRepository
    const config = yield* AppConfig

    const save = ({
      payload,
      headers,
    }: {
      readonly payload: ClickPayload & { readonly request_id?: string | undefined }
      readonly headers: { readonly "idempotency-key"?: string | undefined }
    }) =>
      Effect.gen(function* () {
        yield* notePage(payload.page_uuid)
        const requestId = yield* idempotencyKey(payload.request_id, headers["idempotency-key"])
        const reply = yield* host.save(
          payload.page_uuid,
          payload.coordinates.x,
          payload.coordinates.y,
          requestId,
        )
        return { cluster_idx: reply.clusterIdx, is_new: reply.isNew }
      })

    const predict = ({ payload }: { readonly payload: ClickPayload }) =>
      notePage(payload.page_uuid).pipe(
        Effect.zipRight(host.predict(payload.page_uuid, payload.coordinates.x, payload.coordinates.y)),
        Effect.map((cluster_idx) => ({ cluster_idx })),
      )

    const bestCluster = ({ urlParams }: { readonly urlParams: { readonly page_uuid: string } }) =>
      Effect.gen(function* () {
        const page = urlParams.page_uuid
        yield* notePage(page)
        const largest = yield* host.largestCluster(page)
        if (Option.isNone(largest)) return yield* new PageNotFound({ message: `page ${page} has no clicks` })
        const all_coordinates = yield* clicks
          .clusterCoordinates(page, largest.value)
          .pipe(
            Effect.timeout(config.dbTimeout),
            Effect.catchAll(storageUnavailable("reading the cluster's clicks")),
          )
        return { cluster: { cluster_idx: largest.value, all_coordinates } }
      })

    return handlers
      .handle("saveClick", save)
      .handle("newClick", save)
      .handle("predictCluster", predict)
      .handle("predictClick", predict)
      .handle("bestCluster", bestCluster)
      .handle("version", () => Effect.succeed({ version: 0 as const }))
  }),
)
