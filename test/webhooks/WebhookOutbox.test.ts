import { randomUUID } from "node:crypto"
import { SqlClient } from "@effect/sql"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Effect, Either, Layer, ManagedRuntime } from "effect"
import { Metrics } from "../../src/Metrics.ts"
import { ClickChain, ClickLog, type ClickRecord } from "../../src/persistence/ClickLog.ts"
import type { CommitTicket } from "../../src/persistence/CommitTicket.ts"
import type { ClickEvent } from "../../src/persistence/Outbox.ts"
import { storageLayer } from "../support/StorageLayer.ts"
import { type StorageMode, storageModes } from "../support/StorageModes.ts"

const created: ClickEvent = {
  type: "cluster.created",
  clusterIdx: 0,
  centroidX: 0.5,
  centroidY: 0.5,
  count: 1,
}

const click = (
  page: string,
  seq: number,
  events?: ReadonlyArray<ClickEvent>,
  requestId: string | null = null,
) => ({ page, seq, x: 0.5, y: 0.5, clusterIdx: 0, at: Date.now(), requestId, events }) satisfies ClickRecord

const outcome = (ticket: CommitTicket) =>
  ticket.await.pipe(
    Effect.either,
    Effect.map((e) => (Either.isRight(e) ? "ok" : e.left._tag)),
  )

describe.each(storageModes())("webhook outbox in the click log's transaction, $name storage", ({ make }) => {
  let storage: StorageMode
  let runtime: ManagedRuntime.ManagedRuntime<ClickLog | SqlClient.SqlClient, unknown>

  beforeAll(async () => {
    storage = await make()
    const env = { ...storage.env, LOG_LEVEL: "error" }
    runtime = ManagedRuntime.make(
      ClickLog.Default.pipe(
        Layer.provideMerge(storageLayer({ ...storage, env })),
        Layer.provide(Metrics.Default),
      ),
    )
  }, 60_000)
  afterAll(async () => {
    await runtime?.dispose()
    await storage?.dispose()
  })

  const run = <A, E>(effect: Effect.Effect<A, E, ClickLog | SqlClient.SqlClient>) =>
    runtime.runPromise(effect)

  const subscribe = (
    events: ReadonlyArray<string>,
    pages: ReadonlyArray<string> | null,
    thresholds: ReadonlyArray<number> = [],
  ) =>
    Effect.flatMap(SqlClient.SqlClient, (sql) => {
      const id = randomUUID()
      return sql`
        INSERT INTO webhook_subscriptions (id, url, events, pages, thresholds, secret)
        VALUES (${id}, 'http://127.0.0.1:9/', ${events}::text[], ${pages}::text[], ${thresholds}::int[], 'whsec_AAAA')
      `.pipe(Effect.as(id))
    })

  const eventsOf = (page: string) =>
    Effect.flatMap(
      SqlClient.SqlClient,
      (sql) => sql<{
        type: string
        payload: string
        deliveries: number
        subscriptions: ReadonlyArray<string>
      }>`
        SELECT e.type, e.payload, count(d.id)::int AS deliveries,
               coalesce(array_agg(d.subscription_id::text ORDER BY d.subscription_id) FILTER (WHERE d.id IS NOT NULL), '{}') AS subscriptions
        FROM webhook_events e LEFT JOIN webhook_deliveries d ON d.event_seq = e.seq
        WHERE e.page_uuid = ${page} GROUP BY e.seq ORDER BY e.seq
      `,
    )

  it("stores the events of the clicks it stores, once each, and none of a skipped click or of the clicks undone after it", async () => {
    const [a, b] = [`a-${randomUUID()}`, `b-${randomUUID()}`]
    const result = await run(
      Effect.gen(function* () {
        const log = yield* ClickLog
        yield* outcome(log.append(click(a, 1, [created]), new ClickChain()))
        // A stale owner of page a (its seq 1 is taken): its clicks fail, and so must their events.
        const stale = new ClickChain()
        const tickets = [
          log.append(click(a, 1, [created]), stale),
          log.append(
            click(b, 1, [
              created,
              { ...created, type: "page.best_cluster_changed", previousClusterIdx: null },
            ]),
            new ClickChain(),
          ),
          log.append(
            click(a, 2, [{ ...created, type: "cluster.threshold_reached", threshold: 2, count: 2 }]),
            stale,
          ),
        ]
        const answers = yield* Effect.forEach(tickets, outcome)
        return { answers, a: yield* eventsOf(a), b: yield* eventsOf(b) }
      }),
    )
    expect(result.answers).toEqual(["StorageUnavailable", "ok", "StorageUnavailable"])
    expect(result.a.map((e) => e.type)).toEqual(["cluster.created"])
    expect(result.b.map((e) => e.type)).toEqual(["cluster.created", "page.best_cluster_changed"])
    const payload = JSON.parse(result.b[1]!.payload)
    expect(payload).toMatchObject({
      type: "page.best_cluster_changed",
      data: {
        page_uuid: b,
        cluster_idx: 0,
        centroid: { x: 0.5, y: 0.5 },
        count: 1,
        previous_cluster_idx: null,
      },
    })
    expect(typeof payload.id).toBe("string")
  })

  it("fans each event out to the subscriptions that want its type, page and threshold, in the same transaction", async () => {
    const page = `p-${randomUUID()}`
    const result = await run(
      Effect.gen(function* () {
        const everyPage = yield* subscribe(["cluster.created"], null)
        const thisPage = yield* subscribe(["cluster.created", "cluster.threshold_reached"], [page], [3])
        const otherPage = yield* subscribe(["cluster.created"], [`${page}-other`])
        const otherThreshold = yield* subscribe(["cluster.threshold_reached"], [page], [4])
        const log = yield* ClickLog
        yield* outcome(
          log.append(
            click(page, 1, [
              created,
              { ...created, type: "cluster.threshold_reached", threshold: 3, count: 3 },
            ]),
            new ClickChain(),
          ),
        )
        return { ids: { everyPage, thisPage, otherPage, otherThreshold }, events: yield* eventsOf(page) }
      }),
    )
    const { ids, events } = result
    expect(events.map((e) => e.type)).toEqual(["cluster.created", "cluster.threshold_reached"])
    expect(events[0]!.subscriptions).toEqual([ids.everyPage, ids.thisPage].sort())
    expect(events[1]!.subscriptions).toEqual([ids.thisPage])
    expect(events.flatMap((e) => e.subscriptions)).not.toContain(ids.otherPage)
    expect(events.flatMap((e) => e.subscriptions)).not.toContain(ids.otherThreshold)
  })

  it("a batch without events writes nothing to the outbox", async () => {
    const page = `q-${randomUUID()}`
    const result = await run(
      Effect.gen(function* () {
        const log = yield* ClickLog
        const chain = new ClickChain()
        const answers = yield* Effect.forEach(
          [log.append(click(page, 1), chain), log.append(click(page, 2), chain)],
          outcome,
        )
        return { answers, events: yield* eventsOf(page) }
      }),
    )
    expect(result.answers).toEqual(["ok", "ok"])
    expect(result.events).toEqual([])
  })
})
