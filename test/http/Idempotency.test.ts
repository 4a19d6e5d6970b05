import { randomUUID } from "node:crypto"
import { beforeAll, describe, expect, it } from "@effect/vitest"
import type { RunningServer } from "../support/InProcessServer.ts"
import { freshStorage, inProcessServers } from "../support/ServedStorage.ts"
import { serverProcesses } from "../support/ServerProcess.ts"
import { storageModes } from "../support/StorageModes.ts"

const save = async (url: string, body: unknown, headers: Record<string, string> = {}) => {
  const response = await fetch(`${url}/save_click_and_predict_cluster`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  })
  return { status: response.status, body: (await response.json()) as unknown }
}

describe.each(storageModes())("idempotent saves, $name storage", ({ make }) => {
  const storage = freshStorage(make)
  const servers = inProcessServers()
  const processes = serverProcesses()
  let server: RunningServer
  const page = `idem-${randomUUID()}`
  const click = (x: number, y: number, request_id?: string) => ({
    page_uuid: page,
    coordinates: { x, y },
    request_id,
  })

  beforeAll(async () => {
    server = await servers.start(storage.current.env)
  })

  it("answers a repeated id with the first answer, also after a restart or a crash and when duplicates race", async () => {
    const first = randomUUID()
    expect(await save(server.url, click(0.2, 0.2, first))).toEqual({
      status: 200,
      body: { cluster_idx: 0, is_new: true },
    })
    expect(await save(server.url, click(0.21, 0.2))).toEqual({
      status: 200,
      body: { cluster_idx: 0, is_new: false },
    })
    // the same key again: the first answer (is_new true), though the click would now join cluster 0 as not new
    expect(await save(server.url, click(0.2, 0.2, first))).toEqual({
      status: 200,
      body: { cluster_idx: 0, is_new: true },
    })
    // the same key with another click: 409
    const conflict = await save(server.url, click(0.7, 0.7, first))
    expect(conflict.status).toBe(409)
    expect(conflict.body).toMatchObject({ _tag: "IdempotencyConflict" })

    // the header works the same way; upper-case spelling is the same UUID
    const keyed = randomUUID()
    const headers = { "idempotency-key": keyed.toUpperCase() }
    expect(await save(server.url, click(0.6, 0.6), headers)).toEqual({
      status: 200,
      body: { cluster_idx: 1, is_new: true },
    })
    expect(await save(server.url, click(0.6, 0.6), headers)).toEqual({
      status: 200,
      body: { cluster_idx: 1, is_new: true },
    })
    expect((await save(server.url, click(0.6, 0.6, randomUUID()), headers)).status).toBe(422)
    expect((await save(server.url, click(0.6, 0.6, "not-a-uuid"))).status).toBe(422)

    // after a crash the key is found in the click log: saved by a process that is then killed (so nothing of it is
    // snapshotted or flushed at shutdown), answered by the server started after it
    await server.stop()
    const crashed = randomUUID()
    const doomed = await processes.start(storage.current.env)
    expect(await save(doomed.url, click(0.22, 0.2, crashed))).toEqual({
      status: 200,
      body: { cluster_idx: 0, is_new: false },
    })
    expect(await doomed.stop("SIGKILL")).toBeNull()
    server = await servers.start(storage.current.env)
    expect(await save(server.url, click(0.2, 0.2, first))).toEqual({
      status: 200,
      body: { cluster_idx: 0, is_new: true },
    })
    expect(await save(server.url, click(0.22, 0.2, crashed))).toEqual({
      status: 200,
      body: { cluster_idx: 0, is_new: false },
    })
    expect((await save(server.url, click(0.3, 0.3, first))).status).toBe(409)
    expect((await save(server.url, click(0.3, 0.3, crashed))).status).toBe(409)

    // twenty identical requests at the same moment: one click stored, one answer for all
    const racing = randomUUID()
    const answers = await Promise.all(
      Array.from({ length: 20 }, () => save(server.url, click(0.9, 0.1, racing))),
    )
    expect(new Set(answers.map((a) => JSON.stringify(a)))).toEqual(
      new Set([JSON.stringify({ status: 200, body: { cluster_idx: 2, is_new: true } })]),
    )

    // the same key on two pages at once: exactly one is stored, the other answers 409
    const shared = randomUUID()
    const pair = await Promise.all([
      save(server.url, { page_uuid: `${page}-a`, coordinates: { x: 0.5, y: 0.5 }, request_id: shared }),
      save(server.url, { page_uuid: `${page}-b`, coordinates: { x: 0.5, y: 0.5 }, request_id: shared }),
    ])
    expect(pair.map((a) => a.status).sort()).toEqual([200, 409])

    await server.stop()
    const rows = await storage.current.query<{ page_uuid: string; n: number }>(
      "SELECT page_uuid, count(*)::int AS n FROM clicks WHERE page_uuid LIKE $1 GROUP BY page_uuid ORDER BY page_uuid",
      [`${page}%`],
    )
    expect(rows.find((r) => r.page_uuid === page)?.n).toBe(5)
    expect(rows.filter((r) => r.page_uuid !== page).reduce((n, r) => n + r.n, 0)).toBe(1)
    const keys = await storage.current.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM clicks WHERE request_id = $1",
      [racing],
    )
    expect(keys[0]?.n).toBe(1)
  })
})
