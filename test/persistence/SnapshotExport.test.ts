import { describe, expect, layer } from "@effect/vitest"
import { Chunk, Effect, Layer, Stream } from "effect"
import type { ExportRow } from "../../src/persistence/ExportFormat.ts"
import { SnapshotExport } from "../../src/persistence/SnapshotExport.ts"
import { SnapshotStore } from "../../src/persistence/SnapshotStore.ts"
import { storageLayer } from "../support/StorageLayer.ts"
import { storageModes } from "../support/StorageModes.ts"

const at = Date.UTC(2026, 10, 25, 12, 0, 0)

/**
 * Page → clusters as [sumX, sumY, count, firstAt, lastAt]. Insertion order ≠ page order, and the names sort the
 * same in every collation (the database's and JavaScript's).
 */
const pages: ReadonlyArray<readonly [string, number, ReadonlyArray<readonly number[]>]> = [
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

const expectedRows = (page: string): ReadonlyArray<ExportRow> => {
  const entry = pages.find(([p]) => p === page)
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
    snapshot_seq: seq,
  }))
}

const allExpected = [...pages.map(([p]) => p)].sort().flatMap(expectedRows)

const collect = (stream: Stream.Stream<ExportRow, unknown>) =>
  Stream.runCollect(stream).pipe(Effect.map(Chunk.toReadonlyArray))

describe.each(storageModes())("SnapshotExport, $name storage", ({ make }) => {
  const TestLive = Layer.unwrapScoped(
    Effect.acquireRelease(
      Effect.promise(() => make()),
      (storage) => Effect.promise(() => storage.dispose()),
    ).pipe(
      Effect.map((storage) =>
        Layer.mergeAll(SnapshotExport.Default, SnapshotStore.Default).pipe(
          Layer.provideMerge(storageLayer(storage)),
        ),
      ),
    ),
  )

  // The real database and the real clock: the client's connect timeout must not wait on a TestClock.
  layer(TestLive, { excludeTestServices: true, timeout: "120 seconds" })((it) => {
    it.effect("stores the snapshots through SnapshotStore, the way page actors do", () =>
      Effect.gen(function* () {
        const store = yield* SnapshotStore
        for (const [page, seq, clusters] of pages) {
          yield* store.save(page, {
            seq,
            radius: 0.04,
            clusters: {
              sumX: clusters.map((c) => c[0] ?? 0),
              sumY: clusters.map((c) => c[1] ?? 0),
              count: clusters.map((c) => c[2] ?? 0),
              firstAt: clusters.map((c) => c[3] ?? 0),
              lastAt: clusters.map((c) => c[4] ?? 0),
            },
          })
        }
        expect(yield* (yield* SnapshotExport).countPages({})).toBe(pages.length)
      }),
    )

    it.effect("reads every cluster of every page in page order, whatever the chunk size", () =>
      Effect.gen(function* () {
        const snapshots = yield* SnapshotExport
        // 1 and 2 pages per query cross chunk borders everywhere, including after the page with no clusters.
        for (const pagesPerQuery of [1, 2, 3, 100]) {
          expect(yield* collect(yield* snapshots.rows({}, pagesPerQuery)), `${pagesPerQuery}`).toEqual(
            allExpected,
          )
        }
      }),
    )

    it.effect("filters one page", () =>
      Effect.gen(function* () {
        const snapshots = yield* SnapshotExport
        expect(yield* collect(yield* snapshots.rows({ page: "p-a" }, 1))).toEqual(expectedRows("p-a"))
        expect(yield* collect(yield* snapshots.rows({ page: 'p-b,"quoted"' }))).toEqual(
          expectedRows('p-b,"quoted"'),
        )
        expect(yield* collect(yield* snapshots.rows({ page: "no-such-page" }))).toEqual([])
        expect(yield* snapshots.countPages({ page: "p-a" })).toBe(1)
        expect(yield* snapshots.countPages({ page: "no-such-page" })).toBe(0)
      }),
    )

    it.effect("reads a newer snapshot of a page that was replaced between two exports", () =>
      Effect.gen(function* () {
        const store = yield* SnapshotStore
        const snapshots = yield* SnapshotExport
        const clusters = { sumX: [0.4], sumY: [0.8], count: [4], firstAt: [at], lastAt: [at + 9] }
        yield* store.save("p-c", { seq: 8, radius: 0.04, clusters })
        const [row] = yield* collect(yield* snapshots.rows({ page: "p-c" }))
        expect(row).toMatchObject({ snapshot_seq: 8, click_count: 4, centroid_x: 0.1, centroid_y: 0.2 })
      }),
    )
  })
})
