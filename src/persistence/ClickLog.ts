import { SqlClient } from "@effect/sql"
import { Duration, Effect } from "effect"
import { IdempotencyConflict, StorageUnavailable } from "../actors/PageErrors.ts"
import { AppConfig } from "../Config.ts"
import { Metrics, secondsSince } from "../Metrics.ts"
import { CommitTicket } from "./CommitTicket.ts"

/** One click as stored. */
export interface ClickRecord {
  readonly page: string
  readonly seq: number
  readonly x: number
  readonly y: number
  readonly clusterIdx: number
  /** Epoch milliseconds. */
  readonly at: number
  readonly requestId: string | null
}

/**
 * One life of a page actor, from its recovery to its stop. When a batch holding one of its clicks fails, the whole
 * incarnation fails: its later clicks, computed on a state the database will not have, are not written either,
 * and the actor recovers from the database before it serves again.
 */
export class Incarnation {
  failed = false
  /** Clicks handed to the log and not yet committed or failed. */
  pending = 0
}

interface Pending {
  readonly record: ClickRecord
  readonly incarnation: Incarnation
  readonly ticket: CommitTicket
}

/**
 * The click log writer (group commit): one fiber takes every waiting click of every page, writes them in one
 * multi-row insert and then settles each caller. Batches are written one after another, so a page's clicks commit
 * in their order and a failed batch stops its pages' later clicks before they are written. Clicks wait in a plain
 * array (appending is synchronous, so a page actor can hand over a click without suspending); two latches wake the
 * writer when there is work and hold appenders back while the buffer is full.
 */
export class ClickLog extends Effect.Service<ClickLog>()("persistence/ClickLog", {
  scoped: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const config = yield* AppConfig
    const metrics = yield* Metrics
    const capacity = config.writerBatchSize * 4
    const waiting: Array<Pending> = []
    const hasWork = yield* Effect.makeLatch(false)
    const hasRoom = yield* Effect.makeLatch(true)
    let writing = false

    /**
     * One statement for the whole batch: seven array parameters whatever its size. A click whose request id is
     * already stored (a duplicate racing in from another page) is skipped by ON CONFLICT instead of failing the
     * batch; the ids of the rows skipped come back so their callers can be told.
     */
    const insert = (records: ReadonlyArray<ClickRecord>) => {
      const rows = sql`
        SELECT page_uuid, seq, x, y, cluster_idx, request_id, to_timestamp(at_ms / 1000.0)
        FROM unnest(
          ${records.map((r) => r.page)}::text[], ${records.map((r) => r.seq)}::bigint[],
          ${records.map((r) => r.x)}::float8[], ${records.map((r) => r.y)}::float8[],
          ${records.map((r) => r.clusterIdx)}::int[], ${records.map((r) => r.requestId)}::uuid[],
          ${records.map((r) => r.at)}::float8[]
        ) AS batch(page_uuid, seq, x, y, cluster_idx, request_id, at_ms)`
      const columns = sql`clicks (page_uuid, seq, x, y, cluster_idx, request_id, created_at)`
      if (records.every((r) => r.requestId === null)) {
        return Effect.as(sql`INSERT INTO ${columns} ${rows}`, new Set<string>())
      }
      return sql<{ request_id: string }>`
        INSERT INTO ${columns} ${rows}
        ON CONFLICT (request_id) WHERE request_id IS NOT NULL DO NOTHING
        RETURNING request_id::text AS request_id
      `.pipe(
        Effect.map((inserted) => {
          const stored = new Set(inserted.map((r) => r.request_id))
          return new Set(
            records.flatMap((r) => (r.requestId !== null && !stored.has(r.requestId) ? [r.requestId] : [])),
          )
        }),
      )
    }

    const fail = (batch: ReadonlyArray<Pending>, message: string) =>
      Effect.sync(() => {
        for (const p of batch) {
          p.incarnation.failed = true
          p.incarnation.pending--
          p.ticket.settle(new StorageUnavailable({ message }))
        }
      })

    const writeBatch = (taken: ReadonlyArray<Pending>) =>
      Effect.gen(function* () {
        const live = taken.filter((p) => !p.incarnation.failed)
        if (live.length < taken.length) {
          yield* fail(
            taken.filter((p) => p.incarnation.failed),
            "an earlier click of this page was not stored; retry",
          )
        }
        if (live.length === 0) return
        const start = performance.now()
        const outcome = yield* insert(live.map((p) => p.record)).pipe(
          Effect.timeoutFail({
            duration: config.dbTimeout,
            onTimeout: () => new StorageUnavailable({ message: "the click log did not commit in time" }),
          }),
          Effect.either,
        )
        if (outcome._tag === "Left") {
          metrics.databaseErrors.inc({ operation: "click_log_insert" })
          yield* Effect.logWarning("click log batch failed", outcome.left)
          return yield* fail(live, "the click could not be stored; retry")
        }
        metrics.commitDuration.observe(secondsSince(start))
        metrics.batchSize.observe(live.length)
        metrics.clicksSaved.inc(live.length)
        const duplicates = outcome.right
        for (const p of live) {
          p.incarnation.pending--
          if (p.record.requestId !== null && duplicates.has(p.record.requestId)) {
            // Not stored, yet the actor counted it: its page recovers from the database before serving again.
            p.incarnation.failed = true
            p.ticket.settle(
              new IdempotencyConflict({
                message: `request id ${p.record.requestId} was already used for another click`,
              }),
            )
          } else {
            p.ticket.settle(undefined)
          }
        }
      })

    const flushLoop = Effect.gen(function* () {
      if (waiting.length === 0) {
        // Closing and awaiting happen in one synchronous step: no append can slip in between.
        hasWork.unsafeClose()
        yield* hasWork.await
      }
      writing = true
      if (waiting.length < config.writerBatchSize && Duration.toMillis(config.writerLinger) > 0)
        yield* Effect.sleep(config.writerLinger)
      const batch = waiting.splice(0, config.writerBatchSize)
      if (waiting.length < capacity) hasRoom.unsafeOpen()
      yield* writeBatch(batch)
      writing = false
    }).pipe(Effect.forever)

    yield* Effect.forkScoped(flushLoop)
    // On shutdown, let the writer commit what it holds before the pool closes.
    yield* Effect.addFinalizer(() =>
      Effect.gen(function* () {
        while (writing || waiting.length > 0) yield* Effect.sleep("2 millis")
      }).pipe(Effect.timeout(config.shutdownTimeout), Effect.ignore),
    )

    /** Hands a click to the writer at once; its ticket settles when the click's batch commits or fails. */
    const append = (record: ClickRecord, incarnation: Incarnation): CommitTicket => {
      const ticket = new CommitTicket()
      incarnation.pending++
      waiting.push({ record, incarnation, ticket })
      hasWork.unsafeOpen()
      if (waiting.length >= capacity) hasRoom.unsafeClose()
      return ticket
    }

    return {
      append,
      /** Whether the writer's buffer has room: `append` may be called without waiting. */
      hasRoom: () => waiting.length < capacity,
      /** Waits while the writer's buffer is full (backpressure for page actors). */
      awaitRoom: Effect.suspend(() => (waiting.length < capacity ? Effect.void : hasRoom.await)),
    }
  }),
}) {}
