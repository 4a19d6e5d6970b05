import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { ServerProcess } from "../support/ServerProcess.ts"

describe("embedded database directory", () => {
  const dir = mkdtempSync(join(tmpdir(), "embedded-lock-"))
  const servers: Array<ServerProcess> = []
  afterAll(async () => {
    for (const s of servers) await s.stop("SIGKILL")
    rmSync(dir, { recursive: true, force: true })
  })

  it("is used by one server at a time, and a lock left by a killed server is taken over", async () => {
    const first = await ServerProcess.start({ DATA_DIR: dir })
    servers.push(first)
    await expect(ServerProcess.start({ DATA_DIR: dir })).rejects.toThrow(/in use by process \d+/)
    expect(await first.stop("SIGKILL")).toBeNull()
    const second = await ServerProcess.start({ DATA_DIR: dir })
    servers.push(second)
    expect((await fetch(`${second.url}/readyz`)).status).toBe(200)
  })
})
