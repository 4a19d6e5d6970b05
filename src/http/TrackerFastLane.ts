import { Effect } from "effect"
import { PageActorHost } from "../actors/PageActorHost.ts"
import { AppConfig } from "../Config.ts"
import { Api, TrackerEndpoints } from "./Api.ts"
import { makeFastLane, Now, route } from "./FastLane.ts"
import {
  type ClickPayload,
  makeTrackerHandlers,
  type SaveClickPayload,
  saveResult,
} from "./TrackerHandlers.ts"

/**
 * The trackers' hot POST routes, answered straight from `node:http` in front of the HttpApi: per request the
 * framework costs several times what the work does (docs/benchmarks.md). Everything about the routes comes from
 * their declaration in Api.ts (FastLane.ts); stated here is only which endpoints the lane takes and what it does for
 * each: an idle page's actor serves a click synchronously (PageActorHost.saveNow / predictNow; a save is answered
 * once its click is committed); a busy or cold page, or a save with an idempotency key, goes through the HttpApi's
 * own handlers (TrackerHandlers.ts), on a fiber.
 */
export class TrackerFastLane extends Effect.Service<TrackerFastLane>()("http/TrackerFastLane", {
  scoped: Effect.gen(function* () {
    const host = yield* PageActorHost
    const config = yield* AppConfig
    const tracker = yield* makeTrackerHandlers

    const save = (
      click: SaveClickPayload,
      headers: { readonly "idempotency-key"?: string | undefined } | undefined,
    ) => {
      const key = headers?.["idempotency-key"]
      const reply =
        click.request_id === undefined && key === undefined
          ? host.saveNow(click.page_uuid, click.coordinates.x, click.coordinates.y)
          : undefined
      if (reply === undefined) return tracker.save(click, key)
      return new Now(saveResult(reply), click.page_uuid, (listener) => reply.committed.onSettled(listener))
    }
    const predict = (click: ClickPayload) => {
      const clusterIdx = host.predictNow(click.page_uuid, click.coordinates.x, click.coordinates.y)
      return clusterIdx === undefined
        ? tracker.predict(click)
        : new Now({ cluster_idx: clusterIdx }, click.page_uuid)
    }

    return yield* makeFastLane(
      Api,
      [
        route(TrackerEndpoints.saveClick, save),
        route(TrackerEndpoints.newClick, save),
        route(TrackerEndpoints.predictCluster, predict),
        route(TrackerEndpoints.predictClick, predict),
      ],
      config.maxBodyBytes,
    )
  }),
}) {}
