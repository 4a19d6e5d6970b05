import { HttpApiBuilder } from "@effect/platform"
import { Effect } from "effect"
import { PageNotFound } from "../actors/PageErrors.ts"
import { PageRouter } from "../actors/PageRouter.ts"
import { AppConfig } from "../Config.ts"
import { countPeriods, type Granularity } from "../domain/Periods.ts"
import { ActivityRepository } from "../persistence/ActivityRepository.ts"
import { readOrUnavailable } from "../persistence/DatabaseDeadline.ts"
import { Api, InvalidRequest } from "./Api.ts"
import { notePage } from "./RequestObservability.ts"

/** The most periods one activity request may ask for. */
export const MAX_PERIODS = 10_000

const invalid = (path: string, message: string) =>
  new InvalidRequest({ message: `${path}: ${message}`, issues: [{ path, message }] })

/** The analysts' endpoints: cluster summaries from the page's actor, activity series from SQL. */
export const PagesHttpLive = HttpApiBuilder.group(Api, "pages", (handlers) =>
  Effect.gen(function* () {
    const pages = yield* PageRouter
    const activity = yield* ActivityRepository
    const config = yield* AppConfig

    return handlers
      .handle("clusters", ({ path }) =>
        Effect.gen(function* () {
          yield* notePage(path.page_uuid)
          const clusters = yield* pages.clusters(path.page_uuid)
          if (clusters.length === 0)
            return yield* new PageNotFound({ message: `page ${path.page_uuid} has no clicks` })
          return {
            page_uuid: path.page_uuid,
            clusters: clusters.map((c) => ({
              cluster_idx: c.clusterIdx,
              centroid: { x: c.centroidX, y: c.centroidY },
              count: c.count,
              first_click_at: new Date(c.firstAt).toISOString(),
              last_click_at: new Date(c.lastAt).toISOString(),
            })),
          }
        }),
      )
      .handle("activity", ({ path, urlParams }) =>
        Effect.gen(function* () {
          yield* notePage(path.page_uuid)
          const from = new Date(urlParams.from)
          const to = new Date(urlParams.to)
          const granularity: Granularity = urlParams.granularity
          if (from.getTime() >= to.getTime()) return yield* invalid("from", "must be before to")
          const periods = countPeriods(from, to, granularity)
          if (periods > MAX_PERIODS) {
            return yield* invalid(
              "to",
              `the range spans ${periods} ${granularity}s; at most ${MAX_PERIODS} periods`,
            )
          }
          const clusterIdx = urlParams.cluster_idx ?? null
          const series = yield* activity
            .series(path.page_uuid, granularity, from, to, clusterIdx)
            .pipe(readOrUnavailable(config.dbTimeout, "reading the activity series"))
          return {
            page_uuid: path.page_uuid,
            granularity,
            from: from.toISOString(),
            to: to.toISOString(),
            cluster_idx: clusterIdx,
            series,
          }
        }),
      )
  }),
)
