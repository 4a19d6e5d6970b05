import { Schema } from "effect"
import { mulberry32 } from "../../src/cli/ClickGenerator.ts"
import { PageClusters } from "../../src/domain/PageClusters.ts"

/**
 * A load of tracker clients on many pages, what they were answered, and the checks of the stored log against it:
 * the crash test's (test/main/Crash.test.ts) and the cluster's (test/main/Cluster.test.ts). The stored log must be
 * each page's clicks 1..n, every row a click a client sent, once, assigned as the domain assigns it; every
 * acknowledged save stored with its answered cluster; every prediction made on exactly the clicks stored before it.
 */

export const RADIUS = 0.04
export const REQUEST_TIMEOUT_MS = 15_000

/** Every random choice of a load; seeded by its test (`seedLoad`) so a seed replays the same choices. */
let random: () => number = mulberry32(0)
export const seedLoad = (seed: number) => {
  random = mulberry32(seed)
}
export const loadRandom = () => random()

/** How a request ended: a 200 with its body, a 503, no answer at all (connection error), or anything else. */
export type Outcome =
  | { readonly _tag: "Ok"; readonly body: unknown }
  | { readonly _tag: "Unavailable" }
  | { readonly _tag: "Lost"; readonly reason: string }
  | { readonly _tag: "Unexpected"; readonly status: number; readonly text: string }

export type SaveAnswer =
  | { readonly _tag: "Ok"; readonly clusterIdx: number; readonly isNew: boolean }
  | { readonly _tag: "NotAcknowledged"; readonly why: string }

export type PredictAnswer =
  | { readonly _tag: "Ok"; readonly clusterIdx: number | null }
  | { readonly _tag: "NotAcknowledged"; readonly why: string }

/** One request of a page, in the order its client sent them. */
export type Op =
  | { readonly kind: "save"; readonly x: number; readonly y: number; readonly answer: SaveAnswer }
  | { readonly kind: "predict"; readonly x: number; readonly y: number; readonly answer: PredictAnswer }

export const SaveBody = Schema.Struct({ cluster_idx: Schema.Int, is_new: Schema.Boolean })
export const PredictBody = Schema.Struct({ cluster_idx: Schema.NullOr(Schema.Int) })
export const ClustersBody = Schema.Struct({
  page_uuid: Schema.String,
  clusters: Schema.Array(
    Schema.Struct({
      cluster_idx: Schema.Int,
      centroid: Schema.Struct({ x: Schema.Number, y: Schema.Number }),
      count: Schema.Number,
    }),
  ),
})
export const ClickRow = Schema.Struct({
  page_uuid: Schema.String,
  seq: Schema.Number,
  x: Schema.Number,
  y: Schema.Number,
  cluster_idx: Schema.Number,
})
export const SnapshotRow = Schema.Struct({
  page_uuid: Schema.String,
  seq: Schema.Number,
  clusters: Schema.String,
})
/** The part of a stored snapshot document this test compares (the rest of its format is the service's). */
export const SnapshotClusters = Schema.parseJson(
  Schema.Struct({
    sumX: Schema.Array(Schema.Number),
    sumY: Schema.Array(Schema.Number),
    count: Schema.Array(Schema.Number),
  }),
)

export const describeError = (error: unknown) =>
  error instanceof Error && error.cause instanceof Error
    ? `${error.message}: ${error.cause.message}`
    : String(error)

export const post = async (
  url: string,
  path: string,
  page: string,
  x: number,
  y: number,
): Promise<Outcome> => {
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

export const gaussian = () => {
  const u = 1 - random()
  const v = random()
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v)
}

/** A tracked page: a few hot spots its clicks bunch around, every request sent to it, and the points used. */
export class LoadPage {
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

export const pointKey = (x: number, y: number) => `${x},${y}`

export interface LoadStats {
  /** Saves answered 200 so far. */
  acknowledged: number
  readonly unexpected: Array<string>
}

/** Where a client sends its next request: a server's URL once one serves, null once the load is over. */
export interface LoadTarget {
  ready(): Promise<string | null>
  /** A request to `url` was answered 200. */
  answered(url: string): void
}

/** One client: sends to its own pages, one request at a time, until the load is over. */
export const client = async (
  gate: LoadTarget,
  pages: ReadonlyArray<LoadPage>,
  stats: LoadStats,
  predictShare = 0.25,
) => {
  while (true) {
    const url = await gate.ready()
    if (url === null) return
    const page = pages[Math.floor(random() * pages.length)]!
    const predict = random() < predictShare
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

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

export interface StoredClick {
  readonly seq: number
  readonly x: number
  readonly y: number
  readonly clusterIdx: number
}

export interface Verdict {
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
export const checkPage = (
  page: LoadPage,
  rows: ReadonlyArray<StoredClick>,
  verdict: Verdict,
): PageClusters => {
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
export const checkSnapshot = (
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
export const probePoints = (page: LoadPage, replay: PageClusters) => {
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
export const forEachConcurrently = async <A>(
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
export const checkRestartedServer = async (
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

export const emptyVerdict = (): Verdict => ({
  errors: [],
  acknowledged: 0,
  unacknowledged: 0,
  unacknowledgedStored: 0,
  refusedButStored: 0,
  predictsChecked: 0,
  snapshotsChecked: 0,
})

/**
 * Reads the stored clicks and snapshots of a run's pages (`run/…`) and checks them against the pages' answers;
 * returns the verdict, each page's replay, and how many clicks are stored.
 */
export const checkStoredLog = async (
  query: <A>(text: string, params?: ReadonlyArray<unknown>) => Promise<ReadonlyArray<A>>,
  run: string,
  pages: ReadonlyArray<LoadPage>,
) => {
  const prefix = `${run}/%`
  const clickRows = (
    await query<unknown>(
      "SELECT page_uuid, seq::float8 AS seq, x, y, cluster_idx FROM clicks WHERE page_uuid LIKE $1 ORDER BY page_uuid, seq",
      [prefix],
    )
  ).map((row) => Schema.decodeUnknownSync(ClickRow)(row))
  const snapshotRows = (
    await query<unknown>(
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
  const replays = new Map(pages.map((p) => [p.uuid, checkPage(p, logs.get(p.uuid) ?? [], verdict)]))
  for (const row of snapshotRows)
    checkSnapshot(row.page_uuid, row.seq, row.clusters, logs.get(row.page_uuid) ?? [], verdict)
  return { verdict, replays, stored: clickRows.length }
}
