import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { loadCases, replay, runId } from "../support/Cases.ts"
import { ServerProcess } from "../support/ServerProcess.ts"
import { type StorageMode, storageModes } from "../support/StorageModes.ts"

const cases = loadCases()

describe.each(storageModes())("trackers' acceptance cases, $name storage", ({ make }) => {
  let storage: StorageMode
  let server: ServerProcess

  beforeAll(async () => {
    storage = await make()
    server = await ServerProcess.start(storage.env)
  })
  afterAll(async () => {
    await server?.stop()
    await storage?.dispose()
  })

  it("has case files to replay", () => {
    expect(cases.length).toBeGreaterThanOrEqual(16)
  })

  it.each(cases)("$name answers every step as the case expects", async ({ steps }) => {
    expect(await replay(server.url, steps, runId())).toBeNull()
  })

  it("answers every case when all of them run at once", async () => {
    const results = await Promise.all(cases.map(({ steps }) => replay(server.url, steps, runId())))
    expect(results.filter((r) => r !== null)).toEqual([])
  })
})
