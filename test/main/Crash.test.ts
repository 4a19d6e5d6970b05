import { describe, expect, it } from "@effect/vitest"
import { Schema } from "effect"
import { mulberry32 } from "../../src/cli/ClickGenerator.ts"
import { PageClusters } from "../../src/domain/PageClusters.ts"
import { runId } from "../support/Cases.ts"
import { freshStorage, inProcessServers } from "../support/ServedStorage.ts"
import { type ServerProcess, serverProcesses } from "../support/ServerProcess.ts"
import { storageModes } from "../support/StorageModes.ts"

/**
 * Crash test: clients save and predict concurrently on many pages while the server is SIGKILLed at random moments
 * and restarted on the same storage. Afterwards the stored log is checked against every answer the clients got,
 * against the domain's replay of itself, and against what a restarted server answers.
 */

const RADIUS = 0.04
const PAGES = 50
const CLIENTS = 16
const KILLS = 6
/** Small, so that recovery after a kill is usually a snapshot plus the clicks after it. */
const SNAPSHOT_EVERY = 8
const PREDICT_SHARE = 0.25
const REQUEST_TIMEOUT_MS = 15_000
/**
 * Every random choice (pages' hot spots, points, which page, save or predict, when to kill) comes from this seed,
 * printed with the result: `CRASH_SEED=<seed>` replays the same choices (the interleaving of the clients still
 * depends on timing).
 */
const seed = Number(process.env.CRASH_SEED ?? Math.floor(Math.random() * 2 ** 31))
/** Restarted from the seed by each suite, so either storage mode alone replays the same way. */
let random = mulberry32(seed)

// ---------------------------------------------------------------------------------------------------------------
// What the clients sent and got

/** How a request ended: a 200 with its body, a 503, no answer at all (connection error), or anything else. */
type Outcome =
  | { readonly _tag: "Ok"; readonly body: unknown }
  | { readonly _tag: "Unavailable" }
  | { readonly _tag: "Lost"; readonly reason: string }
  | { readonly _tag: "Unexpected"; readonly status: number; readonly text: string }

type SaveAnswer =
  | { readonly _tag: "Ok"; readonly clusterIdx: number; readonly isNew: boolean }
  | { readonly _tag: "NotAcknowledged"; readonly why: string }

type PredictAnswer =
  | { readonly _tag: "Ok"; readonly clusterIdx: number | null }
  | { readonly _tag: "NotAcknowledged"; readonly why: string }

/** One request of a page, in the order its client sent them. */
type Op =
  | { readonly kind: "save"; readonly x: number; readonly y: number; readonly answer: SaveAnswer }
  | { readonly kind: "predict"; readonly x: number; readonly y: number; readonly answer: PredictAnswer }

const SaveBody = Schema.Struct({ cluster_idx: Schema.Int, is_new: Schema.Boolean })
const PredictBody = Schema.Struct({ cluster_idx: Schema.NullOr(Schema.Int) })
const ClustersBody = Schema.Struct({
  page_uuid: Schema.String,
  clusters: Schema.Array(
    Schema.Struct({
      cluster_idx: Schema.Int,
      centroid: Schema.Struct({ x: Schema.Number, y: Schema.Number }),
      count: Schema.Number,
    }),
  ),
})
const ClickRow = Schema.Struct({
  page_uuid: Schema.String,
  seq: Schema.Number,
  x: Schema.Number,
  y: Schema.Number,
  cluster_idx: Schema.Number,
})
const SnapshotRow = Schema.Struct({ page_uuid: Schema.String, seq: Schema.Number, clusters: Schema.String })
/** The part of a stored snapshot document this test compares (the rest of its format is the service's). */
const SnapshotClusters = Schema.parseJson(
  Schema.Struct({
    sumX: Schema.Array(Schema.Number),
    sumY: Schema.Array(Schema.Number),
    count: Schema.Array(Schema.Number),
  }),
)

const describeError = (error: unknown) =>
  error instanceof Error && error.cause instanceof Error
    ? `${error.message}: ${error.cause.message}`
    : String(error)

