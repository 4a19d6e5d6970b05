import { SqlClient, type SqlError } from "@effect/sql"
import { type Cause, Deferred, Effect, Exit, FiberId, Option } from "effect"
import { AppConfig } from "../Config.ts"
import type { ReplayedClick } from "../domain/PageReplay.ts"
import { Metrics } from "../Metrics.ts"
import { withDeadline } from "./DatabaseDeadline.ts"
import { decodeSnapshot, type PageSnapshot } from "./SnapshotStore.ts"

/** What the database holds of a page for its recovery: its latest readable snapshot, and its clicks after it. */
export interface StoredPage {
  /** The page's snapshot; none when it has none or it cannot be read (a warning is logged). */
  readonly snapshot: Option.Option<PageSnapshot>
  /** The clicks after the snapshot (after click 0 when the snapshot is of another radius, or none), in order. */
  readonly clicks: ReadonlyArray<ReplayedClick>
}

/** Why a load failed: the database's error, or DB_TIMEOUT passed. */
export type LoadError = SqlError.SqlError | Cause.TimeoutException

interface Waiting {
  readonly page: string
  readonly done: Deferred.Deferred<StoredPage, LoadError>
  /** Its caller stopped waiting (its deadline passed): not worth reading any more. */
  abandoned: boolean
}

/** The most pages one load reads. */
const MAX_PAGES_PER_LOAD = 500
/** The most clicks one statement of a load reads, unless a single page has more. */
const MAX_CLICKS_PER_READ = 50_000

/**
 * Reads pages for their recovery, many at once. Pages asked for while a load is in flight wait for the next, which
 * reads all of them (up to 500) in two statements, snapshots then clicks (more when their clicks are many), instead
 * of two per page. A lone page is
 * read at once, as before; a burst of cold pages (a restart, a runner taking over a dead one's shards) costs a few
 * round trips instead of thousands, and the driver's and the runtime's work per statement with them.
 */
