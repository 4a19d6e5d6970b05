import { describe, expect, it } from "@effect/vitest"
import { loadCases, replay, runId } from "../support/Cases.ts"
import { freshStorage, inProcessServers } from "../support/ServedStorage.ts"
import { serverProcesses } from "../support/ServerProcess.ts"
import { storageModes } from "../support/StorageModes.ts"

const cases = loadCases().map((c) => ({ ...c, run: runId() }))

/** Replays the steps of every case between two fractions of its length; the first mismatch per case. */
const replayPart = (url: string, from: number, to: number) =>
  Promise.all(
    cases.map(async ({ name, steps, run }) => {
      const error = await replay(
        url,
        steps.slice(Math.floor(steps.length * from), Math.floor(steps.length * to)),
        run,
      )
      return error === null ? null : `${name}: ${error}`
    }),
  ).then((errors) => errors.filter((e) => e !== null))

describe.each(storageModes())("restart, $name storage", ({ make }) => {
  const storage = freshStorage(make)
  const servers = serverProcesses()
  const inProcess = inProcessServers()

  it("answers as if nothing happened after a SIGKILL and after a SIGTERM", async () => {
    let server = await servers.start(storage.current.env)
    expect(await replayPart(server.url, 0, 1 / 3)).toEqual([])

    expect(await server.stop("SIGKILL")).toBeNull()
    server = await servers.start(storage.current.env)
    expect(await replayPart(server.url, 1 / 3, 2 / 3)).toEqual([])

    expect(await server.stop("SIGTERM")).toBe(0)
    // What matters is how the process before it ended; the one after need not be a process of its own.
    const restarted = await inProcess.start(storage.current.env)
    expect(await replayPart(restarted.url, 2 / 3, 1)).toEqual([])
  })
})
