import { Entity, ShardingConfig } from "@effect/cluster"
import { SqlClient } from "@effect/sql"
import { describe, expect, layer } from "@effect/vitest"
import { Effect, Layer, Option, TestServices } from "effect"
import { PageEntityLive } from "../../src/actors/PageEntity.ts"
import { Page } from "../../src/actors/PageProtocol.ts"
import { PageClusters } from "../../src/domain/PageClusters.ts"
import { pageServices, sharedDatabase } from "../support/PageServices.ts"
import { storageModes } from "../support/StorageModes.ts"

/** The page entity as the engine hosts it, over `pageServices(env)`; one life per call. */
const entityLife = (env: Record<string, string> = {}) =>
  PageEntityLive.pipe(Layer.provideMerge(pageServices(env)))

/** A client of one page entity, hosted in this test (no runners, no network), for one life. */
const pageClient = (page: string, env?: Record<string, string>) =>
  Effect.flatMap(Entity.makeTestClient(Page, entityLife(env)), (client) => client(page)).pipe(
    Effect.provide(ShardingConfig.layer()),
  )

/** Clicks around three centres, deterministic and distinct. */
const click = (k: number) => {
  const centre = [
    [0.2, 0.2],
    [0.7, 0.3],
    [0.45, 0.8],
  ][k % 3]!
  return { x: centre[0]! + 0.001 * k, y: centre[1]! + 0.002 * (k % 5) }
}

const storedClicks = (page: string) =>
  Effect.flatMap(
    SqlClient.SqlClient,
    (sql) =>
      sql<{
        x: number
        y: number
        cluster_idx: number
      }>`SELECT x, y, cluster_idx FROM clicks WHERE page_uuid = ${page} ORDER BY seq`,
  )

describe.each(storageModes())("Page entity hosted by @effect/cluster, $name database", (mode) => {
  layer(sharedDatabase(mode), { timeout: 120_000 })((it) => {
    it.scoped("answers saves sent at once in arrival order, each acknowledged click stored once", () =>
      TestServices.provideLive(
        Effect.gen(function* () {
          const page = "entity/order"
          const answers = yield* Effect.scoped(
            Effect.gen(function* () {
              const client = yield* pageClient(page)
              // All in flight together: the engine runs them concurrently, the entity decides them in order.
              return yield* Effect.forEach(
                Array.from({ length: 30 }, (_, k) => click(k)),
                (c) => client.Save({ x: c.x, y: c.y, requestId: null }),
                { concurrency: "unbounded" },
              )
            }),
          )
          const stored = yield* storedClicks(page)
          expect(stored.length).toBe(30)
          // The stored order is the order of decision: replaying it gives every answer and every stored index.
          const domain = new PageClusters(0.04)
          const byPoint = new Map(
            Array.from({ length: 30 }, (_, k) => [`${click(k).x}|${click(k).y}`, answers[k]!] as const),
          )
          for (const c of stored) {
            const i = domain.assign(c.x, c.y, 0)
            expect(c.cluster_idx).toBe(i)
            expect(byPoint.get(`${c.x}|${c.y}`)?.clusterIdx).toBe(i)
          }
        }),
      ),
    )

    it.scoped(
      "recovers a page in a new life from its snapshot and clicks, and snapshots it when it stops",
      () =>
        TestServices.provideLive(
          Effect.gen(function* () {
            const page = "entity/lives"
            const first = Array.from({ length: 7 }, (_, k) => click(k))
            yield* Effect.scoped(
              Effect.gen(function* () {
                const client = yield* pageClient(page, { SNAPSHOT_EVERY: "1000" })
                for (const c of first) yield* client.Save({ x: c.x, y: c.y, requestId: null })
              }),
            )
            const sql = yield* SqlClient.SqlClient
            const [snapshot] = yield* sql<{
              seq: number
            }>`SELECT seq::int AS seq FROM page_snapshots WHERE page_uuid = ${page}`
            expect(snapshot?.seq).toBe(7)

            const domain = new PageClusters(0.04)
            for (const c of first) domain.assign(c.x, c.y, 0)
            yield* Effect.scoped(
              Effect.gen(function* () {
                const client = yield* pageClient(page)
                const probe = click(8)
                const expected = domain.predict(probe.x, probe.y)
                expect(yield* client.Predict({ x: probe.x, y: probe.y })).toBe(
                  expected === PageClusters.NONE ? null : expected,
                )
                const saved = yield* client.Save({ x: probe.x, y: probe.y, requestId: null })
                const before = domain.size
                expect(saved).toEqual({
                  clusterIdx: domain.assign(probe.x, probe.y, 0),
                  isNew: domain.size > before,
                })
                expect(Option.getOrNull(yield* client.Largest())).toBe(domain.largest())
                expect((yield* client.Clusters()).map((c) => c.count)).toEqual(
                  Array.from({ length: domain.size }, (_, i) => domain.summary(i).count),
                )
              }),
            )
            expect((yield* storedClicks(page)).length).toBe(8)
          }),
        ),
    )

    it.scoped("answers a request id's first answer again, and IdempotencyConflict for another click", () =>
      TestServices.provideLive(
        Effect.gen(function* () {
          const page = "entity/idempotent"
          const key = "3f0c9a52-6a0e-4d7e-9b7c-1f2e3d4c5b6a"
          yield* Effect.scoped(
            Effect.gen(function* () {
              const client = yield* pageClient(page)
              const first = yield* client.Save({ x: 0.5, y: 0.5, requestId: key })
              expect(yield* client.Save({ x: 0.5, y: 0.5, requestId: key })).toEqual(first)
              const other = yield* Effect.flip(client.Save({ x: 0.1, y: 0.1, requestId: key }))
              expect(other._tag).toBe("IdempotencyConflict")
            }),
          )
          expect((yield* storedClicks(page)).length).toBe(1)
        }),
      ),
    )
  })
})
