import { readFileSync, rmSync } from "node:fs"
import { FileSystem } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import { isHolderAlive, parseProcStat } from "../../src/persistence/EmbeddedPostgres.ts"
import { ServerProcess } from "../support/ServerProcess.ts"
import { freshDataDir } from "../support/StorageModes.ts"
import { nonReapingParents, psState, underNonReapingParent, waitFor } from "../support/Unreaped.ts"

const parents = nonReapingParents()

describe("liveness of a lock's holder", () => {
  it.effect("tells a zombie, and a recycled pid, from the process that wrote the lock", () =>
    Effect.gen(function* () {
      const fs = yield* FileSystem.FileSystem
      const { pid, parent } = yield* Effect.promise(() => underNonReapingParent("sleep", ["600"]))
      parents.push(parent)
      const startTime = readFileSync(`/proc/${pid}/stat`, "utf8").split(" ")[21]!
      expect(yield* isHolderAlive(fs, pid, Option.none())).toBe(true)
      expect(yield* isHolderAlive(fs, pid, Option.some(startTime))).toBe(true)
      // the pid now names some other process than the one that wrote the lock
      expect(yield* isHolderAlive(fs, pid, Option.some(`${startTime}1`))).toBe(false)

      process.kill(pid, "SIGKILL")
      // Said plainly if the zombie is gone before it was seen: only its parent's end reaps it (seen once in CI).
      yield* Effect.promise(() =>
        waitFor("a zombie", () => {
          const state = psState(pid)
          if (state === "")
            throw new Error(
              `the killed process was reaped: its parent ${parent.pid} is ${psState(parent.pid ?? 0) || "gone"} (exit ${parent.exitCode}, signal ${parent.signalCode})`,
            )
          return state.startsWith("Z")
        }),
      )
      // a zombie still answers signal 0: that is what the old check trusted
      expect(() => process.kill(pid, 0)).not.toThrow()
      expect(yield* isHolderAlive(fs, pid, Option.none())).toBe(false)
      expect(yield* isHolderAlive(fs, pid, Option.some(startTime))).toBe(false)
    }).pipe(Effect.provide(NodeContext.layer)),
  )

  it("reads the fields after a process name holding spaces and parentheses", () => {
    const fields = Array.from({ length: 50 }, (_, i) => String(i + 3))
    fields[0] = "S"
    fields[6] = "4194308" // PF_EXITING among other flags
    const parsed = parseProcStat(`42 (a) b (c)) ${fields.join(" ")}\n`)
    expect(parsed).toEqual(Option.some({ state: "S", exiting: true, startTime: "22" }))
    expect(parseProcStat("")).toEqual(Option.none())
  })
})

describe("embedded database directory", () => {
  // A copy of the run's initialised database: what is tested is the lock, not PGlite's initdb.
  const dir = freshDataDir()
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
