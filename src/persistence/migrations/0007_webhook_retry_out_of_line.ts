import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * A delivery retried by hand once it was dead (or delivered) leaves its (subscription, page) line: its place in the
 * order was given up when it died, and the page's later events went on without it. Kept in line, it held every
 * later event of its page behind a fresh round of attempts, for as long as its receiver kept refusing it. The
 * line's index covers the deliveries in line only.
 */
export default Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`ALTER TABLE webhook_deliveries ADD COLUMN out_of_line boolean NOT NULL DEFAULT false`
  yield* sql`DROP INDEX webhook_deliveries_queue`
  yield* sql`
    CREATE INDEX webhook_deliveries_queue ON webhook_deliveries (subscription_id, page_uuid, event_seq)
    WHERE state = 'pending' AND NOT out_of_line
  `
})