const post = async (url: string, path: string, page: string, x: number, y: number): Promise<Outcome> => {
  try {
    const response = await fetch(`${url}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ page_uuid: page, coordinates: { x, y } }),
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    })
    const text = await response.text()
    if (response.status === 200) return { _tag: "Ok", body: JSON.parse(text) }
    if (response.status === 503) return { _tag: "Unavailable" }
    return { _tag: "Unexpected", status: response.status, text }
  } catch (error) {
    return { _tag: "Lost", reason: describeError(error) }
  }
}

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

const gaussian = () => {
  const u = 1 - random()
  const v = random()
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v)
}

/** A tracked page: a few hot spots its clicks bunch around, every request sent to it, and the points used. */
class LoadPage {
  readonly ops: Array<Op> = []
  private readonly centres: ReadonlyArray<{ readonly x: number; readonly y: number }>
  private readonly used = new Set<string>()

  constructor(readonly uuid: string) {
    this.centres = Array.from({ length: 2 + Math.floor(random() * 6) }, () => ({
      x: 0.1 + random() * 0.8,
      y: 0.1 + random() * 0.8,
    }))
  }

  /** A point near a hot spot (now and then anywhere), inside [0, 1]. */
  point(): { readonly x: number; readonly y: number } {
    while (true) {
      const centre = this.centres[Math.floor(random() * this.centres.length)]!
      const [x, y] =
        random() < 0.1 ? [random(), random()] : [centre.x + gaussian() * 0.015, centre.y + gaussian() * 0.015]
      if (x >= 0 && x <= 1 && y >= 0 && y <= 1) return { x, y }
    }
  }

  /** A point never saved on this page before, so that a stored row names the request it came from. */
  freshPoint(): { readonly x: number; readonly y: number } {
    while (true) {
      const p = this.point()
      const key = pointKey(p.x, p.y)
      if (!this.used.has(key)) {
        this.used.add(key)
        return p
      }
    }
  }
}

const pointKey = (x: number, y: number) => `${x},${y}`

interface LoadStats {
  /** Saves answered 200 so far. */
  acknowledged: number
  readonly unexpected: Array<string>
}

/** One client: sends to its own pages, one request at a time, until the load is over. */
const client = async (gate: ServerGate, pages: ReadonlyArray<LoadPage>, stats: LoadStats) => {
  while (true) {
    const url = await gate.ready()
    if (url === null) return
    const page = pages[Math.floor(random() * pages.length)]!
    const predict = random() < PREDICT_SHARE
    const { x, y } = predict ? page.point() : page.freshPoint()
    const path = predict ? "/predict_cluster" : "/save_click_and_predict_cluster"
    const outcome = await post(url, path, page.uuid, x, y)
    let why: string
    switch (outcome._tag) {
      case "Ok": {
        gate.answered(url)
        if (predict) {
          const body = Schema.decodeUnknownSync(PredictBody)(outcome.body)
          page.ops.push({ kind: "predict", x, y, answer: { _tag: "Ok", clusterIdx: body.cluster_idx } })
        } else {
          const body = Schema.decodeUnknownSync(SaveBody)(outcome.body)
          stats.acknowledged++
          page.ops.push({
            kind: "save",
            x,
            y,
            answer: { _tag: "Ok", clusterIdx: body.cluster_idx, isNew: body.is_new },
          })
        }
        continue
      }
      case "Unavailable":
        why = "503"
        break
      case "Lost":
        why = outcome.reason
        break
      case "Unexpected":
        why = `status ${outcome.status}`
        stats.unexpected.push(`${path} ${page.uuid} (${x}, ${y}): ${outcome.status} ${outcome.text}`)
        break
    }
    page.ops.push(
      predict
        ? { kind: "predict", x, y, answer: { _tag: "NotAcknowledged", why } }
        : { kind: "save", x, y, answer: { _tag: "NotAcknowledged", why } },
    )
    // A refused request usually means the server is going down: leave it a moment.
    if (outcome._tag !== "Unexpected") await sleep(5)
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
const between = (min: number, max: number) => min + random() * (max - min)

// ---------------------------------------------------------------------------------------------------------------
// Checks

interface StoredClick {
  readonly seq: number
  readonly x: number
  readonly y: number
  readonly clusterIdx: number
}

interface Verdict {
  readonly errors: Array<string>
  acknowledged: number
  unacknowledged: number
  unacknowledgedStored: number
  refusedButStored: number
  predictsChecked: number
  snapshotsChecked: number
}

/**
 * Checks one page's stored log against itself (seq 1..n, every row a click the client sent, once, cluster_idx as
 * the domain assigns it) and against every answer its client got (acknowledged saves stored with the answered
 * cluster, stored in the order sent, predictions made on exactly the stored clicks sent before them).
 * Returns the domain's replay of the whole log.
 */
const checkPage = (page: LoadPage, rows: ReadonlyArray<StoredClick>, verdict: Verdict): PageClusters => {
  const fail = (message: string) => verdict.errors.push(`${page.uuid}: ${message}`)

  // The log is 1..n and the domain, replaying it, assigns every click the cluster stored with it.
  const replay = new PageClusters(RADIUS)
  const firstOfCluster = new Map<number, number>()
  const seqOf = new Map<string, number>()
  rows.forEach((row, i) => {
    if (row.seq !== i + 1) fail(`seq ${row.seq} at position ${i + 1}: gap or duplicate`)
    const assigned = replay.assign(row.x, row.y, 0)
    if (assigned !== row.clusterIdx)
      fail(`seq ${row.seq} stored in cluster ${row.clusterIdx}, replay assigns ${assigned}`)
    if (!firstOfCluster.has(row.clusterIdx)) firstOfCluster.set(row.clusterIdx, row.seq)
    const key = pointKey(row.x, row.y)
    if (seqOf.has(key)) fail(`(${row.x}, ${row.y}) stored twice: seq ${seqOf.get(key)} and ${row.seq}`)
    seqOf.set(key, row.seq)
  })
  const bySeq = new Map(rows.map((row) => [row.seq, row]))

  // Every answer against the log; predictions against the replay of the clicks stored before them.
  const prefix = new PageClusters(RADIUS)
  let replayed = 0
  let lastSeq = 0
  let matched = 0
  for (const op of page.ops) {
    if (op.kind === "save") {
      const seq = seqOf.get(pointKey(op.x, op.y))
      if (seq !== undefined) {
        matched++
        if (seq <= lastSeq) fail(`(${op.x}, ${op.y}) stored as seq ${seq}, after a later click's ${lastSeq}`)
        lastSeq = Math.max(lastSeq, seq)
      }
      if (op.answer._tag === "Ok") {
        verdict.acknowledged++
        if (seq === undefined) {
          fail(
            `acknowledged click (${op.x}, ${op.y}), answered cluster ${op.answer.clusterIdx}, is not stored`,
          )
          continue
        }
        const stored = bySeq.get(seq)!
        if (stored.clusterIdx !== op.answer.clusterIdx)
          fail(`seq ${seq} answered cluster ${op.answer.clusterIdx}, stored ${stored.clusterIdx}`)
        const founded = firstOfCluster.get(stored.clusterIdx) === seq
        if (op.answer.isNew !== founded)
          fail(
            `seq ${seq} answered is_new ${op.answer.isNew}, but it ${founded ? "founded" : "joined"} its cluster`,
          )
      } else {
        verdict.unacknowledged++
        if (seq !== undefined) {
          verdict.unacknowledgedStored++
          if (op.answer.why === "503") verdict.refusedButStored++
        }
      }
    } else if (op.answer._tag === "Ok") {
      for (; replayed < lastSeq; replayed++) {
        const row = rows[replayed]
        if (row !== undefined) prefix.assign(row.x, row.y, 0)
      }
      const expected = prefix.predict(op.x, op.y)
      const answered = op.answer.clusterIdx ?? PageClusters.NONE
      verdict.predictsChecked++
      if (answered !== expected)
        fail(`predict (${op.x}, ${op.y}) after seq ${lastSeq} answered ${answered}, replay says ${expected}`)
    }
  }
  if (matched !== rows.length) fail(`${rows.length - matched} stored rows are no click the client sent`)
  return replay
}

