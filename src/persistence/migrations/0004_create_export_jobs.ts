import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * Export jobs and their results. The result is kept in the database (in chunks, in order) rather than under
 * DATA_DIR: every process of the service can serve the download, and it goes with the database's backups.
 * A job is leased by the process running it; a job whose lease ran out (its process died) is run again.
 */
export default Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`
    CREATE TABLE export_jobs (
      id uuid PRIMARY KEY,
      format text NOT NULL,
      page_uuid text,
      state text NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'running', 'completed', 'failed')),
      runs integer NOT NULL DEFAULT 0,
      pages_total integer,
      pages_done integer NOT NULL DEFAULT 0,
      row_count bigint NOT NULL DEFAULT 0,
      byte_count bigint NOT NULL DEFAULT 0,
      error text,
      created_at timestamptz NOT NULL DEFAULT now(),
      started_at timestamptz,
      finished_at timestamptz,
      expires_at timestamptz,
      leased_until timestamptz
    )
  `
  yield* sql`CREATE INDEX export_jobs_open ON export_jobs (created_at) WHERE state IN ('queued', 'running')`
  yield* sql`
    CREATE TABLE export_job_chunks (
      job_id uuid NOT NULL REFERENCES export_jobs (id) ON DELETE CASCADE,
      n integer NOT NULL,
      data bytea NOT NULL,
      PRIMARY KEY (job_id, n)
    )
  `
})
