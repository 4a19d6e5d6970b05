import { randomUUID } from "node:crypto"
import { SqlClient } from "@effect/sql"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Context, Effect, Either, Layer, ManagedRuntime } from "effect"
import { AppConfig } from "../../src/Config.ts"
import { Metrics } from "../../src/Metrics.ts"
import { ClickChain, ClickLog, type ClickRecord } from "../../src/persistence/ClickLog.ts"
import type { CommitTicket } from "../../src/persistence/CommitTicket.ts"
import { storageLayer } from "../support/StorageLayer.ts"
import { type StorageMode, storageModes } from "../support/StorageModes.ts"

const click = (page: string, seq: number, requestId: string | null = null, x = 0.5): ClickRecord => ({
  page,
  seq,
  x,
  y: 0.5,
  clusterIdx: 0,
  at: Date.now(),
  requestId,
})

/** How a ticket settled: "ok", or the error's tag. */
const outcome = (ticket: CommitTicket) =>
  ticket.await.pipe(
    Effect.either,
    Effect.map((e) => (Either.isRight(e) ? "ok" : e.left._tag)),
  )

describe.each(storageModes())("ClickLog writer, $name storage", ({ make }) => {
  let storage: StorageMode
  let runtime: ManagedRuntime.ManagedRuntime<ClickLog | SqlClient.SqlClient, unknown>

  beforeAll(async () => {
    storage = await make()
    const env = { ...storage.env, LOG_LEVEL: "error", WRITER_LINGER: "0 millis" }
    runtime = ManagedRuntime.make(
      ClickLog.Default.pipe(
        Layer.provideMerge(storageLayer({ ...storage, env })),
        Layer.provide(Metrics.Default),
      ),
    )
  })
  afterAll(async () => {
    await runtime?.dispose()
    await storage?.dispose()
  })

  const run = <A, E>(effect: Effect.Effect<A, E, ClickLog | SqlClient.SqlClient>) =>
    runtime.runPromise(effect)

  /** Appends in one synchronous step, so every click lands in the same batch. */
  const appendAll = (records: ReadonlyArray<readonly [ClickRecord, ClickChain]>) =>
    Effect.map(ClickLog, (log) => records.map(([r, i]) => log.append(r, i)))

  const stored = (page: string) =>
    Effect.flatMap(
      SqlClient.SqlClient,
      (sql) =>
        sql<{
          seq: number
          x: number
        }>`SELECT seq::int AS seq, x FROM clicks WHERE page_uuid = ${page} ORDER BY seq`,
    )

  it("one request id on two pages in one batch: the first is stored, the second answers 409, and its page's later clicks are not stored", async () => {
    const [a, b] = [`a-${randomUUID()}`, `b-${randomUUID()}`]
    const shared = randomUUID()
    const [ia, ib] = [new ClickChain(), new ClickChain()]
    const result = await run(
      Effect.gen(function* () {
        const tickets = yield* appendAll([
          [click(a, 1, shared), ia],
          [click(b, 1, shared), ib],
          [click(b, 2), ib],
          [click(a, 2), ia],
        ])
        const answers = yield* Effect.forEach(tickets, outcome)
        return { answers, a: yield* stored(a), b: yield* stored(b) }
      }),
    )
    expect(result.answers).toEqual(["ok", "IdempotencyConflict", "StorageUnavailable", "ok"])
    expect(result.a.map((r) => r.seq)).toEqual([1, 2])
    expect(result.b).toEqual([])
    expect([ia.failed, ib.failed]).toEqual([false, true])
    expect([ia.pending, ib.pending]).toEqual([0, 0])
  })

  it("a request id already stored: the click answers 409 and no later click of its page in the batch is stored one seq too high", async () => {
    const [a, b, c] = [`a-${randomUUID()}`, `b-${randomUUID()}`, `c-${randomUUID()}`]
    const key = randomUUID()
    const result = await run(
      Effect.gen(function* () {
        const [first] = yield* appendAll([[click(a, 1, key), new ClickChain()]])
        if (first !== undefined) yield* first.await
        const ib = new ClickChain()
        const tickets = yield* appendAll([
          [click(b, 1), ib],
          [click(b, 2, key), ib],
          [click(b, 3), ib],
          [click(c, 1), new ClickChain()],
          [click(b, 4), ib],
        ])
        const answers = yield* Effect.forEach(tickets, outcome)
        return { answers, b: yield* stored(b), c: yield* stored(c) }
      }),
    )
    expect(result.answers).toEqual([
      "ok",
      "IdempotencyConflict",
      "StorageUnavailable",
      "ok",
      "StorageUnavailable",
    ])
    expect(result.b.map((r) => r.seq)).toEqual([1])
    expect(result.c.map((r) => r.seq)).toEqual([1])
  })

  it("a stale page state (its seq already stored) fails only that page's clicks, not the other pages of the batch", async () => {
    const [a, c] = [`a-${randomUUID()}`, `c-${randomUUID()}`]
    const result = await run(
      Effect.gen(function* () {
        const [first] = yield* appendAll([[click(a, 1, null, 0.1), new ClickChain()]])
        if (first !== undefined) yield* first.await
        // A second owner of page a that never saw click 1 (an unknown outcome that committed late).
        const stale = new ClickChain()
        const tickets = yield* appendAll([
          [click(a, 1, null, 0.9), stale],
          [click(c, 1), new ClickChain()],
          [click(a, 2, null, 0.9), stale],
        ])
        const answers = yield* Effect.forEach(tickets, outcome)
        return { answers, a: yield* stored(a), c: yield* stored(c), failed: stale.failed }
      }),
    )
    expect(result.answers).toEqual(["StorageUnavailable", "ok", "StorageUnavailable"])
    expect(result.a).toEqual([{ seq: 1, x: 0.1 }])
    expect(result.c.map((r) => r.seq)).toEqual([1])
    expect(result.failed).toBe(true)
  })

  it("a commit listener that throws does not keep the rest of its batch, nor later clicks, from being answered", async () => {
    const page = `p-${randomUUID()}`
    const result = await run(
      Effect.gen(function* () {
        const chain = new ClickChain()
        const tickets = yield* appendAll([
          [click(page, 1), chain],
          [click(page, 2), chain],
        ])
        tickets[0]?.onSettled(() => {
          throw new Error("a buggy listener")
        })
        const answers = yield* Effect.forEach(tickets, outcome).pipe(Effect.timeout("20 seconds"))
        const [later] = yield* appendAll([[click(page, 3), chain]])
        const laterAnswer =
          later === undefined ? "none" : yield* outcome(later).pipe(Effect.timeout("20 seconds"))
        return { answers, laterAnswer, rows: yield* stored(page) }
      }),
    )
    expect(result.answers).toEqual(["ok", "ok"])
    expect(result.laterAnswer).toBe("ok")
    expect(result.rows.map((r) => r.seq)).toEqual([1, 2, 3])
  })

  it("with several batches in flight, each page stores exactly the prefix of its clicks answered ok, in order", async () => {
    // Small batches and three writers: many batches in flight at once, a page's clicks spread over several of them.
    const env = {
      ...storage.env,
      LOG_LEVEL: "error",
      WRITER_LINGER: "0 millis",
      WRITER_BATCH_SIZE: "5",
      WRITER_CONCURRENCY: "3",
    }
    const writer = ClickLog.Default.pipe(
      Layer.provide(Metrics.Default),
      Layer.provide(AppConfig.Default),
      Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env))))),
    )
    const tag = randomUUID().slice(0, 8)
    const pages = Array.from({ length: 12 }, (_, i) => `conc-${tag}-${i}`)
    // Every third page's click 4 is already stored (a stale state): its clicks 4.. must fail, none stored.
    const poisoned = new Set(pages.filter((_, i) => i % 3 === 0))
    // Two pages share each of a few request ids: whichever is written first keeps it, the other answers 409.
    const shared = [randomUUID(), randomUUID()]
    const keyOf = (i: number, seq: number) =>
      seq === 6 && i % 4 === 1 ? shared[0] : seq === 7 && i % 4 === 2 ? shared[1] : null
    let seed = 7
    const random = () => {
      seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648
      return seed / 2_147_483_648
    }
    const result = await run(
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        for (const page of poisoned)
          yield* sql`INSERT INTO clicks (page_uuid, seq, x, y, cluster_idx) VALUES (${page}, 4, 0.1, 0.1, 0)`
        return yield* Effect.scoped(
          Effect.gen(function* () {
            const log = Context.get(yield* Layer.build(writer), ClickLog)
            const chains = pages.map(() => new ClickChain())
            const next = pages.map(() => 1)
            const tickets = pages.map((): Array<CommitTicket> => [])
            // The pages' clicks interleaved at random, each page's in order, appended in bursts between yields.
            while (next.some((n) => n <= 10)) {
              for (let burst = 0; burst < 7; burst++) {
                const open = pages.flatMap((_, i) => ((next[i] ?? 11) <= 10 ? [i] : []))
                const i = open[Math.floor(random() * open.length)]
                if (i === undefined) break
                const seq = next[i] ?? 11
                next[i] = seq + 1
                const page = pages[i] ?? ""
                tickets[i]?.push(
                  log.append(click(page, seq, keyOf(i, seq) ?? null), chains[i] ?? new ClickChain()),
                )
              }
              yield* Effect.yieldNow()
            }
            const answers = yield* Effect.forEach(tickets, (list) => Effect.forEach(list, outcome))
            const rows = yield* Effect.forEach(pages, (page) => stored(page))
            const keyRows = yield* Effect.forEach(
              shared,
              (key) => sql<{ n: number }>`SELECT count(*)::int AS n FROM clicks WHERE request_id = ${key}`,
            )
            return { answers, rows, keyRows: keyRows.map((r) => r[0]?.n) }
          }),
        )
      }),
    )
    let conflicts = 0
    pages.forEach((page, i) => {
      const answers = result.answers[i] ?? []
      const stored = (result.rows[i] ?? []).map((r) => r.seq)
      const ok = answers.flatMap((a, j) => (a === "ok" ? [j + 1] : []))
      // A prefix answered ok, then nothing more of the page stored.
      expect(ok).toEqual(Array.from({ length: ok.length }, (_, j) => j + 1))
      expect(stored).toEqual(poisoned.has(page) ? [...ok, 4] : ok)
      if (poisoned.has(page)) expect(ok.length).toBeLessThanOrEqual(3)
      conflicts += answers.filter((a) => a === "IdempotencyConflict").length
    })
    // Each shared request id is stored once, by the one page whose use of it answered ok; the other uses 409.
    shared.forEach((key, k) => {
      const okUses = pages.filter((_, i) =>
        [6, 7].some((seq) => keyOf(i, seq) === key && result.answers[i]?.[seq - 1] === "ok"),
      )
      expect(okUses.length).toBe(1)
      expect(result.keyRows[k]).toBe(1)
    })
    expect(conflicts).toBeGreaterThan(0)
  })

  it("closing the click log waits until every click handed to it is committed", async () => {
    const page = `p-${randomUUID()}`
    const env = { ...storage.env, LOG_LEVEL: "error", WRITER_LINGER: "0 millis", WRITER_BATCH_SIZE: "7" }
    // A second writer over the same database, with a scope of its own to close.
    const writer = ClickLog.Default.pipe(
      Layer.provide(Metrics.Default),
      Layer.provide(AppConfig.Default),
      Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env))))),
    )
    const result = await run(
      Effect.gen(function* () {
        const tickets = yield* Effect.scoped(
          Effect.gen(function* () {
            const log = Context.get(yield* Layer.build(writer), ClickLog)
            const chain = new ClickChain()
            // Several batches' worth, none awaited: the scope closes with all of them still waiting.
            return Array.from({ length: 30 }, (_, i) => log.append(click(page, i + 1), chain))
          }),
        )
        const settledOnClose = tickets.every((t) => t.settled)
        // An unsettled ticket would never settle now (its writer is gone): only await settled ones.
        const answers = yield* Effect.forEach(
          tickets.filter((t) => t.settled),
          outcome,
        )
        return { settledOnClose, answers, rows: yield* stored(page) }
      }),
    )
    expect(result.settledOnClose).toBe(true)
    expect(new Set(result.answers)).toEqual(new Set(["ok"]))
    expect(result.rows.map((r) => r.seq)).toEqual(Array.from({ length: 30 }, (_, i) => i + 1))
  })
})
