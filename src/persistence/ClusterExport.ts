import { SqlClient, type Statement } from "@effect/sql"
import { Chunk, Effect, Option, Stream } from "effect"
import { AppConfig } from "../Config.ts"
import { PageReplay } from "../domain/PageReplay.ts"
import { type ClickRange, planReads, readRanges } from "./ClickRanges.ts"
import { readableSnapshot } from "./SnapshotStore.ts"

/**
 * One cluster of one page as of the export, as analysts receive it. The field order is the CSV column order and
 * the key order of every NDJSON object, so both formats read the same.
 */
export interface ExportRow {
  readonly page_uuid: string
  readonly cluster_idx: number
  readonly centroid_x: number
  readonly centroid_y: number
  readonly click_count: number
  /** ISO-8601, UTC. */
  readonly first_click_at: string
  /** ISO-8601, UTC. */
  readonly last_click_at: string
  /** The page's last click these numbers include (clicks are numbered 1, 2, … per page). */
  readonly seq: number
}

/** What to export: every page, or only one. */
export interface ExportFilter {
  readonly page?: string | undefined
}

/** How much one query reads: pages per chunk, and stored clicks per replay query. For tests; defaults below. */
export interface ExportChunking {
  readonly pagesPerQuery?: number | undefined
  readonly clicksPerQuery?: number | undefined
}

/**
 * Each query holds a pooled connection, so it must stay short. The embedded database is worse off: it has one
 * connection, which the click writer needs too, and it runs queries on the process's only thread, so the whole
 * server waits while a query runs. Smaller reads there keep saves answering during an export, at the cost of
 * more queries. Memory is bounded by one chunk: its pages' clusters and one query's clicks.
 */
const CHUNKING = {
  postgres: { pagesPerQuery: 100, clicksPerQuery: 20_000 },
  embedded: { pagesPerQuery: 20, clicksPerQuery: 5_000 },
} as const

/** A page of a chunk: its latest snapshot, if any, and its last stored click (null: none). */
interface PageRow {
  readonly page_uuid: string
  readonly snapshot_seq: number | null
  readonly snapshot: string | null
  readonly last_seq: number | null
}

const toExportRows = (page: string, replay: PageReplay): ReadonlyArray<ExportRow> =>
  Array.from({ length: replay.clusters.size }, (_, i) => {
    const cluster = replay.clusters.summary(i)
    return {
      page_uuid: page,
      cluster_idx: i,
      centroid_x: cluster.centroidX,
      centroid_y: cluster.centroidY,
      click_count: cluster.count,
      first_click_at: new Date(cluster.firstAt).toISOString(),
      last_click_at: new Date(cluster.lastAt).toISOString(),
      seq: replay.seq,
    }
  })

/**
 * Every page's clusters as of the export, for offline analysis: per page, its latest snapshot (when taken with
 * the configured radius) and then the clicks stored after it, replayed through the domain exactly as page
 * recovery does (PageReplay). So every click committed before the export began is in it, snapshot or not.
 *
 * Pages are read in keyset-paginated chunks (a few short queries each) instead of a cursor or a transaction: the
 * embedded database has a single pooled connection that the click writer needs too, so an export must never
 * hold it for its whole run. Each chunk reads its pages at its own moment, so an export is not one consistent
 * cut of the tables: a page may include clicks committed after the export began (its row's `seq` says which).
 */
