import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Effect, Either, Layer, ManagedRuntime } from "effect"
import { Metrics } from "../../src/Metrics.ts"
import { PageHistory } from "../../src/persistence/PageHistory.ts"
import { storageLayer } from "../support/StorageLayer.ts"
import { externalStorage, type StorageMode } from "../support/StorageModes.ts"
import { TcpProxy } from "../support/TcpProxy.ts"

// Recoveries queue behind the loads in flight: a load on a stalled database must give up at DB_TIMEOUT, or every
// page's recovery would wait for the database to answer again, however long that takes.
describe("page history, a stalled TCP proxy to external Postgres", () => {
  let storage: StorageMode
  let proxy: TcpProxy
  let runtime: ManagedRuntime.ManagedRuntime<PageHistory, unknown>

  beforeAll(async () => {
    storage = await externalStorage()
    const url = new URL(storage.env.DATABASE_URL ?? "")
    proxy = await TcpProxy.start(url.hostname, Number(url.port || 5432))
    url.host = `127.0.0.1:${proxy.port}`
    const env = { DATABASE_URL: url.toString(), DB_TIMEOUT: "1 second", LOG_LEVEL: "error" }
    runtime = ManagedRuntime.make(
      PageHistory.Default.pipe(
        Layer.provide(storageLayer({ ...storage, env })),
        Layer.provide(Metrics.Default),
      ),
    )
    await runtime.runPromise(PageHistory)
  })
  afterAll(async () => {
    await runtime?.dispose()
    await proxy?.close()
    await storage?.dispose()
  })

  it("fails the loads of a stalled database after DB_TIMEOUT, and reads again once it answers", async () => {
    const load = (page: string) => Effect.flatMap(PageHistory, (history) => history.load(page))
    proxy.stall()
    // Both loaders and a queued read: each fails on its own within about DB_TIMEOUT, none waits for the database.
    const stalled = await runtime.runPromise(
      Effect.forEach(["a", "b", "c"], (page) => Effect.either(load(page)), { concurrency: "unbounded" }).pipe(
        Effect.timeout("4 seconds"),
        Effect.either,
      ),
    )
    expect(Either.isRight(stalled)).toBe(true)
    if (Either.isRight(stalled)) for (const result of stalled.right) expect(Either.isLeft(result)).toBe(true)
    proxy.restore()
    const back = await runtime.runPromise(load("d").pipe(Effect.timeout("10 seconds")))
    expect(back.clicks).toEqual([])
  })
})
