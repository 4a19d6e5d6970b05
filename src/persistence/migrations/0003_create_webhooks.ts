import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * Webhooks: subscriptions, the outbox of events (written in the transaction of the clicks that caused them), one
 * delivery per (subscription, event) fanned out in that same transaction, and every attempt of a delivery.
 */
export default Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`
    CREATE TABLE webhook_subscriptions (
      id uuid PRIMARY KEY,
      url text NOT NULL,
      events text[] NOT NULL,
      pages text[],
      thresholds integer[] NOT NULL DEFAULT '{}',
      secret text NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now()
    )
  `
  yield* sql`
    CREATE TABLE webhook_events (
      seq bigserial PRIMARY KEY,
      id uuid NOT NULL UNIQUE,
      type text NOT NULL,
      page_uuid text,
      threshold integer,
      payload text NOT NULL,
      created_at timestamptz NOT NULL
    )
  `
  // page_uuid is the ordering key ('' for events of no page): a subscription's deliveries of one page go in
  // event order. attempts counts the attempts since the delivery was (re)scheduled; webhook_attempts keeps all.
  yield* sql`
    CREATE TABLE webhook_deliveries (
      id bigserial PRIMARY KEY,
      subscription_id uuid NOT NULL REFERENCES webhook_subscriptions (id) ON DELETE CASCADE,
      event_seq bigint NOT NULL REFERENCES webhook_events (seq),
      page_uuid text NOT NULL,
      state text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'dead')),
      attempts integer NOT NULL DEFAULT 0,
      next_attempt_at timestamptz NOT NULL,
      leased_until timestamptz,
      last_status integer,
      last_error text,
      delivered_at timestamptz,
      UNIQUE (subscription_id, event_seq)
    )
  `
  yield* sql`CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE state = 'pending'`
  yield* sql`
    CREATE INDEX webhook_deliveries_queue ON webhook_deliveries (subscription_id, page_uuid, event_seq)
    WHERE state = 'pending'
  `
  yield* sql`
    CREATE TABLE webhook_attempts (
      id bigserial PRIMARY KEY,
      delivery_id bigint NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
      attempted_at timestamptz NOT NULL,
      status integer,
      latency_ms double precision NOT NULL,
      error text
    )
  `
  yield* sql`CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id, id)`
})
