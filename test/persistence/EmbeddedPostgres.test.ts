import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import { once } from "node:events"
import { readFileSync, rmSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { FileSystem } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Effect, Option, Schema } from "effect"
import { isHolderAlive, parseProcStat } from "../../src/persistence/EmbeddedPostgres.ts"
import { runId } from "../support/Cases.ts"
import { freePort, ServerProcess } from "../support/ServerProcess.ts"
import { freshDataDir } from "../support/StorageModes.ts"

const root = fileURLToPath(new URL("../..", import.meta.url))

/** The process state as `ps` reports it (`Z` for a zombie), or "" once no such process exists. */
const psState = (pid: number) => {
  try {
    return execFileSync("ps", ["-o", "stat=", "-p", String(pid)])
      .toString()
      .trim()
  } catch {
    return ""
  }
}

const waitFor = async (what: string, ok: () => boolean) => {
  const deadline = Date.now() + 30_000
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

/**
 * Runs `command` under a parent that never reaps its children (a shell that execs `sleep`): once killed, the
 * command's process stays a zombie for as long as that parent lives. Resolves to the command's pid.
 */
const underNonReapingParent = async (command: string, args: ReadonlyArray<string>, env = process.env) => {
  const parent = spawn("sh", ["-c", '"$@" & echo $!; exec sleep 600', "sh", command, ...args], {
    cwd: root,
    env,
    stdio: ["ignore", "pipe", "pipe"],
  })
  const output = { text: "" }
  parent.stderr?.on("data", (d: Buffer) => {
    output.text += d.toString()
  })
  const [first] = await once(parent.stdout!, "data")
  const pid = Number(String(first).split("\n")[0])
  parent.stdout?.on("data", (d: Buffer) => {
    output.text += d.toString()
  })
  // Until the shell has become `sleep`, it would reap its child itself (the shell waits for finished jobs): a
  // child killed before then leaves no zombie. On a busy machine the shell can be that slow.
  await waitFor("the parent to become sleep", () => {
    try {
      return readFileSync(`/proc/${parent.pid}/comm`, "utf8").trim() === "sleep"
    } catch {
      return false
    }
  })
  return { pid, parent, output }
}

const Clusters = Schema.Struct({ clusters: Schema.Array(Schema.Struct({ count: Schema.Number })) })

const parents: Array<ChildProcess> = []
afterAll(() => {
  // the zombies go to init with their parent
  for (const p of parents) p.kill("SIGKILL")
})

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

describe("restart the instant the old server is SIGKILLed", () => {
  const dir = freshDataDir()
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  /** The real server, started under a parent that will not reap it: killed, it stays a zombie. */
  const startUnreaped = async () => {
    const port = await freePort()
    const { DATABASE_URL: _, ADMIN_TOKEN: __, ...inherited } = process.env
    const env = { ...inherited, DATA_DIR: dir, HOST: "127.0.0.1", PORT: String(port), LOG_LEVEL: "warn" }
    const started = await underNonReapingParent(process.execPath, ["--import", "tsx", "src/main.ts"], env)
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
