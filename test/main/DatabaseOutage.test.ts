import { randomUUID } from "node:crypto"
import { beforeAll, describe, expect, it } from "@effect/vitest"
import { type ServerProcess, serverProcesses } from "../support/ServerProcess.ts"
import { proxiedDatabase } from "../support/TcpProxy.ts"

const call = async (url: string, path: string, body?: unknown) => {
  const response = await fetch(`${url}${path}`, {
    method: body === undefined ? "GET" : "POST",
    headers: { "content-type": "application/json" },
    // no request may hang through an outage: this bound is far above DB_TIMEOUT
    signal: AbortSignal.timeout(20_000),
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  })
  return { status: response.status, body: (await response.json()) as unknown }
}

/** Registers, in the enclosing `describe`, a proxied database and a server process reaching it through the proxy. */
const behindProxy = (env: Record<string, string>) => {
  const database = proxiedDatabase()
  const servers = serverProcesses()
  let server: ServerProcess | undefined
  beforeAll(async () => {
    server = await servers.start({ DATABASE_URL: database.url, ...env })
  })
  return {
    get storage() {
      return database.storage
    },
    get proxy() {
      return database.proxy
    },
    get server() {
      if (server === undefined) throw new Error("started by beforeAll: read it inside a test")
      return server
    },
  }
}

describe("database outage, external Postgres behind a TCP proxy", () => {
  const outage = behindProxy({ DB_TIMEOUT: "1 second" })
  const page = `outage-${randomUUID()}`
  const click = (x: number, y: number) => ({ page_uuid: page, coordinates: { x, y } })

  it("answers saves 503, keeps predicting from memory, reports not ready, and recovers when the database is back", async () => {
    expect(await call(outage.server.url, "/save_click_and_predict_cluster", click(0.2, 0.2))).toEqual({
      status: 200,
      body: { cluster_idx: 0, is_new: true },
    })
    expect((await call(outage.server.url, "/save_click_and_predict_cluster", click(0.5, 0.5))).body).toEqual({
      cluster_idx: 1,
      is_new: true,
    })
    expect((await call(outage.server.url, "/readyz")).status).toBe(200)

    outage.proxy.cut()
    const failed = await call(outage.server.url, "/save_click_and_predict_cluster", click(0.8, 0.8))
    expect(failed.status).toBe(503)
    expect(failed.body).toMatchObject({ _tag: "StorageUnavailable" })
    expect(await call(outage.server.url, "/predict_cluster", click(0.21, 0.2))).toEqual({
      status: 200,
      body: { cluster_idx: 0 },
    })
    expect(await call(outage.server.url, "/predict_cluster", click(0.5, 0.51))).toEqual({
      status: 200,
      body: { cluster_idx: 1 },
    })
    const notReady = await call(outage.server.url, "/readyz")
    expect(notReady.status).toBe(503)
    expect(notReady.body).toMatchObject({ _tag: "NotReady" })
    expect((await call(outage.server.url, "/save_click_and_predict_cluster", click(0.8, 0.8))).status).toBe(
      503,
    )

    outage.proxy.restore()
    const deadline = Date.now() + 30_000
    while ((await call(outage.server.url, "/readyz")).status !== 200 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 250))
    }
    expect((await call(outage.server.url, "/readyz")).status).toBe(200)
    // the failed saves were not kept: the far click founds cluster 2, not a later one
    expect(await call(outage.server.url, "/save_click_and_predict_cluster", click(0.8, 0.8))).toEqual({
      status: 200,
      body: { cluster_idx: 2, is_new: true },
    })
    expect((await call(outage.server.url, "/save_click_and_predict_cluster", click(0.2, 0.21))).body).toEqual(
      {
        cluster_idx: 0,
        is_new: false,
      },
    )

    expect(await outage.server.stop("SIGTERM")).toBe(0)
    const rows = await outage.storage.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM clicks WHERE page_uuid = $1",
      [page],
    )
    expect(rows[0]?.n).toBe(4)
  })
})

