import { Effect, Option } from "effect"
import { PageNotFound } from "../actors/PageErrors.ts"
import { PageRouter } from "../actors/PageRouter.ts"
import { AppConfig } from "../Config.ts"
import { ClickRepository } from "../persistence/ClickRepository.ts"
import { readOrUnavailable } from "../persistence/DatabaseDeadline.ts"
import type { Click, SaveClick } from "./Api.ts"
import { InvalidRequest, type SaveResult } from "./Api.ts"
import { notePage } from "./RequestObservability.ts"

/** A decoded click. */
export type ClickPayload = typeof Click.Type

/** A decoded save: a click with an optional idempotency key. */
export type SaveClickPayload = typeof SaveClick.Type

/** A save's answer, from the actor's reply. */
export const saveResult = (reply: {
  readonly clusterIdx: number
  readonly isNew: boolean
}): typeof SaveResult.Type => ({ cluster_idx: reply.clusterIdx, is_new: reply.isNew })

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

/**
 * What the trackers' endpoints do once a request is decoded: one actor message each. Shared by the HttpApi
 * handlers and the HTTP fast lane, so both answer alike.
 */
export const makeTrackerHandlers = Effect.gen(function* () {
  const pages = yield* PageRouter
  const clicks = yield* ClickRepository
  const config = yield* AppConfig

  // Untraced: these run per tracker request, on the hot path.
  const save = Effect.fnUntraced(function* (
    payload: SaveClickPayload,
    idempotencyHeader: string | undefined,
  ) {
    yield* notePage(payload.page_uuid)
    const requestId = yield* idempotencyKey(payload.request_id, idempotencyHeader)
    const reply = yield* pages.save(
      payload.page_uuid,
      payload.coordinates.x,
      payload.coordinates.y,
      requestId,
    )
    return saveResult(reply)
  })

  const predict = Effect.fnUntraced(function* (payload: ClickPayload) {
    yield* notePage(payload.page_uuid)
    const cluster_idx = yield* pages.predict(payload.page_uuid, payload.coordinates.x, payload.coordinates.y)
    return { cluster_idx }
  })

  const bestCluster = Effect.fn("TrackerHandlers.bestCluster")(function* (page: string) {
    yield* notePage(page)
    const largest = yield* pages.largestCluster(page)
    if (Option.isNone(largest)) return yield* new PageNotFound({ message: `page ${page} has no clicks` })
    const all_coordinates = yield* clicks
      .clusterCoordinates(page, largest.value)
      .pipe(readOrUnavailable(config.dbTimeout, "reading the cluster's clicks"))
    return { cluster: { cluster_idx: largest.value, all_coordinates } }
  })

  return { save, predict, bestCluster } as const
})
