import { SqlClient } from "@effect/sql"
import { describe, expect, layer } from "@effect/vitest"
import { Chunk, Effect, Layer, Stream } from "effect"
import { PageClusters } from "../../src/domain/PageClusters.ts"
import type { ExportRow } from "../../src/persistence/ClusterExport.ts"
import { ClusterExport } from "../../src/persistence/ClusterExport.ts"
import { SnapshotStore } from "../../src/persistence/SnapshotStore.ts"
import { storageLayer } from "../support/StorageLayer.ts"
import { storageModes } from "../support/StorageModes.ts"

const at = Date.UTC(2026, 10, 25, 12, 0, 0)
/** The radius the storage layer is configured with (CLUSTER_RADIUS's default). */
const radius = 0.04

/**
 * Pages with a snapshot and no clicks: page → seq, clusters as [sumX, sumY, count, firstAt, lastAt]. Insertion
 * order ≠ page order, and the names sort the same in every collation (the database's and JavaScript's).
 */
const snapshotOnly: ReadonlyArray<readonly [string, number, ReadonlyArray<readonly number[]>]> = [
  ["p-c", 7, [[0.3, 0.6, 3, at, at + 5000]]],
  [
    "p-a",
    4,
    [
      [0.2, 0.4, 2, at + 1, at + 2],
      [0.9, 0.1, 1, at + 3, at + 3],
    ],
  ],
  ['p-b,"quoted"', 1, [[0.5, 0.5, 1, at, at]]],
  ["p-d-empty", 0, []],
  ["p-e", 2, [[1.5, 0.5, 2, at + 10, at + 20]]],
]

const snapshotRows = (page: string): ReadonlyArray<ExportRow> => {
  const entry = snapshotOnly.find(([p]) => p === page)
  if (entry === undefined) return []
  const [, seq, clusters] = entry
  return clusters.map(([sumX = 0, sumY = 0, count = 1, firstAt = 0, lastAt = 0], i) => ({
    page_uuid: page,
    cluster_idx: i,
    centroid_x: sumX / count,
    centroid_y: sumY / count,
    click_count: count,
    first_click_at: new Date(firstAt).toISOString(),
    last_click_at: new Date(lastAt).toISOString(),
    seq,
  }))
}

/** A stored click: x, y, epoch ms. Its seq is its position in its page's list, from 1. */
type Click = readonly [number, number, number]

/** `n` clicks around three spots, so clusters both grow and get founded. */
const clicksOf = (n: number, offset: number): ReadonlyArray<Click> =>
  Array.from({ length: n }, (_, i) => {
    const [cx, cy] = [
      [0.2, 0.2],
      [0.7, 0.3],
      [0.5, 0.8],
    ][(i + offset) % 3] ?? [0, 0]
    return [cx + ((i * 7) % 5) * 0.007, cy + ((i * 3) % 4) * 0.006, at + 1000 * i + offset]
  })

/**
 * Pages with clicks, and what else is stored for them: no snapshot; one covering the first `k` clicks; one of
 * another radius (describing other clusters); one that cannot be read.
 */
const clickPages: ReadonlyArray<{
  readonly page: string
  readonly clicks: ReadonlyArray<Click>
  readonly snapshot?: "covers 10" | "other radius" | "unreadable"
}> = [
  { page: "q-a-clicks-only", clicks: clicksOf(6, 0) },
  { page: "q-b-old-snapshot", clicks: clicksOf(25, 1), snapshot: "covers 10" },
  { page: "q-c-other-radius", clicks: clicksOf(9, 2), snapshot: "other radius" },
  { page: "q-d-unreadable", clicks: clicksOf(4, 1), snapshot: "unreadable" },
  { page: "q-e-one-click", clicks: clicksOf(1, 0) },
]