// A stalled database (connections open, nothing answered) must not hold any answer past DB_TIMEOUT: neither the
// batch on the stalled connection (its cancel must not add a connect timeout), nor the clicks queued behind it,
// nor /readyz. Each 503 says the click may have been stored, and a retry with the same request id is safe.
describe("stalled database, external Postgres behind a TCP proxy", () => {
  const dbTimeoutMs = 2_000
  const outage = behindProxy({ DB_TIMEOUT: `${dbTimeoutMs} millis` })
  const page = `stall-${randomUUID()}`

  const timed = async (path: string, body?: unknown) => {
    const start = performance.now()
    const answer = await call(outage.server.url, path, body)
    return { ...answer, ms: performance.now() - start }
  }
  const save = (x: number, request_id?: string, on = page) =>
    timed("/save_click_and_predict_cluster", { page_uuid: on, coordinates: { x, y: 0.5 }, request_id })

  it("answers every save and /readyz 503 within DB_TIMEOUT, says a 503 may have been stored, and a retry with the same key stores it once", async () => {
    expect((await save(0.1)).status).toBe(200)

    outage.proxy.stall()
    // A save without a key goes straight to the click log, whose batch stalls: its outcome is unknown.
    const first = save(0.3)
    await new Promise((r) => setTimeout(r, 300))
    // Queued behind it: keyed saves on the same page (each looks its key up first) and saves on other pages.
    const keys: ReadonlyArray<string> = Array.from({ length: 5 }, () => randomUUID())
    const queued = [
      ...keys.map((key, i) => save(0.5 + i * 0.08, key)),
      ...keys.map((_, i) => save(0.5, undefined, `${page}-other-${i}`)),
    ]
    const ready = timed("/readyz")
    const answers = await Promise.all([first, ...queued])
    const readiness = await ready
    outage.proxy.restore()

    for (const answer of answers) {
      expect(answer.status).toBe(503)
      expect(answer.body).toMatchObject({
        _tag: "StorageUnavailable",
        message: expect.stringMatching(/retry/),
      })
    }
    expect(answers[0]?.body).toMatchObject({ message: expect.stringMatching(/may have been stored/) })
    expect(readiness.status).toBe(503)
    // The bound is DB_TIMEOUT; the slack covers a loaded machine, and stays below what a cancel or a second
    // batch's own DB_TIMEOUT would add (each at least another DB_TIMEOUT).
    const slowest = Math.max(readiness.ms, ...answers.map((a) => a.ms))
    expect(slowest).toBeLessThan(dbTimeoutMs * 1.75)

    const deadline = Date.now() + 30_000
    while ((await call(outage.server.url, "/readyz")).status !== 200 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 250))
    }
    // Every retry with its key answers 200, and each key is stored exactly once whatever the stall did.
    for (const [i, key] of keys.entries()) {
      // the whole answer, so a failure shows its message
      expect(await save(0.5 + i * 0.08, key)).toMatchObject({ status: 200 })
      expect(await save(0.5 + i * 0.08, key)).toMatchObject({ status: 200 })
    }
    expect(await outage.server.stop("SIGTERM")).toBe(0)
    const rows = await outage.storage.query<{ request_id: string; n: number }>(
      "SELECT request_id::text, count(*)::int AS n FROM clicks WHERE page_uuid = $1 AND request_id IS NOT NULL GROUP BY request_id",
      [page],
    )
    expect(rows.filter((r) => keys.includes(r.request_id)).map((r) => r.n)).toEqual(keys.map(() => 1))
    const seqs = await outage.storage.query<{ seq: number }>(
      "SELECT seq::int AS seq FROM clicks WHERE page_uuid = $1 ORDER BY seq",
      [page],
    )
    expect(seqs.map((r) => r.seq)).toEqual(seqs.map((_, i) => i + 1))
  })
})
