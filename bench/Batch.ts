import { Console, Effect } from "effect"
import { generateClicks } from "../src/cli/ClickGenerator.ts"
import { type Measurement, runLoad } from "./Load.ts"
import { type Child, startService } from "./Processes.ts"
import { fixed, ms, ratio, table } from "./Report.ts"
import type { Storage } from "./Storage.ts"
import { BodyPool } from "./Workload.ts"

/** Clicks per POST /clicks, as the target states it. */
export const BATCH_SIZE = 500

/** Rows Postgres inserts in the ceiling's one statement. */
const BULK_ROWS = 1_000_000

type Shape = "one page" | "mixed pages"

interface BatchRow {
  readonly shape: Shape
  readonly measurement: Measurement
  /** Clicks stored during the measurement (rows counted in the database before and after), per second. */
  readonly durableClicksPerSecond: number
  /** Clicks the 2xx answers acknowledged (batches × 500) per second. */
  readonly acknowledgedClicksPerSecond: number
}

export interface BatchResult {
  readonly bulkInsertRowsPerSecond: number
  readonly bulkInsertSeconds: number
  readonly rows: ReadonlyArray<BatchRow>
  /** From the service's /metrics after the run: the click log's mean batch and mean commit time. */
  readonly clickLog: { readonly meanBatch: number; readonly meanCommitMs: number; readonly commits: number }
}

const clickBody = (page: string, x: number, y: number) => ({ page_uuid: page, coordinates: { x, y } })

/**
 * Batches of 500 clicks: "one page" (a page's clicks in order, as one tracker's batch), or "mixed pages" (500
 * consecutive clicks of the interleaved stream over 1,000 pages, ~400 pages per batch, as a collector would forward).
 */
const batchPool = (shape: Shape, seed: number) => {
  const pages = shape === "one page" ? 200 : 1000
  const clicks = Array.from(
    generateClicks({ pages, clusters: 4, clicks: 200_000, noise: 0.015, seed, start: 0, rate: 100 }),
  )
  const batches: Array<string> = []
  if (shape === "mixed pages") {
    for (let i = 0; i + BATCH_SIZE <= clicks.length; i += BATCH_SIZE)
      batches.push(
        JSON.stringify(clicks.slice(i, i + BATCH_SIZE).map((c) => clickBody(c.page_uuid, c.x, c.y))),
      )
  } else {
    const byPage = new Map<string, Array<object>>()
    for (const c of clicks) {
      const list = byPage.get(c.page_uuid) ?? []
      list.push(clickBody(c.page_uuid, c.x, c.y))
      byPage.set(c.page_uuid, list)
    }
    for (const list of byPage.values())
      for (let i = 0; i + BATCH_SIZE <= list.length; i += BATCH_SIZE)
        batches.push(JSON.stringify(list.slice(i, i + BATCH_SIZE)))
  }
  const pageIds = [...new Set(clicks.map((c) => c.page_uuid))]
  return {
    batches: new BodyPool(batches),
    /** A prediction on each page: starts every page's actor (its recovery) before anything is timed. */
    touch: new BodyPool(pageIds.map((page) => JSON.stringify(clickBody(page, 0.5, 0.5)))),
    pages: pageIds.length,
  }
}

/** A metric's value from a Prometheus exposition (the sum over its label sets). */
const metricOf = (exposition: string, name: string) =>
  exposition
    .split("\n")
    .filter((line) => line.startsWith(`${name} `) || line.startsWith(`${name}{`))
    .reduce((sum, line) => sum + Number(line.slice(line.lastIndexOf(" ") + 1)), 0)

const clickLogFacts = (server: Child) =>
  Effect.promise(async () => {
    const text = await (await fetch(`${server.url}/metrics`)).text()
    const commits = metricOf(text, "click_log_batch_size_count")
    return {
      commits,
      meanBatch: ratio(metricOf(text, "click_log_batch_size_sum"), commits),
      meanCommitMs:
        ratio(
          metricOf(text, "click_log_commit_duration_seconds_sum"),
          metricOf(text, "click_log_commit_duration_seconds_count"),
        ) * 1000,
    }
  })

/**
 * POST /clicks on Postgres with batches of 500, measured as durable clicks per second (rows the database gained
 * during the run), next to Postgres's own bulk-insert rate on the same machine in the same run: one
 * `INSERT … SELECT … FROM generate_series` of 1,000,000 rows into a scratch copy of the clicks table (its columns,
 * primary key and indexes).
 */
