import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/** The latest clustering state of each page, valid after click `seq`. */
export default Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`
    CREATE TABLE page_snapshots (
      page_uuid text PRIMARY KEY,
      seq bigint NOT NULL,
      clusters jsonb NOT NULL,
      taken_at timestamptz NOT NULL DEFAULT now()
    )
  `
})
