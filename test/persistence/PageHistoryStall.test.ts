import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Effect, Either, Layer, ManagedRuntime } from "effect"
import { Metrics } from "../../src/Metrics.ts"
import { PageHistory } from "../../src/persistence/PageHistory.ts"
import { storageLayer } from "../support/StorageLayer.ts"
import { proxiedDatabase } from "../support/TcpProxy.ts"

// Recoveries queue behind the loads in flight: a load on a stalled database must give up at DB_TIMEOUT, or every
// page's recovery would wait for the database to answer again, however long that takes.
describe("page history, a stalled TCP proxy to external Postgres", () => {
  const database = proxiedDatabase()
  let runtime: ManagedRuntime.ManagedRuntime<PageHistory, unknown>

  beforeAll(async () => {
    const env = { DATABASE_URL: database.url, DB_TIMEOUT: "1 second", LOG_LEVEL: "error" }
    runtime = ManagedRuntime.make(
      PageHistory.Default.pipe(
        Layer.provide(storageLayer({ ...database.storage, env })),
        Layer.provide(Metrics.Default),
      ),
    )
    await runtime.runPromise(PageHistory)
  })
  afterAll(async () => {
    await runtime?.dispose()
  })

  it("fails the loads of a stalled database after DB_TIMEOUT, and reads again once it answers", async () => {
    const load = (page: string) => Effect.flatMap(PageHistory, (history) => history.load(page))
    database.proxy.stall()
    // Both loaders and a queued read: each fails on its own within about DB_TIMEOUT, none waits for the database.
    const stalled = await runtime.runPromise(
      Effect.forEach(["a", "b", "c"], (page) => Effect.either(load(page)), { concurrency: "unbounded" }).pipe(
        Effect.timeout("4 seconds"),
        Effect.either,
      ),
    )
    expect(Either.isRight(stalled)).toBe(true)
    if (Either.isRight(stalled)) for (const result of stalled.right) expect(Either.isLeft(result)).toBe(true)
    database.proxy.restore()
    const back = await runtime.runPromise(load("d").pipe(Effect.timeout("10 seconds")))
    expect(back.clicks).toEqual([])
  })
})