/** A stored snapshot must be exactly the replay of the log up to its seq. */
const checkSnapshot = (
  page: string,
  seq: number,
  document: string,
  rows: ReadonlyArray<StoredClick>,
  verdict: Verdict,
) => {
  verdict.snapshotsChecked++
  if (seq > rows.length) {
    verdict.errors.push(`${page}: snapshot at seq ${seq}, but only ${rows.length} clicks are stored`)
    return
  }
  const replay = new PageClusters(RADIUS)
  for (const row of rows.slice(0, seq)) replay.assign(row.x, row.y, 0)
  const expected = replay.toSnapshot()
  const stored = Schema.decodeUnknownSync(SnapshotClusters)(document)
  const same = (a: ReadonlyArray<number>, b: ReadonlyArray<number>) =>
    a.length === b.length && a.every((v, i) => v === b[i])
  if (
    !same(stored.sumX, expected.sumX) ||
    !same(stored.sumY, expected.sumY) ||
    !same(stored.count, expected.count)
  )
    verdict.errors.push(
      `${page}: snapshot at seq ${seq} holds counts ${JSON.stringify(stored.count)}, replay ${JSON.stringify(expected.count)}`,
    )
}

/** Points to ask the restarted server about: every centroid, points around them, and a few anywhere. */
const probePoints = (page: LoadPage, replay: PageClusters) => {
  const points: Array<{ readonly x: number; readonly y: number }> = []
  for (let i = 0; i < replay.size; i++) {
    const c = replay.centroid(i)
    points.push(c)
    for (let k = 0; k < 2; k++) {
      const x = c.x + gaussian() * RADIUS
      const y = c.y + gaussian() * RADIUS
      if (x >= 0 && x <= 1 && y >= 0 && y <= 1) points.push({ x, y })
    }
  }
  for (let k = 0; k < 8; k++) points.push(page.point())
  for (let k = 0; k < 4; k++) points.push({ x: random(), y: random() })
  return points
}