export class ClusterExport extends Effect.Service<ClusterExport>()("persistence/ClusterExport", {
  effect: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const config = yield* AppConfig
    const radius = config.clusterRadius
    const defaults = Option.isSome(config.databaseUrl) ? CHUNKING.postgres : CHUNKING.embedded

    /**
     * Distinct pages of the clicks table after a cursor, by a skip scan over its primary key (page_uuid, seq):
     * one index probe per page, where DISTINCT would read every click of every page. Evaluated lazily, so a
     * LIMIT outside stops it early.
     */
    const clickPages = (after: Option.Option<string>) => sql`
      WITH RECURSIVE click_pages(page_uuid) AS (
        (SELECT page_uuid FROM clicks
         WHERE ${Option.match(after, { onNone: () => sql`true`, onSome: (last) => sql`page_uuid > ${last}` })}
         ORDER BY page_uuid LIMIT 1)
        UNION ALL
        SELECT (SELECT c.page_uuid FROM clicks c WHERE c.page_uuid > p.page_uuid ORDER BY c.page_uuid LIMIT 1)
        FROM click_pages p WHERE p.page_uuid IS NOT NULL
      )`

    /** The next `limit` pages that have clicks or a snapshot, with what replay needs of each. */
    const readPages = Effect.fn("ClusterExport.readPages")(function* (
      filter: ExportFilter,
      limit: number,
      after: Option.Option<string>,
    ) {
      const afterCondition = (column: Statement.Fragment) =>
        Option.match(after, { onNone: () => sql`true`, onSome: (last) => sql`${column} > ${last}` })
      const pages =
        filter.page === undefined
          ? sql`${clickPages(after)}, pages AS (
              (SELECT page_uuid FROM click_pages WHERE page_uuid IS NOT NULL LIMIT ${limit})
              UNION
              (SELECT page_uuid FROM page_snapshots WHERE ${afterCondition(sql`page_uuid`)}
               ORDER BY page_uuid LIMIT ${limit})
              ORDER BY page_uuid LIMIT ${limit}
            )`
          : sql`WITH pages AS (
              SELECT v.page_uuid FROM (VALUES (${filter.page}::text)) AS v(page_uuid)
              WHERE ${afterCondition(sql`v.page_uuid`)} AND (
                EXISTS (SELECT 1 FROM clicks c WHERE c.page_uuid = v.page_uuid)
                OR EXISTS (SELECT 1 FROM page_snapshots s WHERE s.page_uuid = v.page_uuid)
              )
            )`
      return yield* sql<PageRow>`
        ${pages}
        SELECT
          p.page_uuid,
          s.seq::float8 AS snapshot_seq,
          s.clusters::text AS snapshot,
          (SELECT max(c.seq) FROM clicks c WHERE c.page_uuid = p.page_uuid)::float8 AS last_seq
        FROM pages p LEFT JOIN page_snapshots s ON s.page_uuid = p.page_uuid
        ORDER BY p.page_uuid
      `
    })

    /**
     * The rows of up to `pagesPerQuery` pages after `after`, in (page_uuid, cluster_idx) order, and the cursor
     * to continue from when there may be more. Each page's clicks are read up to its last click as the chunk's
     * first query saw it, so a page busy with saves does not make the chunk read without end.
     */
    const readChunk = Effect.fn("ClusterExport.readChunk")(function* (
      filter: ExportFilter,
      chunking: { readonly pagesPerQuery: number; readonly clicksPerQuery: number },
      after: Option.Option<string>,
    ) {
      const pages = yield* readPages(filter, chunking.pagesPerQuery, after)
      const replays = new Map<string, PageReplay>()
      const ranges: Array<ClickRange> = []
      for (const row of pages) {
        const snapshot =
          row.snapshot === null || row.snapshot_seq === null
            ? undefined
            : yield* readableSnapshot(row.page_uuid, row.snapshot_seq, row.snapshot)
        const replay = new PageReplay(radius, snapshot)
        replays.set(row.page_uuid, replay)
        if (row.last_seq !== null && row.last_seq > replay.seq)
          ranges.push({ page: row.page_uuid, after: replay.seq, upto: row.last_seq })
      }
      for (const read of planReads(ranges, chunking.clicksPerQuery)) {
        const clicks = yield* readRanges(sql, read)
        for (const [page, click] of clicks) replays.get(page)?.apply([click])
      }
      const out = pages.flatMap((row) => {
        const replay = replays.get(row.page_uuid)
        return replay === undefined ? [] : toExportRows(row.page_uuid, replay)
      })
      const last = pages.at(-1)
      const next =
        pages.length === chunking.pagesPerQuery && last !== undefined
          ? Option.some(last.page_uuid)
          : Option.none<string>()
      return [Chunk.unsafeFromArray(out), next] as const
    })

    return {
      /** How many pages have clicks or a snapshot (the export's unit of progress). */
      countPages: Effect.fn("ClusterExport.countPages")((filter: ExportFilter) =>
        (filter.page === undefined
          ? sql<{ pages: number }>`
              ${clickPages(Option.none())}
              SELECT count(*)::float8 AS pages FROM (
                SELECT page_uuid FROM click_pages WHERE page_uuid IS NOT NULL
                UNION
                SELECT page_uuid FROM page_snapshots
              ) AS p
            `
          : sql<{ pages: number }>`
              SELECT (
                EXISTS (SELECT 1 FROM clicks WHERE page_uuid = ${filter.page})
                OR EXISTS (SELECT 1 FROM page_snapshots WHERE page_uuid = ${filter.page})
              )::int::float8 AS pages
            `
        ).pipe(Effect.map((rows) => rows[0]?.pages ?? 0)),
      ),

      /**
       * The rows of every selected page, in (page_uuid, cluster_idx) order. The first chunk is read by the
       * returned effect, so a database that cannot be read fails here, before anything is written; the rest is
       * read as the stream is pulled, one chunk at a time (a slow consumer slows the reads, memory stays bounded
       * by one chunk). A failure after the first chunk fails the stream.
       */
      rows: Effect.fn("ClusterExport.rows")(function* (filter: ExportFilter, chunking: ExportChunking = {}) {
        const sizes = {
          pagesPerQuery: chunking.pagesPerQuery ?? defaults.pagesPerQuery,
          clicksPerQuery: chunking.clicksPerQuery ?? defaults.clicksPerQuery,
        }
        return yield* readChunk(filter, sizes, Option.none()).pipe(
          Effect.map(([first, next]) =>
            Stream.concat(
              Stream.fromChunk(first),
              Option.match(next, {
                onNone: () => Stream.empty,
                onSome: (cursor) =>
                  Stream.paginateChunkEffect(cursor, (last) => readChunk(filter, sizes, Option.some(last))),
              }),
            ),
          ),
        )
      }),
    }
  }),
}) {}
