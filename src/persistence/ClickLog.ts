import { SqlClient } from "@effect/sql"
import { Deferred, Duration, Effect, Queue } from "effect"
import { IdempotencyConflict, StorageUnavailable } from "../actors/PageErrors.ts"
import { AppConfig } from "../Config.ts"
import { Metrics, secondsSince } from "../Metrics.ts"

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
  readonly committed: Deferred.Deferred<void, CommitError>
}

/** Why a click was not committed. */
export type CommitError = StorageUnavailable | IdempotencyConflict

/**
 * The click log writer (group commit): one fiber takes every waiting click of every page, writes them in one
 * multi-row insert and then settles each caller. Batches are written one after another, so a page's clicks commit
 * in their order and a failed batch stops its pages' later clicks before they are written.
 */
export class ClickLog extends Effect.Service<ClickLog>()("persistence/ClickLog", {
  scoped: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const config = yield* AppConfig
    const metrics = yield* Metrics
    const queue = yield* Queue.bounded<Pending>(config.writerBatchSize * 4)
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
      Effect.forEach(
        batch,
        (p) => {
          p.incarnation.failed = true
          p.incarnation.pending--
          return Deferred.fail(p.committed, new StorageUnavailable({ message }))
        },
        { discard: true },
      )

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
            Deferred.unsafeDone(
              p.committed,
              new IdempotencyConflict({
                message: `request id ${p.record.requestId} was already used for another click`,
              }),
            )
          } else {
            Deferred.unsafeDone(p.committed, Effect.void)
          }
        }
      })

    const flushLoop = Effect.gen(function* () {
      const first = yield* Queue.takeBetween(queue, 1, config.writerBatchSize)
      writing = true
      let batch = Array.from(first)
      if (batch.length < config.writerBatchSize && Duration.toMillis(config.writerLinger) > 0) {
        yield* Effect.sleep(config.writerLinger)
        batch = batch.concat(Array.from(yield* Queue.takeUpTo(queue, config.writerBatchSize - batch.length)))
      }
      yield* writeBatch(batch)
      writing = false
    }).pipe(Effect.forever)

    yield* Effect.forkScoped(flushLoop)
    // On shutdown, let the writer commit what it holds before the pool closes.
    yield* Effect.addFinalizer(() =>
      Effect.gen(function* () {
        while (writing || (yield* Queue.size(queue)) > 0) yield* Effect.sleep("2 millis")
      }).pipe(Effect.timeout(config.shutdownTimeout), Effect.ignore),
    )

    return {
      /**
       * Hands a click to the writer (waiting while its queue is full) and returns the effect that waits for the
       * click's commit: the actor goes on with its next message while the caller waits.
       */
      append: (record: ClickRecord, incarnation: Incarnation) =>
        Effect.gen(function* () {
          const committed = yield* Deferred.make<void, CommitError>()
          incarnation.pending++
          yield* Queue.offer(queue, { record, incarnation, committed })
          return Deferred.await(committed)
        }),
    }
  }),
}) {}
