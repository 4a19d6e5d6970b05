import { randomUUID } from "node:crypto"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { ServerProcess } from "../support/ServerProcess.ts"
import { externalStorage, type StorageMode } from "../support/StorageModes.ts"
import { TcpProxy } from "../support/TcpProxy.ts"

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

// An outage needs a database outside the process: DATABASE_URL's server, else the machine's own Postgres.
describe("database outage, external Postgres behind a TCP proxy", () => {
  let storage: StorageMode
  let proxy: TcpProxy
  let server: ServerProcess
  const page = `outage-${randomUUID()}`
  const click = (x: number, y: number) => ({ page_uuid: page, coordinates: { x, y } })

  beforeAll(async () => {
    storage = await externalStorage()
    const url = new URL(storage.env.DATABASE_URL ?? "")
    proxy = await TcpProxy.start(url.hostname, Number(url.port || 5432))
    url.host = `127.0.0.1:${proxy.port}`
    server = await ServerProcess.start({ DATABASE_URL: url.toString(), DB_TIMEOUT: "1 second" })
  })
  afterAll(async () => {
    await server?.stop("SIGKILL")
    await proxy?.close()
    await storage?.dispose()
  })

  it("answers saves 503, keeps predicting from memory, reports not ready, and recovers when the database is back", async () => {
    expect(await call(server.url, "/save_click_and_predict_cluster", click(0.2, 0.2))).toEqual({
      status: 200,
      body: { cluster_idx: 0, is_new: true },
    })
    expect((await call(server.url, "/save_click_and_predict_cluster", click(0.5, 0.5))).body).toEqual({
      cluster_idx: 1,
      is_new: true,
    })
    expect((await call(server.url, "/readyz")).status).toBe(200)

    proxy.cut()
    const failed = await call(server.url, "/save_click_and_predict_cluster", click(0.8, 0.8))
    expect(failed.status).toBe(503)
    expect(failed.body).toMatchObject({ _tag: "StorageUnavailable" })
    expect(await call(server.url, "/predict_cluster", click(0.21, 0.2))).toEqual({
      status: 200,
      body: { cluster_idx: 0 },
    })
    expect(await call(server.url, "/predict_cluster", click(0.5, 0.51))).toEqual({
      status: 200,
      body: { cluster_idx: 1 },
    })
    const notReady = await call(server.url, "/readyz")
    expect(notReady.status).toBe(503)
    expect(notReady.body).toMatchObject({ _tag: "NotReady" })
    expect((await call(server.url, "/save_click_and_predict_cluster", click(0.8, 0.8))).status).toBe(503)

    proxy.restore()
    const deadline = Date.now() + 30_000
    while ((await call(server.url, "/readyz")).status !== 200 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 250))
    }
    expect((await call(server.url, "/readyz")).status).toBe(200)
    // the failed saves were not kept: the far click founds cluster 2, not a later one
    expect(await call(server.url, "/save_click_and_predict_cluster", click(0.8, 0.8))).toEqual({
      status: 200,
      body: { cluster_idx: 2, is_new: true },
    })
    expect((await call(server.url, "/save_click_and_predict_cluster", click(0.2, 0.21))).body).toEqual({
      cluster_idx: 0,
      is_new: false,
    })

    expect(await server.stop("SIGTERM")).toBe(0)
    const rows = await storage.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM clicks WHERE page_uuid = $1",
      [page],
    )
    expect(rows[0]?.n).toBe(4)
  })
})
