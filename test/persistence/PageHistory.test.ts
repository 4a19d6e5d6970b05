import { SqlClient } from "@effect/sql"
import { describe, expect, layer } from "@effect/vitest"
import { ConfigProvider, Effect, Layer, Option } from "effect"
import { AppConfig } from "../../src/Config.ts"
import { PageClusters } from "../../src/domain/PageClusters.ts"
import { Metrics } from "../../src/Metrics.ts"
import { PageHistory } from "../../src/persistence/PageHistory.ts"
import { sharedDatabase } from "../support/PageServices.ts"
import { storageModes } from "../support/StorageModes.ts"

const RADIUS = 0.04

const history = PageHistory.Default.pipe(
  Layer.provideMerge(Metrics.Default),
  Layer.provideMerge(AppConfig.Default),
  Layer.provide(
    Layer.setConfigProvider(
      ConfigProvider.fromMap(
        new Map([
          ["CLUSTER_RADIUS", String(RADIUS)],
          ["LOG_LEVEL", "error"],
        ]),
      ),
    ),
  ),
)

/** What each page is made of: how many clicks, and what snapshot it has (after click 10 when it has one). */
type Kind = "none" | "usable" | "other radius" | "unreadable"
const kinds: ReadonlyArray<Kind> = ["none", "usable", "other radius", "unreadable"]

const snapshotDocument = (kind: Kind) => {
  if (kind === "unreadable") return `{"format":1,"radius":${RADIUS},"sumX":[1],"sumY":[]}`
  const clusters = new PageClusters(RADIUS)
  clusters.assign(0.5, 0.5, 0)
  return JSON.stringify({ format: 1, radius: kind === "usable" ? RADIUS : 0.1, ...clusters.toSnapshot() })
}

describe.each(storageModes())("PageHistory, $name database", (mode) => {
  layer(Layer.provideMerge(history, sharedDatabase(mode)), { timeout: 120_000 })((it) => {
    it.effect("reads pages asked for together in shared loads, each exactly as it would be read alone", () =>
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        // Three large pages among them: a load reads at most 50,000 clicks a statement, so they take three.
        const pages = Array.from({ length: 60 }, (_, i) => ({
          page: `history/${i}`,
          clicks: i % 20 === 3 ? 30_000 : i % 7 === 6 ? 0 : 5 + ((i * 13) % 40),
          kind: kinds[i % kinds.length] ?? "none",
        }))
        for (const { page, clicks, kind } of pages) {
          if (clicks > 0)
            yield* sql`
                INSERT INTO clicks (page_uuid, seq, x, y, cluster_idx, created_at)
                SELECT ${page}, g, (g % 10) / 10.0, 0.5, g % 10, to_timestamp(1700000000 + g)
                FROM generate_series(1, ${clicks}) AS g
              `
          if (kind !== "none")
            yield* sql`
                INSERT INTO page_snapshots (page_uuid, seq, clusters, taken_at)
                VALUES (${page}, 10, ${snapshotDocument(kind)}::jsonb, now())
              `
        }
        const metrics = yield* Metrics
        const loadsBefore = yield* loadCount(metrics)
        const loaded = yield* Effect.forEach(
          pages,
          ({ page }) => Effect.flatMap(PageHistory, (h) => h.load(page)),
          { concurrency: "unbounded" },
        )
        pages.forEach(({ page, clicks, kind }, i) => {
          const stored = loaded[i]
          const after = kind === "usable" ? 10 : 0
          expect(Option.map(stored?.snapshot ?? Option.none(), (s) => [s.seq, s.radius])).toEqual(
            kind === "usable"
              ? Option.some([10, RADIUS])
              : kind === "other radius"
                ? Option.some([10, 0.1])
                : Option.none(),
          )
          const expected = Array.from({ length: Math.max(0, clicks - after) }, (_, k) => {
            const seq = after + k + 1
            return [(seq % 10) / 10, 0.5, seq % 10, (1_700_000_000 + seq) * 1000, seq]
          })
          expect({ page, clicks: stored?.clicks }).toEqual({ page, clicks: expected })
        })
        // 60 pages asked for at once: read by far fewer loads than pages.
        const loads = (yield* loadCount(metrics)) - loadsBefore
        expect(loads).toBeGreaterThan(0)
        expect(loads).toBeLessThan(10)
      }),
    )
  })
})

const loadCount = (metrics: Metrics) =>
  Effect.promise(() => metrics.recoveryLoadPages.get()).pipe(
    Effect.map((m) => m.values.find((v) => v.metricName === "page_recovery_load_pages_count")?.value ?? 0),
  )
