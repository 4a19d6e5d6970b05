import { rmSync } from "node:fs"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Schema } from "effect"
import { runId } from "../support/Cases.ts"
import { freePort, scriptArgs } from "../support/ServerProcess.ts"
import { freshDataDir } from "../support/StorageModes.ts"
import { nonReapingParents, psState, underNonReapingParent } from "../support/Unreaped.ts"

// Apart from the lock tests in EmbeddedPostgres.test.ts: four server starts in a row, which the other worker can
// run beside them.

const Clusters = Schema.Struct({ clusters: Schema.Array(Schema.Struct({ count: Schema.Number })) })

const parents = nonReapingParents()

describe("restart the instant the old server is SIGKILLed", () => {
  const dir = freshDataDir()
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  /** The real server, started under a parent that will not reap it: killed, it stays a zombie. */
  const startUnreaped = async () => {
    const port = await freePort()
    const { DATABASE_URL: _, ADMIN_TOKEN: __, ...inherited } = process.env
    const env = { ...inherited, DATA_DIR: dir, HOST: "127.0.0.1", PORT: String(port), LOG_LEVEL: "warn" }
    const started = await underNonReapingParent(process.execPath, scriptArgs("src/main.ts"), env)
    parents.push(started.parent)
    const url = `http://127.0.0.1:${port}`
    const deadline = Date.now() + 60_000
    while (true) {
      if (!/^[RSD]/.test(psState(started.pid))) throw new Error(`the server exited:\n${started.output.text}`)
      if (Date.now() > deadline) throw new Error(`the server did not start:\n${started.output.text}`)
      const ok = await fetch(`${url}/`).then(
        (r) => r.ok,
        () => false,
      )
      if (ok) break
      await new Promise((r) => setTimeout(r, 100))
    }
    return { ...started, url }
  }

  it("starts on the same DATA_DIR while the killed one is not yet reaped, and serves its clicks", async () => {
    const page = `${runId()}/zombie`
    let saved = 0
    let server = await startUnreaped()
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 5; i++) {
        const response = await fetch(`${server.url}/save_click_and_predict_cluster`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ page_uuid: page, coordinates: { x: 0.1 + 0.01 * i, y: 0.5 + 0.1 * round } }),
        })
        expect(response.status).toBe(200)
        saved++
      }
      const old = server
      process.kill(old.pid, "SIGKILL")
      server = await startUnreaped()
      // the test is about a holder that is dead but not reaped: it must still be one now
      expect(psState(old.pid)).toMatch(/^Z/)
      const answer = await fetch(`${server.url}/pages/${encodeURIComponent(page)}/clusters`)
      expect(answer.status).toBe(200)
      const body = Schema.decodeUnknownSync(Clusters)(await answer.json())
      expect(body.clusters.reduce((n, c) => n + c.count, 0)).toBe(saved)
    }
    process.kill(server.pid, "SIGKILL")
  }, 360_000)
})
