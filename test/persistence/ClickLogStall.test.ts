import { randomUUID } from "node:crypto"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Effect, Either, Fiber, Layer, ManagedRuntime } from "effect"
import { Metrics } from "../../src/Metrics.ts"
import { ClickChain, ClickLog, type ClickRecord } from "../../src/persistence/ClickLog.ts"
import { storageLayer } from "../support/StorageLayer.ts"
import { proxiedDatabase } from "../support/TcpProxy.ts"

const click = (page: string, seq: number): ClickRecord => ({
  page,
  seq,
  x: 0.5,
  y: 0.5,
  clusterIdx: 0,
  at: Date.now(),
  requestId: null,
})

// A batch whose statement outlives DB_TIMEOUT is answered 503 "may have been stored", but the statement may still
// commit once the database answers again. A page recovered from the log before that would be one click behind it,
// and its next click would fail on the (page, seq) fence: a 503 after the outage is over. So the page's recovery
// waits (`written`) until the statement's interruption is over.
describe("click log, a statement outliving DB_TIMEOUT behind a stalled TCP proxy to external Postgres", () => {
  const database = proxiedDatabase()
  let runtime: ManagedRuntime.ManagedRuntime<ClickLog, unknown>

  beforeAll(() => {
    const env = {
      DATABASE_URL: database.url,
      DB_TIMEOUT: "1 second",
      LOG_LEVEL: "error",
      WRITER_LINGER: "0 millis",
    }
    runtime = ManagedRuntime.make(
      ClickLog.Default.pipe(
        Layer.provide(storageLayer({ ...database.storage, env })),
        Layer.provide(Metrics.Default),
      ),
    )
  })
  afterAll(async () => {
    await runtime?.dispose()
  })

  const seqs = async (page: string) =>
    (
      await database.storage.query<{ seq: number }>(
        "SELECT seq::int AS seq FROM clicks WHERE page_uuid = $1 ORDER BY seq",
        [page],
      )
    ).map((r) => r.seq)

  it("keeps the page's recovery waiting until the statement can no longer commit, then the log is final", async () => {
    const page = `stall-${randomUUID()}`
    const log = await runtime.runPromise(ClickLog)
    const first = await runtime.runPromise(Effect.either(log.append(click(page, 1), new ClickChain()).await))
    expect(Either.isRight(first)).toBe(true)

    database.proxy.stall()
    const late = await runtime.runPromise(Effect.either(log.append(click(page, 2), new ClickChain()).await))
    expect(Either.isLeft(late) && late.left.message).toMatch(/may have been stored/)
    const written = runtime.runFork(log.written(page))
    await new Promise((r) => setTimeout(r, 300))
    // Still stalled: the statement's cancel cannot reach the database either.
    expect(written.unsafePoll()).toBeNull()
    // Another page is not held up by it.
    await runtime.runPromise(log.written(`${page}-other`).pipe(Effect.timeout("100 millis")))

    database.proxy.restore()
    await runtime.runPromise(Fiber.join(written).pipe(Effect.timeout("10 seconds")))
    // Whatever became of click 2, it is settled: the log does not change after the wait.
    const after = await seqs(page)
    await new Promise((r) => setTimeout(r, 500))
    expect(await seqs(page)).toEqual(after)
    expect(after.slice(0, 1)).toEqual([1])
    // A state recovered now continues the log without a gap or a clash.
    const next = await runtime.runPromise(
      Effect.either(log.append(click(page, after.length + 1), new ClickChain()).await),
    )
    expect(Either.isRight(next)).toBe(true)
    expect(await seqs(page)).toEqual([...after, after.length + 1])
  })
})
