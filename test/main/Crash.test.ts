import { describe, expect, it } from "@effect/vitest"
import { runId } from "../support/Cases.ts"
import {
  checkRestartedServer,
  checkStoredLog,
  client,
  LoadPage,
  type LoadStats,
  loadRandom,
  seedLoad,
  sleep,
} from "../support/ClickLoad.ts"
import { freshStorage, inProcessServers } from "../support/ServedStorage.ts"
import { type ServerProcess, serverProcesses } from "../support/ServerProcess.ts"
import { storageModes } from "../support/StorageModes.ts"

/**
 * Crash test: clients save and predict concurrently on many pages while the server is SIGKILLed at random moments
 * and restarted on the same storage. Afterwards the stored log is checked against every answer the clients got,
 * against the domain's replay of itself, and against what a restarted server answers.
 */

const PAGES = 50
const CLIENTS = 16
const KILLS = 6
/** Small, so that recovery after a kill is usually a snapshot plus the clicks after it. */
const SNAPSHOT_EVERY = 8
const PREDICT_SHARE = 0.25
/**
 * Every random choice (pages' hot spots, points, which page, save or predict, when to kill) comes from this seed,
 * printed with the result: `CRASH_SEED=<seed>` replays the same choices (the interleaving of the clients still
 * depends on timing).
 */
const seed = Number(process.env.CRASH_SEED ?? Math.floor(Math.random() * 2 ** 31))

// ---------------------------------------------------------------------------------------------------------------
// Load generation

/**
 * Where the clients send to: the running server's URL, nothing while it is down, or the end of the load. It also
 * tells when the server it points to answered a first request with 200, i.e. serves the load.
 */
class ServerGate {
  private url: string | null = null
  private finished = false
  private waiting: Array<() => void> = []
  private markServing: () => void = () => {}

  /** Points the clients at a started server; resolves once that server answered a request with 200. */
  open(url: string): Promise<void> {
    this.url = url
    const serving = new Promise<void>((resolve) => {
      this.markServing = resolve
    })
    this.wake()
    return serving
  }
  close() {
    this.url = null
  }
  finish() {
    this.finished = true
    this.wake()
  }
  /** A request to `url` was answered 200. */
  answered(url: string) {
    if (url === this.url) this.markServing()
  }
  /** The URL to send the next request to, once the server is up; null once the load is over. */
  async ready(): Promise<string | null> {
    while (true) {
      if (this.finished) return null
      if (this.url !== null) return this.url
      await new Promise<void>((resolve) => this.waiting.push(resolve))
    }
  }
  private wake() {
    const waiting = this.waiting
    this.waiting = []
    for (const resolve of waiting) resolve()
  }
}

const between = (min: number, max: number) => min + loadRandom() * (max - min)
// ---------------------------------------------------------------------------------------------------------------

/** The load runs on after the last restart until this many saves were acknowledged (within LAST_WINDOW_MAX_MS). */
const ACKNOWLEDGED_TARGET = 600
const LAST_WINDOW_MAX_MS = 20_000
const MIN_ACKNOWLEDGED = 300
/** How long a started server may take to answer its first request before the kill timer starts anyway. */
const SERVING_TIMEOUT_MS = 10_000