/** What a fresh domain replay of all of a page's clicks gives: the rows the export must equal. */
const replayedRows = (page: string, clicks: ReadonlyArray<Click>): ReadonlyArray<ExportRow> => {
  const clusters = new PageClusters(radius)
  for (const [x, y, t] of clicks) clusters.assign(x, y, t)
  return Array.from({ length: clusters.size }, (_, i) => {
    const s = clusters.summary(i)
    return {
      page_uuid: page,
      cluster_idx: i,
      centroid_x: s.centroidX,
      centroid_y: s.centroidY,
      click_count: s.count,
      first_click_at: new Date(s.firstAt).toISOString(),
      last_click_at: new Date(s.lastAt).toISOString(),
      seq: clicks.length,
    }
  })
}

const expectedRows = (page: string) => {
  const entry = clickPages.find((p) => p.page === page)
  return entry === undefined ? snapshotRows(page) : replayedRows(page, entry.clicks)
}

const allPages = [...snapshotOnly.map(([p]) => p), ...clickPages.map((p) => p.page)].sort()
const allExpected = allPages.flatMap(expectedRows)

const collect = (stream: Stream.Stream<ExportRow, unknown>) =>
  Stream.runCollect(stream).pipe(Effect.map(Chunk.toReadonlyArray))

/** Stores a page's clicks as the click log does (cluster_idx as the domain assigned it). */
const insertClicks = (page: string, clicks: ReadonlyArray<Click>) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const clusters = new PageClusters(radius)
    const assigned = clicks.map(([x, y, t]) => clusters.assign(x, y, t))
    yield* sql`
      INSERT INTO clicks (page_uuid, seq, x, y, cluster_idx, created_at)
      SELECT ${page}, seq, x, y, cluster_idx, to_timestamp(at_ms / 1000.0)
      FROM unnest(
        ${clicks.map((_, i) => i + 1)}::bigint[], ${clicks.map((c) => c[0])}::float8[],
        ${clicks.map((c) => c[1])}::float8[], ${assigned}::int[], ${clicks.map((c) => c[2])}::float8[]
      ) AS batch(seq, x, y, cluster_idx, at_ms)
    `
  })

