import { SqlClient } from "@effect/sql"
import { Effect, Option } from "effect"
import { type OutboxEvent, writeOutbox } from "./Outbox.ts"
import { WebhookInterest } from "./WebhookInterest.ts"

/** A subscription as stored. */
export interface Subscription {
  readonly id: string
  readonly url: string
  readonly events: ReadonlyArray<string>
  readonly pages: ReadonlyArray<string> | null
  readonly thresholds: ReadonlyArray<number>
  readonly secret: string
  readonly created_at: string
}

export type DeliveryState = "pending" | "delivered" | "dead"

/** One attempt of a delivery. */
export interface Attempt {
  readonly at: string
  /** The receiver's HTTP status; null when none came (timeout, connection refused, refused address). */
  readonly status: number | null
  readonly latency_ms: number
  readonly error: string | null
}

/** A delivery as listed, with its attempts. */
export interface Delivery {
  readonly id: number
  readonly event_id: string
  readonly event_type: string
  readonly page_uuid: string | null
  readonly state: DeliveryState
  readonly attempts: number
  readonly next_attempt_at: string | null
  readonly delivered_at: string | null
  readonly last_status: number | null
  readonly last_error: string | null
  readonly attempt_log: ReadonlyArray<Attempt>
}

/** A delivery claimed by a worker: what it must send, and where. */
export interface ClaimedDelivery {
  readonly id: number
  readonly attempts: number
  readonly url: string
  readonly secret: string
  readonly event_id: string
  readonly payload: string
}

/** How an attempt ended, as the worker decided. */
export interface AttemptOutcome {
  /** Epoch milliseconds. */
  readonly at: number
  readonly status: number | null
  readonly latencyMs: number
  readonly error: string | null
  /** delivered; or pending again at `nextAt`; or dead (attempts exhausted). */
  readonly state: DeliveryState
  readonly nextAt: number
}

const iso = (column: string) => `to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`

/**
 * The webhooks' tables: subscriptions, and the deliveries the worker claims and settles. Every call is one short
 * statement (never a transaction held across an HTTP call), so the embedded database's single connection stays
 * free for the click writer.
 */