/** Runs `work` over `items`, `concurrency` at a time. */
const forEachConcurrently = async <A>(
  items: ReadonlyArray<A>,
  concurrency: number,
  work: (item: A) => Promise<void>,
) => {
  let next = 0
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < items.length) await work(items[next++]!)
    }),
  )
}

/** Asks the restarted server about every page: predictions at probe points, and its cluster summaries. */
const checkRestartedServer = async (
  url: string,
  pages: ReadonlyArray<LoadPage>,
  replays: ReadonlyMap<string, PageClusters>,
  verdict: Verdict,
) => {
  let probes = 0
  await forEachConcurrently(pages, 8, async (page) => {
    const replay = replays.get(page.uuid)!
    const fail = (message: string) => verdict.errors.push(`${page.uuid} after restart: ${message}`)
    for (const { x, y } of probePoints(page, replay)) {
      const outcome = await post(url, "/predict_cluster", page.uuid, x, y)
      probes++
      if (outcome._tag !== "Ok") {
        fail(`predict (${x}, ${y}) → ${JSON.stringify(outcome)}`)
        continue
      }
      const answered = Schema.decodeUnknownSync(PredictBody)(outcome.body).cluster_idx ?? PageClusters.NONE
      const expected = replay.predict(x, y)
      if (answered !== expected) fail(`predict (${x}, ${y}) answered ${answered}, replay says ${expected}`)
    }

    let response: Response
    let text: string
    try {
      response = await fetch(`${url}/pages/${encodeURIComponent(page.uuid)}/clusters`, {
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      })
      text = await response.text()
    } catch (error) {
      fail(`clusters: ${describeError(error)}`)
      return
    }
    if (replay.size === 0) {
      if (response.status !== 404) fail(`clusters of an empty page: ${response.status} ${text}`)
      return
    }
    if (response.status !== 200) {
      fail(`clusters: ${response.status} ${text}`)
      return
    }
    const { clusters } = Schema.decodeUnknownSync(ClustersBody)(JSON.parse(text))
    const expected = Array.from({ length: replay.size }, (_, i) => ({
      cluster_idx: i,
      centroid: replay.centroid(i),
      count: replay.count(i),
    }))
    const actual = clusters.map(({ cluster_idx, centroid, count }) => ({ cluster_idx, centroid, count }))
    if (JSON.stringify(actual) !== JSON.stringify(expected))
      fail(`clusters ${JSON.stringify(actual)}, replay ${JSON.stringify(expected)}`)
  })
  return probes
}

// ---------------------------------------------------------------------------------------------------------------

/** The load runs on after the last restart until this many saves were acknowledged (within LAST_WINDOW_MAX_MS). */
const ACKNOWLEDGED_TARGET = 600
const LAST_WINDOW_MAX_MS = 20_000
const MIN_ACKNOWLEDGED = 300
/** How long a started server may take to answer its first request before the kill timer starts anyway. */
const SERVING_TIMEOUT_MS = 10_000

const emptyVerdict = (): Verdict => ({
  errors: [],
  acknowledged: 0,
  unacknowledged: 0,
  unacknowledgedStored: 0,
  refusedButStored: 0,
  predictsChecked: 0,
  snapshotsChecked: 0,
})

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
    random = mulberry32(seed)
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
    const prefix = `${run}/%`
    const clickRows = (
      await storage.query<unknown>(
        "SELECT page_uuid, seq::float8 AS seq, x, y, cluster_idx FROM clicks WHERE page_uuid LIKE $1 ORDER BY page_uuid, seq",
        [prefix],
      )
    ).map((row) => Schema.decodeUnknownSync(ClickRow)(row))
    const snapshotRows = (
      await storage.query<unknown>(
        "SELECT page_uuid, seq::float8 AS seq, clusters::text AS clusters FROM page_snapshots WHERE page_uuid LIKE $1",
        [prefix],
      )
    ).map((row) => Schema.decodeUnknownSync(SnapshotRow)(row))
    const logs = new Map<string, Array<StoredClick>>(pages.map((p) => [p.uuid, []]))
    for (const row of clickRows) {
      const log = logs.get(row.page_uuid)
      if (log === undefined) throw new Error(`a click of an unknown page ${row.page_uuid}`)
      log.push({ seq: row.seq, x: row.x, y: row.y, clusterIdx: row.cluster_idx })
    }

    const verdict = emptyVerdict()
    const replays = new Map(pages.map((p) => [p.uuid, checkPage(p, logs.get(p.uuid)!, verdict)]))
    for (const row of snapshotRows)
      checkSnapshot(row.page_uuid, row.seq, row.clusters, logs.get(row.page_uuid)!, verdict)

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
        `${clickRows.length} stored; ${verdict.predictsChecked} predictions under load and ${probes} after ` +
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