/** Kills and restarts the server under load; the number of kills and of saves acknowledged before the last one. */
const loadWithKills = async (
  env: Record<string, string>,
  pages: ReadonlyArray<LoadPage>,
  stats: LoadStats,
  startServer: (env: Record<string, string>) => Promise<ServerProcess>,
) => {
  const gate = new ServerGate()
  const clients = Array.from({ length: CLIENTS }, (_, c) =>
    client(
      gate,
      pages.filter((_, i) => i % CLIENTS === c),
      stats,
      PREDICT_SHARE,
    ),
  )
  const timings: Array<number> = []
  const start = async () => {
    const begun = Date.now()
    const server = await startServer(env)
    timings.push(Date.now() - begun)
    return server
  }
  try {
    let kills = 0
    let server = await start()
    for (let k = 0; k < KILLS; k++) {
      // The random moment counts from when the server serves the load: right after a start it is still warming
      // up (and on a busy machine would hardly answer anything before the kill).
      await Promise.race([gate.open(server.url), sleep(SERVING_TIMEOUT_MS)])
      await sleep(between(300, 1500))
      gate.close()
      const code = await server.stop("SIGKILL")
      if (code !== null)
        throw new Error(`the server exited by itself (${code}) before kill ${k + 1}:\n${server.logs}`)
      kills++
      server = await start()
    }
    const acknowledgedBeforeKills = stats.acknowledged
    const lastStart = Date.now()
    await Promise.race([gate.open(server.url), sleep(SERVING_TIMEOUT_MS)])
    await sleep(between(300, 1500))
    while (stats.acknowledged < ACKNOWLEDGED_TARGET && Date.now() - lastStart < LAST_WINDOW_MAX_MS)
      await sleep(50)
    gate.finish()
    await Promise.all(clients)
    const code = await server.stop("SIGTERM")
    if (code !== 0) throw new Error(`the server did not stop cleanly on SIGTERM (${code}):\n${server.logs}`)
    return { kills, acknowledgedBeforeKills, timings }
  } finally {
    gate.finish()
  }
}

describe.each(storageModes())("crash, $name storage", ({ name, make }) => {
  const fresh = freshStorage(make)
  const servers = serverProcesses()
  const inProcess = inProcessServers()

  it("keeps every acknowledged click, once, in a self-consistent log across random SIGKILLs", async () => {
    const storage = fresh.current
    // Restarted from the seed by each suite, so either storage mode alone replays the same way.
    seedLoad(seed)
    console.log(`crash test (${name}): CRASH_SEED=${seed}`)
    const started = Date.now()
    const env = { ...storage.env, SNAPSHOT_EVERY: String(SNAPSHOT_EVERY) }
    const run = runId()
    const pages = Array.from({ length: PAGES }, (_, i) => new LoadPage(`${run}/${i}`))
    const stats: LoadStats = { acknowledged: 0, unexpected: [] }

    // Load, with the server killed at random moments and restarted on the same storage.
    const { kills, acknowledgedBeforeKills, timings } = await loadWithKills(env, pages, stats, servers.start)
    const loadDone = Date.now()

    // The stored log, read with the server stopped.
    const { verdict, replays, stored } = await checkStoredLog(storage.query, run, pages)

    // What a restarted server makes of the stored log.
    // Served in-process: the kills above are what needed processes.
    const restarted = await inProcess.start(env)
    const probes = await checkRestartedServer(restarted.url, pages, replays, verdict)
    await restarted.stop()

    const seconds = (ms: number) => (ms / 1000).toFixed(1)
    console.log(
      `crash test (${name}): ${kills} kills, ${verdict.acknowledged} acknowledged clicks verified ` +
        `(${acknowledgedBeforeKills} answered before the last kill), ${verdict.unacknowledged} unacknowledged ` +
        `(${verdict.unacknowledgedStored} of them stored, ${verdict.refusedButStored} of those answered 503), ` +
        `${stored} stored; ${verdict.predictsChecked} predictions under load and ${probes} after ` +
        `restart checked, ${verdict.snapshotsChecked} snapshots checked; server starts ` +
        `${timings.map((t) => seconds(t)).join("/")} s, load ${seconds(loadDone - started)} s, ` +
        `total ${seconds(Date.now() - started)} s (run ${run}, CRASH_SEED=${seed})`,
    )
    if (verdict.errors.length > 0) console.log(`last server's output:\n${restarted.logs()}`)
    const replayWith = `CRASH_SEED=${seed}`
    expect(stats.unexpected.slice(0, 10), replayWith).toEqual([])
    expect({ errors: verdict.errors.length, first: verdict.errors.slice(0, 20) }, replayWith).toEqual({
      errors: 0,
      first: [],
    })
    expect(kills, replayWith).toBeGreaterThanOrEqual(5)
    expect(verdict.acknowledged, replayWith).toBeGreaterThan(MIN_ACKNOWLEDGED)
    expect(verdict.snapshotsChecked, replayWith).toBeGreaterThan(0)
  }, 180_000)
})
