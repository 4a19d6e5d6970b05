import { randomUUID } from "node:crypto"
import type { SqlClient } from "@effect/sql"
import { type Duration, Effect } from "effect"

/** The webhook event types a click can cause. */
export type ClickEventType = "cluster.created" | "cluster.threshold_reached" | "page.best_cluster_changed"

/** An event a click causes, decided by the page's actor with the click (PageBehaviour.save). */
export interface ClickEvent {
  readonly type: ClickEventType
  readonly clusterIdx: number
  readonly centroidX: number
  readonly centroidY: number
  readonly count: number
  /** cluster.threshold_reached: the threshold the count reached. */
  readonly threshold?: number | undefined
  /** page.best_cluster_changed: the former largest cluster (null: the page had none). */
  readonly previousClusterIdx?: number | null | undefined
}

/** An event as the outbox stores it: its id, what it concerns, and the exact body every delivery sends. */
export interface OutboxEvent {
  readonly id: string
  readonly type: string
  /** null: an event of no page (an export's). */
  readonly page: string | null
  readonly threshold: number | null
  readonly payload: string
  /** Epoch milliseconds. */
  readonly at: number
}

/** The body of a webhook: the event's id, type and time, and what it is about (README, Webhooks). */
export const eventPayload = (id: string, type: string, at: number, data: Record<string, unknown>) =>
  JSON.stringify({ id, type, timestamp: new Date(at).toISOString(), data })

/** A click's event as the outbox stores it. */
export const clickEvent = (page: string, at: number, event: ClickEvent): OutboxEvent => {
  const id = randomUUID()
  const data: Record<string, unknown> = {
    page_uuid: page,
    cluster_idx: event.clusterIdx,
    centroid: { x: event.centroidX, y: event.centroidY },
    count: event.count,
  }
  if (event.threshold !== undefined) data.threshold = event.threshold
  if (event.previousClusterIdx !== undefined) data.previous_cluster_idx = event.previousClusterIdx
  return {
    id,
    type: event.type,
    page,
    threshold: event.threshold ?? null,
    payload: eventPayload(id, event.type, at, data),
    at,
  }
}

/**
 * Writes events to the outbox and fans each out to the subscriptions that want it (its type, its page, its
 * threshold), as one statement, in the caller's transaction: an event exists exactly when what caused it was
 * committed, and its deliveries with it. The fan-out is done here rather than at delivery time so that the
 * subscriptions of the moment of the commit decide (a subscription gets the events committed after it exists),
 * and the worker only ever reads deliveries. Events are numbered (seq) in the order given.
 *
 * Only the first pending delivery of a (subscription, page) is due; the ones behind it wait with an infinite
 * next_attempt_at until it is settled (WebhookStore.settle promotes the next), so the worker's claim reads the due
 * deliveries alone, however long the queues behind a slow receiver grow.
 */
export const writeOutbox = (sql: SqlClient.SqlClient, events: ReadonlyArray<OutboxEvent>) =>
  events.length === 0
    ? Effect.void
    : sql`
        WITH ev AS (
          INSERT INTO webhook_events (id, type, page_uuid, threshold, payload, created_at)
          SELECT id, type, page_uuid, threshold, payload, to_timestamp(at_ms / 1000.0)
          FROM unnest(
            ${events.map((e) => e.id)}::uuid[], ${events.map((e) => e.type)}::text[],
            ${events.map((e) => e.page)}::text[], ${events.map((e) => e.threshold)}::int[],
            ${events.map((e) => e.payload)}::text[], ${events.map((e) => e.at)}::float8[]
          ) WITH ORDINALITY AS b(id, type, page_uuid, threshold, payload, at_ms, ord)
          ORDER BY ord
          RETURNING seq, type, page_uuid, threshold, created_at
        )
        , fan AS (
          SELECT s.id AS subscription_id, ev.seq, coalesce(ev.page_uuid, '') AS page_uuid, ev.created_at,
                 row_number() OVER (PARTITION BY s.id, coalesce(ev.page_uuid, '') ORDER BY ev.seq) AS n
          FROM ev JOIN webhook_subscriptions s
            ON ev.type = ANY (s.events)
            AND (s.pages IS NULL OR ev.page_uuid = ANY (s.pages))
            AND (ev.threshold IS NULL OR ev.threshold = ANY (s.thresholds))
        )
        INSERT INTO webhook_deliveries (subscription_id, event_seq, page_uuid, next_attempt_at)
        SELECT f.subscription_id, f.seq, f.page_uuid,
          CASE WHEN f.n = 1 AND NOT EXISTS (
            SELECT 1 FROM webhook_deliveries q
            WHERE q.state = 'pending' AND NOT q.out_of_line AND q.subscription_id = f.subscription_id
              AND q.page_uuid = f.page_uuid
          ) THEN f.created_at ELSE 'infinity' END
        FROM fan f
      `.pipe(Effect.asVoid)

/**
 * Tells the webhook worker of this process that deliveries were just committed, so it need not wait for its next
 * poll; workers of other processes find them by polling (WEBHOOK_POLL_INTERVAL).
 */
export class OutboxSignal extends Effect.Service<OutboxSignal>()("persistence/OutboxSignal", {
  effect: Effect.gen(function* () {
    const latch = yield* Effect.makeLatch(false)
    return {
      /** Synchronous: called by the click log's writer after a commit. */
      notify: () => latch.unsafeOpen(),
      /** Waits for a notification (one that came since the last wait counts), at most `timeout`. */
      wait: (timeout: Duration.DurationInput) =>
        latch.await.pipe(Effect.timeoutOption(timeout), Effect.zipRight(latch.close)),
    }
  }),
}) {}