export class WebhookStore extends Effect.Service<WebhookStore>()("persistence/WebhookStore", {
  effect: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const interest = yield* WebhookInterest
    const subscriptionColumns = sql.unsafe(
      `id::text AS id, url, events, pages, thresholds, secret, ${iso("created_at")} AS created_at`,
    )
    const deliveryColumns = sql.unsafe(`
      d.id::float8 AS id, e.id::text AS event_id, e.type AS event_type, e.page_uuid, d.state, d.attempts,
      CASE WHEN d.state = 'pending' AND d.next_attempt_at <> 'infinity' THEN ${iso("d.next_attempt_at")} END
        AS next_attempt_at,
      ${iso("d.delivered_at")} AS delivered_at, d.last_status, d.last_error,
      coalesce((
        SELECT json_agg(json_build_object(
          'at', ${iso("a.attempted_at")}, 'status', a.status, 'latency_ms', a.latency_ms, 'error', a.error
        ) ORDER BY a.id)
        FROM webhook_attempts a WHERE a.delivery_id = d.id
      ), '[]'::json) AS attempt_log
    `)

    return {
      create: Effect.fn("WebhookStore.create")(function* (subscription: Omit<Subscription, "created_at">) {
        const [row] = yield* sql<Subscription>`
          INSERT INTO webhook_subscriptions (id, url, events, pages, thresholds, secret)
          VALUES (${subscription.id}, ${subscription.url}, ${subscription.events}::text[],
                  ${subscription.pages}::text[], ${subscription.thresholds}::int[], ${subscription.secret})
          RETURNING ${subscriptionColumns}
        `
        yield* interest.refresh
        return row!
      }),

      list: Effect.fn("WebhookStore.list")(function* () {
        return yield* sql<Subscription>`SELECT ${subscriptionColumns} FROM webhook_subscriptions ORDER BY created_at, id`
      }),

      get: Effect.fn("WebhookStore.get")(function* (id: string) {
        const rows =
          yield* sql<Subscription>`SELECT ${subscriptionColumns} FROM webhook_subscriptions WHERE id = ${id}`
        return Option.fromNullable(rows[0])
      }),

      /** Deletes a subscription and its deliveries; false when there was none. */
      remove: Effect.fn("WebhookStore.remove")(function* (id: string) {
        const rows = yield* sql`DELETE FROM webhook_subscriptions WHERE id = ${id} RETURNING id`
        yield* interest.refresh
        return rows.length > 0
      }),

      rotateSecret: Effect.fn("WebhookStore.rotateSecret")(function* (id: string, secret: string) {
        const rows = yield* sql<Subscription>`
          UPDATE webhook_subscriptions SET secret = ${secret} WHERE id = ${id} RETURNING ${subscriptionColumns}
        `
        return Option.fromNullable(rows[0])
      }),

      /** A subscription's deliveries in id order after `after`, optionally in one state. */
      deliveries: Effect.fn("WebhookStore.deliveries")(function* (
        subscription: string,
        options: {
          readonly state?: DeliveryState | undefined
          readonly after?: number | undefined
          readonly limit: number
        },
      ) {
        return yield* sql<Delivery>`
          SELECT ${deliveryColumns}
          FROM webhook_deliveries d JOIN webhook_events e ON e.seq = d.event_seq
          WHERE d.subscription_id = ${subscription}
            AND ${options.state === undefined ? sql`true` : sql`d.state = ${options.state}`}
            AND d.id > ${options.after ?? 0}
          ORDER BY d.id
          LIMIT ${options.limit}
        `
      }),

      /**
       * Schedules a delivery again now, with a fresh round of attempts (a dead one, or a pending one sooner);
       * none when the subscription has no such delivery. A delivered one is sent again too (a receiver that
       * lost it asks for it): receivers deduplicate by the event id. A dead or delivered one is sent out of line:
       * its page's later events went on without it, and do not wait for it now.
       */
      retry: Effect.fn("WebhookStore.retry")(function* (subscription: string, delivery: number, now: number) {
        const rows = yield* sql<Delivery>`
          WITH d AS (
            UPDATE webhook_deliveries SET state = 'pending', attempts = 0, leased_until = NULL,
              next_attempt_at = to_timestamp(${now} / 1000.0), delivered_at = NULL,
              out_of_line = out_of_line OR state <> 'pending'
            WHERE id = ${delivery} AND subscription_id = ${subscription}
            RETURNING *
          )
          SELECT ${deliveryColumns} FROM d JOIN webhook_events e ON e.seq = d.event_seq
        `
        return Option.fromNullable(rows[0])
      }),

      /**
       * Claims up to `limit` due deliveries for `leaseMs` (other workers skip them meanwhile, and take them over
       * when the lease ran out: their worker died). Only the first pending delivery in line of each (subscription,
       * page) is due, so a page's events reach a subscriber in their order; one retried out of line is due alone. SKIP LOCKED: workers of several
       * processes claim concurrently without waiting on one another's rows. In next_attempt_at order only, the
       * due index's own order, so a claim reads `limit` rows rather than sorting every due one.
       */
      claim: Effect.fn("WebhookStore.claim")(function* (now: number, leaseMs: number, limit: number) {
        return yield* sql<ClaimedDelivery>`
          WITH claimed AS (
            UPDATE webhook_deliveries SET leased_until = to_timestamp(${now + leaseMs} / 1000.0)
            WHERE id IN (
              SELECT d.id FROM webhook_deliveries d
              WHERE d.state = 'pending' AND d.next_attempt_at <= to_timestamp(${now} / 1000.0)
                AND (d.leased_until IS NULL OR d.leased_until <= to_timestamp(${now} / 1000.0))
                AND (d.out_of_line OR NOT EXISTS (
                  SELECT 1 FROM webhook_deliveries e
                  WHERE e.state = 'pending' AND NOT e.out_of_line AND e.subscription_id = d.subscription_id
                    AND e.page_uuid = d.page_uuid AND e.event_seq < d.event_seq
                ))
              ORDER BY d.next_attempt_at
              LIMIT ${limit}
              FOR UPDATE SKIP LOCKED
            )
            RETURNING id, attempts, subscription_id, event_seq
          )
          SELECT c.id::float8 AS id, c.attempts, s.url, s.secret, e.id::text AS event_id, e.payload
          FROM claimed c
          JOIN webhook_subscriptions s ON s.id = c.subscription_id
          JOIN webhook_events e ON e.seq = c.event_seq
          ORDER BY e.seq
        `
      }),

      /**
       * Records an attempt and the delivery's new state, and when it is settled (delivered or dead) makes the next
       * pending delivery of its (subscription, page) due: one statement; nothing when the delivery is gone (its
       * subscription was deleted during the attempt).
       */
      settle: Effect.fn("WebhookStore.settle")(function* (delivery: number, outcome: AttemptOutcome) {
        yield* sql`
          WITH d AS (
            UPDATE webhook_deliveries SET
              attempts = attempts + 1, state = ${outcome.state}, leased_until = NULL,
              next_attempt_at = to_timestamp(${outcome.nextAt} / 1000.0),
              last_status = ${outcome.status}, last_error = ${outcome.error},
              delivered_at = CASE WHEN ${outcome.state} = 'delivered' THEN to_timestamp(${outcome.at} / 1000.0) END
            WHERE id = ${delivery}
            RETURNING id, subscription_id, page_uuid, state
          ), attempt AS (
            INSERT INTO webhook_attempts (delivery_id, attempted_at, status, latency_ms, error)
            SELECT id, to_timestamp(${outcome.at} / 1000.0), ${outcome.status}::int, ${outcome.latencyMs}::float8,
                   ${outcome.error}::text
            FROM d
          )
          UPDATE webhook_deliveries SET next_attempt_at = to_timestamp(${outcome.at} / 1000.0)
          WHERE next_attempt_at = 'infinity' AND id = (
            SELECT q.id FROM d JOIN webhook_deliveries q
              ON q.subscription_id = d.subscription_id AND q.page_uuid = d.page_uuid
            WHERE d.state <> 'pending' AND q.state = 'pending' AND NOT q.out_of_line AND q.id <> d.id
            ORDER BY q.event_seq LIMIT 1
          )
        `
      }),

      /** Gives a claimed delivery back (its worker stops before the attempt ended): due again at once. */
      release: Effect.fn("WebhookStore.release")(function* (delivery: number) {
        yield* sql`UPDATE webhook_deliveries SET leased_until = NULL WHERE id = ${delivery} AND state = 'pending'`
      }),

      /**
       * Makes due the waiting deliveries that nothing is ahead of any more. Settling promotes the next delivery
       * itself; this repairs the rare race where a click's transaction queued a delivery behind one that was being
       * settled at the same moment (neither saw the other's write), so no queue waits longer than one sweep.
       */
      sweep: Effect.fn("WebhookStore.sweep")(function* (now: number) {
        yield* sql`
          UPDATE webhook_deliveries w SET next_attempt_at = to_timestamp(${now} / 1000.0)
          WHERE w.state = 'pending' AND w.next_attempt_at = 'infinity' AND NOT EXISTS (
            SELECT 1 FROM webhook_deliveries e
            WHERE e.state = 'pending' AND NOT e.out_of_line AND e.subscription_id = w.subscription_id
              AND e.page_uuid = w.page_uuid AND e.event_seq < w.event_seq
          )
        `
      }),

      /**
       * Removes settled (delivered or dead) deliveries whose last attempt is older than `before`, with their
       * attempts, and the events no delivery refers to any more; answers how many deliveries. Pending ones stay.
       */
      purge: Effect.fn("WebhookStore.purge")(function* (before: number) {
        const removed = yield* sql`
          DELETE FROM webhook_deliveries d
          WHERE d.state <> 'pending' AND d.next_attempt_at < to_timestamp(${before} / 1000.0)
          RETURNING d.event_seq
        `
        yield* sql`
          DELETE FROM webhook_events e
          WHERE e.created_at < to_timestamp(${before} / 1000.0)
            AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_seq = e.seq)
        `
        return removed.length
      }),

      /** Pending deliveries and the age of the oldest (seconds), for the metrics. */
      backlog: sql<{ depth: number; oldest_age: number | null }>`
        SELECT count(*)::float8 AS depth,
               extract(epoch FROM now() - min(e.created_at))::float8 AS oldest_age
        FROM webhook_deliveries d JOIN webhook_events e ON e.seq = d.event_seq
        WHERE d.state = 'pending'
      `.pipe(Effect.map((rows) => rows[0] ?? { depth: 0, oldest_age: null })),

      /** Writes events of no click (an export's) with their deliveries. */
      publish: Effect.fn("WebhookStore.publish")(function* (events: ReadonlyArray<OutboxEvent>) {
        yield* writeOutbox(sql, events)
      }),
    }
  }),
}) {}