export const batchScenario = (
  storage: Storage,
  connectionCounts: ReadonlyArray<number>,
  seconds: number,
  warmup: number,
) =>
  Effect.scoped(
    Effect.gen(function* () {
      const server = yield* startService(storage.env)
      yield* Console.log("  Postgres bulk insert: 1,000,000 rows into a copy of the clicks table")
      yield* storage.exec("CREATE TABLE bulk_scratch (LIKE clicks INCLUDING ALL)")
      const bulkStarted = performance.now()
      yield* storage.exec(
        `INSERT INTO bulk_scratch (page_uuid, seq, x, y, cluster_idx)
         SELECT 'page-' || (g % 1000), g, random(), random(), (g % 4)::int FROM generate_series(1, ${BULK_ROWS}) g`,
      )
      const bulkInsertSeconds = (performance.now() - bulkStarted) / 1000
      yield* storage.exec("DROP TABLE bulk_scratch")
      const bulkInsertRowsPerSecond = BULK_ROWS / bulkInsertSeconds
      yield* Console.log(
        `    ${bulkInsertRowsPerSecond.toFixed(0)} rows/s (${bulkInsertSeconds.toFixed(2)} s)`,
      )

      const rows: Array<BatchRow> = []
      for (const shape of ["one page", "mixed pages"] as const) {
        const { batches: pool, touch, pages } = batchPool(shape, shape === "one page" ? 21 : 22)
        // Every page's actor started first: a batch meeting cold pages measures their recoveries instead.
        yield* runLoad({
          url: server.url,
          path: "/predict_cluster",
          bodies: touch,
          connections: 8,
          amount: pages,
        })
        if (warmup > 0)
          yield* runLoad({ url: server.url, path: "/clicks", bodies: pool, connections: 8, seconds: warmup })
        for (const connections of connectionCounts) {
          yield* Console.log(
            `  POST /clicks, ${BATCH_SIZE} clicks, ${shape}: ${connections} connections, ${seconds} s`,
          )
          const before = yield* storage.count("SELECT count(*) FROM clicks")
          const m = yield* runLoad({ url: server.url, path: "/clicks", bodies: pool, connections, seconds })
          const after = yield* storage.count("SELECT count(*) FROM clicks")
          const ok = m.statusCodes["200"] ?? 0
          const row: BatchRow = {
            shape,
            measurement: m,
            durableClicksPerSecond: (after - before) / m.seconds,
            acknowledgedClicksPerSecond: (ok * BATCH_SIZE) / m.seconds,
          }
          rows.push(row)
          yield* Console.log(
            `    ${m.rps.toFixed(0)} batches/s, ${row.durableClicksPerSecond.toFixed(0)} durable clicks/s ` +
              `(${fixed(ratio(row.durableClicksPerSecond, bulkInsertRowsPerSecond), 2)} of the bulk insert), ` +
              `p50 ${ms(m.latencyMs.p50)} ms, p99 ${ms(m.latencyMs.p99)} ms, non-2xx ${m.non2xx}`,
          )
        }
      }
      const clickLog = yield* clickLogFacts(server)
      return { bulkInsertRowsPerSecond, bulkInsertSeconds, rows, clickLog } satisfies BatchResult
    }),
  )

/** The batch section of the report. */
export const batchMarkdown = (result: BatchResult) => [
  "",
  `### Batch ingestion (POST /clicks, ${BATCH_SIZE} clicks a batch) on Postgres against its own bulk insert`,
  "",
  `Postgres bulk insert (\`INSERT … SELECT … FROM generate_series\`, ${BULK_ROWS.toLocaleString("en")} rows into a copy ` +
    `of the clicks table with its primary key and indexes), same machine, same run: ` +
    `**${result.bulkInsertRowsPerSecond.toFixed(0)} rows/s** (${result.bulkInsertSeconds.toFixed(2)} s). ` +
    "Durable clicks/s counts the rows the clicks table gained during the run; acknowledged clicks/s the 2xx batches × 500. " +
    `"one page": each batch is one page's clicks (200 pages); "mixed pages": 500 consecutive clicks of a stream over 1,000 ` +
    "pages (~400 pages a batch). Every page's actor is started (a prediction each) before the warm-up and the runs. " +
    `Click log over the whole run: ${result.clickLog.commits} commits, mean ${fixed(result.clickLog.meanBatch, 0)} clicks ` +
    `per commit, mean commit ${fixed(result.clickLog.meanCommitMs, 1)} ms.`,
  "",
  table(
    [
      "batches",
      "conns",
      "batches/s",
      "durable clicks/s",
      "acknowledged clicks/s",
      "÷ bulk insert",
      "p50 ms",
      "p99 ms",
      "non-2xx",
    ],
    result.rows.map((r) => [
      r.shape,
      String(r.measurement.connections),
      r.measurement.rps.toFixed(0),
      r.durableClicksPerSecond.toFixed(0),
      r.acknowledgedClicksPerSecond.toFixed(0),
      fixed(ratio(r.durableClicksPerSecond, result.bulkInsertRowsPerSecond), 2),
      ms(r.measurement.latencyMs.p50),
      ms(r.measurement.latencyMs.p99),
      String(r.measurement.non2xx),
    ]),
  ),
]