export class PageHistory extends Effect.Service<PageHistory>()("persistence/PageHistory", {
  scoped: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const config = yield* AppConfig
    const metrics = yield* Metrics
    // As the click log's writers: the embedded database serves one connection, a second load would only wait.
    const loaders = Option.isSome(config.databaseUrl) ? Math.min(2, config.dbPoolSize) : 1
    const waiting: Array<Waiting> = []
    const hasWork = yield* Effect.makeLatch(false)

    /**
     * Each page's snapshot and its last click's number (for sizing the clicks' reads), one index lookup each:
     * LATERAL and a scalar subquery rather than joins, for the reason given at `clicksOf`.
     */
    const headsOf = (pages: ReadonlyArray<string>) =>
      Effect.gen(function* () {
        const rows = yield* sql<{
          page_uuid: string
          seq: string | null
          clusters: string | null
          last_seq: string | null
        }>`
          SELECT w.page_uuid, s.seq::text AS seq, s.clusters::text AS clusters,
                 (SELECT max(c.seq) FROM clicks c WHERE c.page_uuid = w.page_uuid)::text AS last_seq
          FROM unnest(${pages}::text[]) AS w(page_uuid)
          LEFT JOIN LATERAL (
            SELECT seq, clusters FROM page_snapshots WHERE page_snapshots.page_uuid = w.page_uuid OFFSET 0
          ) s ON true
        `
        const snapshots = new Map<string, PageSnapshot>()
        const lastSeq = new Map<string, number>()
        for (const row of rows) {
          lastSeq.set(row.page_uuid, Number(row.last_seq ?? 0))
          if (row.seq === null || row.clusters === null) continue
          const decoded = yield* Effect.either(decodeSnapshot(Number(row.seq), row.clusters))
          if (decoded._tag === "Right") snapshots.set(row.page_uuid, decoded.right)
          else
            yield* Effect.logWarning("unreadable snapshot ignored; the page is rebuilt from its clicks").pipe(
              Effect.annotateLogs({ page: row.page_uuid, error: decoded.left.message }),
            )
        }
        return { snapshots, lastSeq }
      })

    /**
     * Each page's clicks after its watermark, in one statement: an index range scan per page. A LATERAL subquery
     * fenced by `OFFSET 0`, not a join: the planner flattens a join (or a plain LATERAL) into a hash join over a
     * scan of the whole table, which it chose on a freshly filled table without statistics (133 ms against 26 ms
     * for 30 pages among 2,000,000 rows, and a takeover of 10,000 pages 4.7 times slower than one query per page).
     * No ORDER BY: a page's clicks come in index order, and are sorted here should they not.
     */
    const clicksOf = (pages: ReadonlyArray<string>, after: ReadonlyArray<number>) =>
      Effect.gen(function* () {
        const rows = yield* sql`
          SELECT w.page_uuid, c.x, c.y, c.cluster_idx, extract(epoch FROM c.created_at)::float8 * 1000, c.seq::float8
          FROM unnest(${pages}::text[], ${after}::int8[]) AS w(page_uuid, after)
          CROSS JOIN LATERAL (
            SELECT x, y, cluster_idx, created_at, seq FROM clicks
            WHERE clicks.page_uuid = w.page_uuid AND clicks.seq > w.after
            OFFSET 0
          ) c
        `.values
        const byPage = new Map<string, Array<ReplayedClick>>()
        let ordered = true
        for (const row of rows) {
          const page = String(row[0])
          let list = byPage.get(page)
          if (list === undefined) {
            list = []
            byPage.set(page, list)
          }
          const click: ReplayedClick = [
            Number(row[1]),
            Number(row[2]),
            Number(row[3]),
            Number(row[4]),
            Number(row[5]),
          ]
          const last = list[list.length - 1]
          if (last !== undefined && last[4] > click[4]) ordered = false
          list.push(click)
        }
        if (!ordered) for (const list of byPage.values()) list.sort((a, b) => a[4] - b[4])
        return byPage
      })

    const load = (group: ReadonlyArray<Waiting>) =>
      Effect.gen(function* () {
        const pages = [...new Set(group.map((w) => w.page))]
        metrics.recoveryLoadPages.observe(pages.length)
        const { snapshots, lastSeq } = yield* headsOf(pages)
        // A snapshot of another radius describes other clusters: the page is replayed from its first click.
        const after = (page: string) => {
          const snapshot = snapshots.get(page)
          return snapshot !== undefined && snapshot.radius === config.clusterRadius ? snapshot.seq : 0
        }
        // The clicks in reads of at most MAX_CLICKS_PER_READ rows (a larger page alone), so that memory holds
        // about one read's rows at a time, as when each page was read alone, whatever the pages' sizes.
        const clicks = new Map<string, ReadonlyArray<ReplayedClick>>()
        let chunk: Array<string> = []
        let rows = 0
        const readChunk = Effect.suspend(() => {
          const taken = chunk
          chunk = []
          rows = 0
          return taken.length === 0
            ? Effect.void
            : Effect.map(clicksOf(taken, taken.map(after)), (read) => {
                for (const [page, list] of read) clicks.set(page, list)
              })
        })
        for (const page of pages) {
          const expected = Math.max(0, (lastSeq.get(page) ?? 0) - after(page))
          if (expected === 0) continue
          if (chunk.length > 0 && rows + expected > MAX_CLICKS_PER_READ) yield* readChunk
          chunk.push(page)
          rows += expected
        }
        yield* readChunk
        for (const { page, done } of group)
          Deferred.unsafeDone(
            done,
            Exit.succeed({
              snapshot: Option.fromNullable(snapshots.get(page)),
              clicks: clicks.get(page) ?? [],
            }),
          )
      }).pipe(
        // A stalled database must not hold the loaders (and every recovery queued behind them) for ever.
        withDeadline(config.dbTimeout),
        Effect.catchAllCause((cause) =>
          Effect.sync(() => {
            for (const { done } of group) Deferred.unsafeDone(done, Exit.failCause(cause))
          }),
        ),
      )

    const loader = Effect.gen(function* () {
      while (true) {
        if (waiting.length === 0) {
          hasWork.unsafeClose()
          yield* hasWork.await
          continue
        }
        const group = waiting.splice(0, MAX_PAGES_PER_LOAD).filter((w) => !w.abandoned)
        if (group.length > 0) yield* load(group)
      }
    })
    yield* Effect.forkScoped(
      Effect.all(
        Array.from({ length: loaders }, () => loader),
        { concurrency: "unbounded", discard: true },
      ),
    )

    return {
      /** The page as stored, read with whatever other pages are asked for meanwhile. */
      load: (page: string): Effect.Effect<StoredPage, LoadError> =>
        Effect.suspend(() => {
          const entry: Waiting = {
            page,
            done: Deferred.unsafeMake<StoredPage, LoadError>(FiberId.none),
            abandoned: false,
          }
          waiting.push(entry)
          hasWork.unsafeOpen()
          return Deferred.await(entry.done).pipe(
            Effect.onInterrupt(() =>
              Effect.sync(() => {
                entry.abandoned = true
              }),
            ),
          )
        }),
    } as const
  }),
}) {}
