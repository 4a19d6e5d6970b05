import type { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import type { ReplayedClick } from "../domain/PageReplay.ts"

/** Clicks of a page with `after < seq <= upto`: one slice of a page's replay. */
export interface ClickRange {
  readonly page: string
  readonly after: number
  readonly upto: number
}

/**
 * Splits the clicks to replay into reads of at most `perRead` clicks (a page's seqs are distinct integers, so
 * a range (after, upto] holds at most upto - after of them): small pages share a read, a large one is cut into
 * slices, each in seq order after the one before.
 */
export const planReads = (ranges: ReadonlyArray<ClickRange>, perRead: number) => {
  const reads: Array<Array<ClickRange>> = []
  let current: Array<ClickRange> = []
  let size = 0
  for (const range of ranges) {
    for (let after = range.after; after < range.upto; after += perRead) {
      const slice = { page: range.page, after, upto: Math.min(range.upto, after + perRead) }
      const n = slice.upto - slice.after
      if (size + n > perRead && current.length > 0) {
        reads.push(current)
        current = []
        size = 0
      }
      current.push(slice)
      size += n
    }
  }
  if (current.length > 0) reads.push(current)
  return reads
}

/**
 * The clicks of some ranges in one statement, as [page, click]: the ranges in their order, each in seq order.
 * An index range scan per range, through a LATERAL subquery fenced by `OFFSET 0`: as a join (or a plain LATERAL,
 * which the planner flattens) it became a hash join over the whole table on a freshly filled one without
 * statistics (133 ms against 26 ms for 30 pages among 2,000,000 rows; page recovery's takeover of 10,000 pages
 * 4.7 times slower than one statement per page).
 */
export const readRanges = (sql: SqlClient.SqlClient, ranges: ReadonlyArray<ClickRange>) =>
  sql`
    SELECT w.page_uuid, c.x, c.y, c.cluster_idx, extract(epoch FROM c.created_at)::float8 * 1000, c.seq::float8
    FROM unnest(
      ${ranges.map((r) => r.page)}::text[], ${ranges.map((r) => r.after)}::bigint[],
      ${ranges.map((r) => r.upto)}::bigint[]
    ) WITH ORDINALITY AS w(page_uuid, after_seq, upto_seq, n)
    CROSS JOIN LATERAL (
      SELECT x, y, cluster_idx, created_at, seq FROM clicks
      WHERE clicks.page_uuid = w.page_uuid AND clicks.seq > w.after_seq AND clicks.seq <= w.upto_seq
      OFFSET 0
    ) c
    ORDER BY w.n, c.seq
  `.values.pipe(
    Effect.map((rows) =>
      rows.map((row): readonly [string, ReplayedClick] => [
        String(row[0]),
        [Number(row[1]), Number(row[2]), Number(row[3]), Number(row[4]), Number(row[5])],
      ]),
    ),
  )
