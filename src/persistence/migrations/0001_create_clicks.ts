import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/** Every saved click; `seq` is its number within its page, given by the page's actor. */
export default Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`
    CREATE TABLE clicks (
      page_uuid text NOT NULL,
      seq bigint NOT NULL,
      x double precision NOT NULL,
      y double precision NOT NULL,
      cluster_idx integer NOT NULL,
      request_id uuid,
      created_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (page_uuid, seq)
    )
  `
  yield* sql`CREATE UNIQUE INDEX clicks_request_id ON clicks (request_id) WHERE request_id IS NOT NULL`
})
