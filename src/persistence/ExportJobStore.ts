import { SqlClient, type SqlError } from "@effect/sql"
import { Effect, Option, Stream } from "effect"
import { eventPayload, writeOutbox } from "./Outbox.ts"

export type ExportJobState = "queued" | "running" | "completed" | "failed"

/** An export job as stored. */
export interface ExportJobRow {
  readonly id: string
  readonly format: "ndjson" | "csv"
  readonly page: string | null
  readonly state: ExportJobState
  readonly runs: number
  readonly pages_total: number | null
  readonly pages_done: number
  readonly row_count: number
  readonly byte_count: number
  readonly error: string | null
  readonly created_at: string
  readonly finished_at: string | null
  readonly expires_at: string | null
}

const iso = (column: string) => `to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`

/**
 * Export jobs and their results, kept in the database in chunks. A job is run under a lease that its runner renews
 * with every chunk; a job whose lease ran out (its process died) is claimed again and run from the start, its
 * earlier chunks discarded, so a job is never silently lost. Finishing a job writes its export.completed or
 * export.failed event to the webhook outbox in the same transaction.
 */
export class ExportJobStore extends Effect.Service<ExportJobStore>()("persistence/ExportJobStore", {
  effect: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const columns = sql.unsafe(`
      id::text AS id, format, page_uuid AS page, state, runs, pages_total, pages_done,
      row_count::float8 AS row_count, byte_count::float8 AS byte_count, error,
      ${iso("created_at")} AS created_at, ${iso("finished_at")} AS finished_at, ${iso("expires_at")} AS expires_at
    `)

    /** The job's event, with its deliveries, in the caller's transaction. */
    const publish = (job: ExportJobRow, at: number) => {
      const id = crypto.randomUUID()
      const type = job.state === "completed" ? "export.completed" : "export.failed"
      return writeOutbox(sql, [
        {
          id,
          type,
          page: job.page,
          threshold: null,
          at,
          payload: eventPayload(id, type, at, {
            export_id: job.id,
            format: job.format,
            page_uuid: job.page,
            state: job.state,
            row_count: job.row_count,
            byte_count: job.byte_count,
            error: job.error,
            download: job.state === "completed" ? `/exports/${job.id}/download` : null,
          }),
        },
      ])
    }

    return {
      create: Effect.fn("ExportJobStore.create")(function* (id: string, format: string, page: string | null) {
        const [row] = yield* sql<ExportJobRow>`
          INSERT INTO export_jobs (id, format, page_uuid) VALUES (${id}, ${format}, ${page}) RETURNING ${columns}
        `
        return row!
      }),

      get: Effect.fn("ExportJobStore.get")(function* (id: string) {
        const rows = yield* sql<ExportJobRow>`SELECT ${columns} FROM export_jobs WHERE id = ${id}`
        return Option.fromNullable(rows[0])
      }),

      /**
       * Claims the oldest job that is queued, or running under a lease that ran out, for `leaseMs`, and discards
       * any chunks an earlier run left. SKIP LOCKED: processes claim side by side.
       */
      claim: Effect.fn("ExportJobStore.claim")(function* (now: number, leaseMs: number) {
        return yield* sql.withTransaction(
          Effect.gen(function* () {
            const rows = yield* sql<ExportJobRow>`
              UPDATE export_jobs SET state = 'running', runs = runs + 1, pages_done = 0, row_count = 0,
                byte_count = 0, started_at = to_timestamp(${now} / 1000.0),
                leased_until = to_timestamp(${now + leaseMs} / 1000.0)
              WHERE id = (
                SELECT id FROM export_jobs
                WHERE state = 'queued'
                   OR (state = 'running' AND leased_until <= to_timestamp(${now} / 1000.0))
                ORDER BY created_at LIMIT 1
                FOR UPDATE SKIP LOCKED
              )
              RETURNING ${columns}
            `
            const job = rows[0]
            if (job !== undefined) yield* sql`DELETE FROM export_job_chunks WHERE job_id = ${job.id}`
            return Option.fromNullable(job)
          }),
        )
      }),

      /** Stores chunk `n` of a job and its progress, and renews its lease. */
      appendChunk: Effect.fn("ExportJobStore.appendChunk")(function* (
        id: string,
        n: number,
        data: Uint8Array,
        progress: {
          readonly pagesTotal: number
          readonly pagesDone: number
          readonly rows: number
          readonly bytes: number
        },
        leaseUntil: number,
      ) {
        yield* sql`
          WITH chunk AS (INSERT INTO export_job_chunks (job_id, n, data) VALUES (${id}, ${n}, ${data}))
          UPDATE export_jobs SET pages_total = ${progress.pagesTotal}, pages_done = ${progress.pagesDone},
            row_count = ${progress.rows}, byte_count = ${progress.bytes},
            leased_until = to_timestamp(${leaseUntil} / 1000.0)
          WHERE id = ${id}
        `
      }),

      /** Marks a job completed or failed and writes its event, in one transaction. */
      finish: Effect.fn("ExportJobStore.finish")(function* (
        id: string,
        outcome:
          | {
              readonly state: "completed"
              readonly pagesTotal: number
              readonly rows: number
              readonly bytes: number
            }
          | { readonly state: "failed"; readonly error: string },
        now: number,
        retentionMs: number,
      ) {
        yield* sql.withTransaction(
          Effect.gen(function* () {
            const rows =
              outcome.state === "completed"
                ? yield* sql<ExportJobRow>`
                    UPDATE export_jobs SET state = 'completed', pages_total = ${outcome.pagesTotal},
                      pages_done = ${outcome.pagesTotal}, row_count = ${outcome.rows}, byte_count = ${outcome.bytes},
                      finished_at = to_timestamp(${now} / 1000.0), leased_until = NULL,
                      expires_at = to_timestamp(${now + retentionMs} / 1000.0)
                    WHERE id = ${id} RETURNING ${columns}
                  `
                : yield* sql<ExportJobRow>`
                    UPDATE export_jobs SET state = 'failed', error = ${outcome.error}, leased_until = NULL,
                      finished_at = to_timestamp(${now} / 1000.0),
                      expires_at = to_timestamp(${now + retentionMs} / 1000.0)
                    WHERE id = ${id} RETURNING ${columns}
                  `
            const job = rows[0]
            if (job !== undefined) yield* publish(job, now)
          }),
        )
      }),

      /** Gives a job back to the queue (its runner is stopping): the next claim runs it again at once. */
      release: Effect.fn("ExportJobStore.release")(function* (id: string) {
        yield* sql`UPDATE export_jobs SET state = 'queued', leased_until = NULL WHERE id = ${id} AND state = 'running'`
      }),

      /** A completed job's file, chunk by chunk, one query per chunk (memory: one chunk). */
      chunks: (id: string): Stream.Stream<Uint8Array, SqlError.SqlError> =>
        Stream.paginateEffect(0, (n) =>
          sql<{
            data: Uint8Array
          }>`SELECT data FROM export_job_chunks WHERE job_id = ${id} AND n = ${n}`.pipe(
            Effect.map((rows) => [rows[0]?.data, Option.some(n + 1)] as const),
          ),
        ).pipe(
          Stream.takeWhile((data) => data !== undefined),
          Stream.filter((data): data is Uint8Array => data !== undefined),
        ),

      /** Removes finished jobs past their retention (with their files); answers how many. */
      purgeExpired: Effect.fn("ExportJobStore.purgeExpired")(function* (now: number) {
        const rows =
          yield* sql`DELETE FROM export_jobs WHERE expires_at <= to_timestamp(${now} / 1000.0) RETURNING id`
        return rows.length
      }),
    }
  }),
}) {}
