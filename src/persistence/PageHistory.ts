import { SqlClient, type SqlError } from "@effect/sql"
import { type Cause, Deferred, Effect, Exit, FiberId, Option } from "effect"
import { AppConfig } from "../Config.ts"
import type { ReplayedClick } from "../domain/PageReplay.ts"
import { Metrics } from "../Metrics.ts"
import { planReads, readRanges } from "./ClickRanges.ts"
import { withDeadline } from "./DatabaseDeadline.ts"
import { type PageSnapshot, readableSnapshot } from "./SnapshotStore.ts"

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
/** The most clicks one statement of a load reads (a larger page is read in slices). */
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
     * LATERAL and a scalar subquery rather than joins, for the reason given at ClickRanges.readRanges.
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
          const snapshot = yield* readableSnapshot(row.page_uuid, Number(row.seq), row.clusters)
          if (snapshot !== undefined) snapshots.set(row.page_uuid, snapshot)
        }
        return { snapshots, lastSeq }
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
        // The clicks in reads of at most MAX_CLICKS_PER_READ (a larger page in slices), so that memory holds about
        // one read's rows at a time, as when each page was read alone, whatever the pages' sizes.
        const ranges = pages.map((page) => ({ page, after: after(page), upto: lastSeq.get(page) ?? 0 }))
        const clicks = new Map<string, Array<ReplayedClick>>()
        for (const read of planReads(ranges, MAX_CLICKS_PER_READ))
          for (const [page, click] of yield* readRanges(sql, read)) {
            const list = clicks.get(page)
            if (list === undefined) clicks.set(page, [click])
            else list.push(click)
          }
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
