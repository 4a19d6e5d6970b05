import { SqlClient } from "@effect/sql"
import { Chunk, Effect, Option, Stream } from "effect"
import { AppConfig } from "../Config.ts"
import type { ExportRow } from "./ExportFormat.ts"

/** What to export: every page, or only one. */
export interface ExportFilter {
  readonly page?: string | undefined
}

/**
 * Pages per query: each query holds a pooled connection, so it must stay short. The embedded database is worse
 * off: it has one connection, which the click writer needs too, and it runs queries on the process's only
 * thread, so the whole server waits while a chunk is read (100 pages of 100 clusters ≈ 350 ms there, ≈ 30 ms on
 * Postgres). Smaller chunks there keep saves answering during an export, at the cost of more queries.
 */
const PAGES_PER_QUERY = { postgres: 100, embedded: 20 } as const

interface ClusterRow {
  readonly page_uuid: string
  readonly snapshot_seq: number
  /**
   * Null (and so are the other cluster columns) for a page whose snapshot has no clusters: the row is still
   * there so that every page of the chunk is counted; it is not exported.
   */
  readonly cluster_idx: number | null
  readonly centroid_x: number
  readonly centroid_y: number
  readonly click_count: number
  readonly first_at: number
  readonly last_at: number
}

const toExportRow = (row: ClusterRow, clusterIdx: number): ExportRow => ({
  page_uuid: row.page_uuid,
  cluster_idx: clusterIdx,
  centroid_x: row.centroid_x,
  centroid_y: row.centroid_y,
  click_count: row.click_count,
  first_click_at: new Date(row.first_at).toISOString(),
  last_click_at: new Date(row.last_at).toISOString(),
  snapshot_seq: row.snapshot_seq,
})

/**
 * The clusters of the pages' latest snapshots, one row each, for offline analysis. Reads in keyset-paginated
 * chunks of pages (one short query each) instead of a cursor or a transaction: the embedded database has a
 * single pooled connection that the click writer needs too, so an export must never hold it for its whole run.
 * Each chunk is a separate statement, so an export is not one consistent snapshot of the table: a page whose
 * snapshot is replaced during the export appears with whichever version its chunk read.
 */
export class SnapshotExport extends Effect.Service<SnapshotExport>()("persistence/SnapshotExport", {
  effect: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const config = yield* AppConfig
    const defaultPagesPerQuery = Option.isSome(config.databaseUrl)
      ? PAGES_PER_QUERY.postgres
      : PAGES_PER_QUERY.embedded
    const pageCondition = (filter: ExportFilter) =>
      filter.page === undefined ? [] : [sql`page_uuid = ${filter.page}`]

    /**
     * The clusters of up to `limit` pages after `after`, in (page_uuid, cluster_idx) order, and the cursor
     * to continue from when there may be more. The jsonb columns are zipped back into rows in SQL (ROWS FROM …
     * WITH ORDINALITY), so no snapshot document is parsed in the process. It reads the layout of format 1, the
     * only one SnapshotStore writes: a new format needs a change here too.
     */
    const readChunk = (filter: ExportFilter, limit: number, after: Option.Option<string>) =>
      Effect.gen(function* () {
        const conditions = [
          ...pageCondition(filter),
          ...Option.match(after, { onNone: () => [], onSome: (last) => [sql`page_uuid > ${last}`] }),
        ]
        const rows = yield* sql<ClusterRow>`
          WITH chunk AS (
            SELECT page_uuid, seq, clusters FROM page_snapshots
            WHERE ${sql.and(conditions)}
            ORDER BY page_uuid
            LIMIT ${limit}
          )
          SELECT
            chunk.page_uuid,
            chunk.seq::float8 AS snapshot_seq,
            (c.idx - 1)::int AS cluster_idx,
            c.sum_x::float8 / c.n::float8 AS centroid_x,
            c.sum_y::float8 / c.n::float8 AS centroid_y,
            c.n::float8 AS click_count,
            c.first_at::float8 AS first_at,
            c.last_at::float8 AS last_at
          FROM chunk
          LEFT JOIN LATERAL ROWS FROM (
            jsonb_array_elements(chunk.clusters -> 'sumX'),
            jsonb_array_elements(chunk.clusters -> 'sumY'),
            jsonb_array_elements(chunk.clusters -> 'count'),
            jsonb_array_elements(chunk.clusters -> 'firstAt'),
            jsonb_array_elements(chunk.clusters -> 'lastAt')
          ) WITH ORDINALITY AS c(sum_x, sum_y, n, first_at, last_at, idx) ON true
          ORDER BY chunk.page_uuid, c.idx
        `
        const out: Array<ExportRow> = []
        let pages = 0
        let lastPage: string | undefined
        for (const row of rows) {
          if (row.page_uuid !== lastPage) {
            pages++
            lastPage = row.page_uuid
          }
          if (row.cluster_idx !== null) out.push(toExportRow(row, row.cluster_idx))
        }
        const next = pages === limit && lastPage !== undefined ? Option.some(lastPage) : Option.none<string>()
        return [Chunk.unsafeFromArray(out), next] as const
      }).pipe(Effect.withSpan("SnapshotExport.readChunk"))

    return {
      /** How many pages have a snapshot (the export's unit of progress). */
      countPages: (filter: ExportFilter) =>
        sql<{ pages: number }>`
          SELECT count(*)::float8 AS pages FROM page_snapshots
          WHERE ${sql.and(pageCondition(filter))}
        `.pipe(
          Effect.map((rows) => rows[0]?.pages ?? 0),
          Effect.withSpan("SnapshotExport.countPages"),
        ),

      /**
       * The rows of every selected page, in (page_uuid, cluster_idx) order. The first chunk is read by the
       * returned effect, so a database that cannot be read fails here, before anything is written; the rest is
       * read as the stream is pulled, one chunk at a time (a slow consumer slows the reads, memory stays bounded
       * by one chunk). A failure after the first chunk fails the stream. `pagesPerQuery` is for tests.
       */
      rows: (filter: ExportFilter, pagesPerQuery: number = defaultPagesPerQuery) =>
        readChunk(filter, pagesPerQuery, Option.none()).pipe(
          Effect.map(([first, next]) =>
            Stream.concat(
              Stream.fromChunk(first),
              Option.match(next, {
                onNone: () => Stream.empty,
                onSome: (cursor) =>
                  Stream.paginateChunkEffect(cursor, (last) =>
                    readChunk(filter, pagesPerQuery, Option.some(last)),
                  ),
              }),
            ),
          ),
          Effect.withSpan("SnapshotExport.rows"),
        ),
    }
  }),
}) {}