describe.each(storageModes())("ClusterExport, $name storage", ({ make }) => {
  const TestLive = Layer.unwrapScoped(
    Effect.acquireRelease(
      Effect.promise(() => make()),
      (storage) => Effect.promise(() => storage.dispose()),
    ).pipe(
      Effect.map((storage) =>
        Layer.mergeAll(ClusterExport.Default, SnapshotStore.Default).pipe(
          Layer.provideMerge(storageLayer(storage)),
        ),
      ),
    ),
  )

  // The real database and the real clock: the client's connect timeout must not wait on a TestClock.
  layer(TestLive, { excludeTestServices: true, timeout: "120 seconds" })((it) => {
    it.effect("stores snapshots through SnapshotStore and clicks as the click log does", () =>
      Effect.gen(function* () {
        const store = yield* SnapshotStore
        const sql = yield* SqlClient.SqlClient
        for (const [page, seq, clusters] of snapshotOnly) {
          yield* store.save(page, {
            seq,
            radius,
            clusters: {
              sumX: clusters.map((c) => c[0] ?? 0),
              sumY: clusters.map((c) => c[1] ?? 0),
              count: clusters.map((c) => c[2] ?? 0),
              firstAt: clusters.map((c) => c[3] ?? 0),
              lastAt: clusters.map((c) => c[4] ?? 0),
            },
          })
        }
        for (const { page, clicks, snapshot } of clickPages) {
          yield* insertClicks(page, clicks)
          if (snapshot === "covers 10") {
            const clusters = new PageClusters(radius)
            for (const [x, y, t] of clicks.slice(0, 10)) clusters.assign(x, y, t)
            yield* store.save(page, { seq: 10, radius, clusters: clusters.toSnapshot() })
          }
          if (snapshot === "other radius") {
            // Clusters no replay with this radius gives: exporting them would show.
            const clusters = { sumX: [0.5], sumY: [0.5], count: [5], firstAt: [at], lastAt: [at] }
            yield* store.save(page, { seq: 5, radius: 0.3, clusters })
          }
          if (snapshot === "unreadable") {
            yield* sql`
              INSERT INTO page_snapshots (page_uuid, seq, clusters)
              VALUES (${page}, 2, ${JSON.stringify({ format: 1, radius, sumX: [1], sumY: [], count: [9] })}::jsonb)
            `
          }
        }
        expect(yield* (yield* ClusterExport).countPages({})).toBe(allPages.length)
      }),
    )

    it.effect("exports the clusters a fresh replay of each page's clicks gives, snapshot or not", () =>
      Effect.gen(function* () {
        const clusters = yield* ClusterExport
        for (const { page, clicks } of clickPages) {
          const rows = yield* collect(yield* clusters.rows({ page }))
          expect(rows, page).toEqual(replayedRows(page, clicks))
          expect(rows.length, page).toBeGreaterThan(0)
          expect(new Set(rows.map((r) => r.seq)), page).toEqual(new Set([clicks.length]))
        }
      }),
    )

    it.effect("reads every cluster of every page in page order, whatever the chunk sizes", () =>
      Effect.gen(function* () {
        const clusters = yield* ClusterExport
        // 1 and 2 pages per query cross chunk borders everywhere, including after the page with no clusters;
        // 1, 2 and 7 clicks per query cut the longer pages' replays into slices and share queries between pages.
        for (const pagesPerQuery of [1, 2, 3, 100]) {
          for (const clicksPerQuery of [1, 2, 7, 10_000]) {
            expect(
              yield* collect(yield* clusters.rows({}, { pagesPerQuery, clicksPerQuery })),
              `${pagesPerQuery} pages, ${clicksPerQuery} clicks per query`,
            ).toEqual(allExpected)
          }
        }
        expect(yield* collect(yield* clusters.rows({}))).toEqual(allExpected)
      }),
    )

    it.effect("filters one page", () =>
      Effect.gen(function* () {
        const clusters = yield* ClusterExport
        expect(yield* collect(yield* clusters.rows({ page: "p-a" }, { pagesPerQuery: 1 }))).toEqual(
          snapshotRows("p-a"),
        )
        expect(yield* collect(yield* clusters.rows({ page: 'p-b,"quoted"' }))).toEqual(
          snapshotRows('p-b,"quoted"'),
        )
        expect(
          yield* collect(yield* clusters.rows({ page: "q-b-old-snapshot" }, { pagesPerQuery: 1 })),
        ).toEqual(expectedRows("q-b-old-snapshot"))
        expect(yield* collect(yield* clusters.rows({ page: "no-such-page" }))).toEqual([])
        expect(yield* clusters.countPages({ page: "p-a" })).toBe(1)
        expect(yield* clusters.countPages({ page: "q-a-clicks-only" })).toBe(1)
        expect(yield* clusters.countPages({ page: "no-such-page" })).toBe(0)
      }),
    )

    it.effect("includes clicks stored after the previous export, and a newer snapshot", () =>
      Effect.gen(function* () {
        const store = yield* SnapshotStore
        const clusters = yield* ClusterExport
        const sql = yield* SqlClient.SqlClient
        const page = "q-a-clicks-only"
        const more = clicksOf(9, 0)
        yield* sql`DELETE FROM clicks WHERE page_uuid = ${page}`
        yield* insertClicks(page, more)
        expect(yield* collect(yield* clusters.rows({ page }))).toEqual(replayedRows(page, more))

        const snapshot = { sumX: [0.4], sumY: [0.8], count: [4], firstAt: [at], lastAt: [at + 9] }
        yield* store.save("p-c", { seq: 8, radius, clusters: snapshot })
        const [row] = yield* collect(yield* clusters.rows({ page: "p-c" }))
        expect(row).toMatchObject({ seq: 8, click_count: 4, centroid_x: 0.1, centroid_y: 0.2 })
      }),
    )
  })
})
