import { Command, Options } from "@effect/cli"
import { NodeContext, NodeRuntime } from "@effect/platform-node"
import { Console, Effect, Option } from "effect"
import { BATCH_SIZE, type BatchResult, batchMarkdown, batchScenario } from "./Batch.ts"
import { type ClusterResult, clusterMarkdown, clusterScenario } from "./Cluster.ts"
import { type Measurement, runLoad } from "./Load.ts"
import { buildService, type Child, startRawServer, startService } from "./Processes.ts"
import {
  commandLine,
  fixed,
  type MachineFacts,
  machineFacts,
  machineLine,
  measurementCells,
  measurementHeaders,
  ms,
  ratio,
  table,
  writeDocsSection,
  writeJson,
} from "./Report.ts"
import { embeddedStorage, postgresReachable, postgresStorage, type Storage } from "./Storage.ts"
import {
  type BodyPool,
  historyInsertSql,
  historyRadius,
  latticePool,
  pagesPool,
  pagesTouchPool,
} from "./Workload.ts"

const PREDICT = "/predict_cluster"
const SAVE = "/save_click_and_predict_cluster"

const scenarios = ["a", "b", "c", "d", "e", "f", "history", "cluster"] as const
type Scenario = (typeof scenarios)[number]

const isScenario = (s: string): s is Scenario => scenarios.some((known) => known === s)

const listOf =
  <A>(parse: (s: string) => A | undefined) =>
  (text: string) => {
    const items = text.split(",").map((s) => s.trim())
    const parsed = items.map(parse)
    return parsed.every((p) => p !== undefined)
      ? Option.some(parsed.filter((p) => p !== undefined))
      : Option.none()
  }

const options = {
  duration: Options.integer("duration").pipe(
    Options.withDefault(10),
    Options.withDescription("seconds per measurement"),
  ),
  warmup: Options.integer("warmup").pipe(
    Options.withDefault(3),
    Options.withDescription("seconds of unrecorded load before a server's first measurement of an endpoint"),
  ),
  connections: Options.text("connections").pipe(
    Options.withDefault("1,32,128"),
    Options.filterMap(
      listOf((s) => (/^\d+$/.test(s) && Number(s) > 0 ? Number(s) : undefined)),
      "--connections takes numbers separated by commas, e.g. 1,32,128",
    ),
    Options.withDescription("connection counts to measure; the Postgres save adds 64"),
  ),
  only: Options.text("only").pipe(
    Options.withDefault(scenarios.join(",")),
    Options.filterMap(
      listOf((s) => (isScenario(s) ? s : undefined)),
      `--only takes scenarios separated by commas, from ${scenarios.join(",")}`,
    ),
    Options.withDescription("which scenarios to run"),
  ),
  skipBuild: Options.boolean("skip-build").pipe(
    Options.withDescription("measure bench-results/dist as it is instead of compiling the service first"),
  ),
  postgres: Options.text("postgres").pipe(
    Options.withDefault("postgres://postgres@127.0.0.1:5432/postgres"),
    Options.withDescription("a Postgres server where the harness may create and drop databases"),
  ),
  json: Options.text("json").pipe(Options.withDefault("bench-results/latest.json")),
  docs: Options.text("docs").pipe(
    Options.withDefault("docs/benchmarks.md"),
    Options.withDescription('the Markdown file whose throughput section is rewritten; "" to leave it'),
  ),
}

interface Row {
  readonly id: "a" | "b" | "c" | "d" | "e"
  readonly scenario: string
  readonly endpoint: string
  readonly storage: "none" | "embedded" | "postgres"
  readonly measurement: Measurement
}

interface HistoryRow {
  readonly endpoint: string
  readonly page: "fresh" | "history"
  readonly measurement: Measurement
}

interface HistoryResult {
  readonly storage: Storage["name"]
  readonly clicks: number
  readonly clustersAfterRecovery: number | null
  readonly loadSeconds: number
  /** The first request on the history page: its actor replays every click before it answers. */
  readonly firstRequestSeconds: number
  readonly firstRequestStatus: number
  readonly rows: ReadonlyArray<HistoryRow>
}

const labels: Record<Row["id"], string> = {
  a: "(a) raw node:http ceiling",
  b: "(b) predict, embedded",
  c: "(c) save, embedded",
  d: "(d) save, Postgres",
  e: "(e) predict, HttpApi only",
}

const measure = (
  url: string,
  path: string,
  bodies: BodyPool,
  connections: number,
  seconds: number,
  what: string,
) =>
  Effect.gen(function* () {
    yield* Console.log(`  ${what}: ${connections} connections, ${seconds} s`)
    const m = yield* runLoad({ url, path, bodies, connections, seconds })
    yield* Console.log(
      `    ${m.rps.toFixed(0)} req/s, p50 ${ms(m.latencyMs.p50)} ms, p99 ${ms(m.latencyMs.p99)} ms, ` +
        `max ${ms(m.latencyMs.max)} ms, errors ${m.errors + m.timeouts}, non-2xx ${m.non2xx}`,
    )
    return m
  })

const warm = (url: string, path: string, bodies: BodyPool, seconds: number) =>
  seconds > 0 ? Effect.asVoid(runLoad({ url, path, bodies, connections: 32, seconds })) : Effect.void

/** Starts the actor of every page of the workload: one predict each, before any timed load. */
const touchPages = (url: string, seed: number) =>
  Effect.asVoid(runLoad({ url, path: PREDICT, bodies: pagesTouchPool(seed), connections: 32, amount: 1000 }))

/** POSTs one click with fetch and answers the status and the time it took. */
const timedPost = (url: string, body: string) =>
  Effect.promise(async () => {
    const started = performance.now()
    const response = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body,
    })
    await response.text()
    return { status: response.status, seconds: (performance.now() - started) / 1000 }
  })

/** Counts a page's clusters through the analysts' API; null when the service has no such endpoint. */
const clusterCount = (server: Child, page: string) =>
  Effect.promise(async () => {
    const response = await fetch(`${server.url}/pages/${encodeURIComponent(page)}/clusters`)
    if (!response.ok) return null
    const body: unknown = await response.json()
    return typeof body === "object" && body !== null && "clusters" in body && Array.isArray(body.clusters)
      ? body.clusters.length
      : null
  })

/**
 * A page with 1,000,000 clicks in 10,000 clusters against a fresh page: starts the service once so its migrations
 * make the schema, stops it, inserts the rows in one statement, starts it again, and measures predict and save on
 * both pages. DB_TIMEOUT is raised so that the replay of a million clicks is measured rather than cut off.
 */
const historyScenario = (storage: Storage, seconds: number, warmup: number, runId: string) =>
  Effect.gen(function* () {
    const historyPage = `history-${runId}/1`
    const freshPage = `history-${runId}/fresh`
    const env = { ...storage.env, CLUSTER_RADIUS: String(historyRadius), DB_TIMEOUT: "120 seconds" }
    yield* Console.log(`\nhistory: ${storage.name} storage, migrating, then loading 1,000,000 clicks`)
    yield* Effect.scoped(startService(env))
    const loadStarted = performance.now()
    yield* storage.exec(historyInsertSql, [historyPage])
    const loadSeconds = (performance.now() - loadStarted) / 1000
    yield* Console.log(`  loaded in ${loadSeconds.toFixed(1)} s; restarting the service`)
    return yield* Effect.scoped(
      Effect.gen(function* () {
        const server = yield* startService(env)
        const first = yield* timedPost(
          `${server.url}${PREDICT}`,
          JSON.stringify({ page_uuid: historyPage, coordinates: { x: 0.5, y: 0.5 } }),
        )
        yield* Console.log(
          `  first request on the history page: ${first.status} after ${first.seconds.toFixed(2)} s`,
        )
        const clusters = yield* clusterCount(server, historyPage)
        yield* Console.log(`  clusters after recovery: ${clusters ?? "unknown (no /pages/{page}/clusters)"}`)
        const pools = {
          history: latticePool(historyPage, 11),
          fresh: latticePool(freshPage, 11),
          warm: latticePool(`history-${runId}/warm`, 12),
        }
        const rows: Array<HistoryRow> = []
        for (const path of [PREDICT, SAVE]) {
          yield* warm(server.url, path, pools.warm, warmup)
          for (const connections of [1, 32]) {
            for (const page of ["fresh", "history"] as const) {
              const what = `${path} on the ${page} page`
              const measurement = yield* measure(server.url, path, pools[page], connections, seconds, what)
              rows.push({ endpoint: path, page, measurement })
            }
          }
        }
        const result: HistoryResult = {
          storage: storage.name,
          clicks: 1_000_000,
          clustersAfterRecovery: clusters,
          loadSeconds,
          firstRequestSeconds: first.seconds,
          firstRequestStatus: first.status,
          rows,
        }
        return result
      }),
    )
  })

/** History latency over fresh-page latency, per endpoint and connection count: the target is ≤ 1.5. */
const historyRatios = (h: HistoryResult) => {
  const find = (endpoint: string, page: string, connections: number) =>
    h.rows.find(
      (r) => r.endpoint === endpoint && r.page === page && r.measurement.connections === connections,
    )
  const out: Array<{ endpoint: string; connections: number; p50: number; p99: number; rps: number }> = []
  for (const endpoint of [PREDICT, SAVE]) {
    for (const connections of [1, 32]) {
      const fresh = find(endpoint, "fresh", connections)?.measurement
      const history = find(endpoint, "history", connections)?.measurement
      if (fresh === undefined || history === undefined) continue
      out.push({
        endpoint,
        connections,
        p50: ratio(history.latencyMs.p50, fresh.latencyMs.p50),
        p99: ratio(history.latencyMs.p99, fresh.latencyMs.p99),
        rps: ratio(fresh.rps, history.rps),
      })
    }
  }
  return out
}

const vsRaw = (rows: ReadonlyArray<Row>, m: Measurement) => {
  const raw = rows.find((r) => r.id === "a" && r.measurement.connections === m.connections)?.measurement
  if (raw === undefined) return { rps: Number.NaN, p50: Number.NaN, p99: Number.NaN }
  return {
    rps: ratio(m.rps, raw.rps),
    p50: ratio(m.latencyMs.p50, raw.latencyMs.p50),
    p99: ratio(m.latencyMs.p99, raw.latencyMs.p99),
  }
}

const markdown = (
  machine: MachineFacts,
  command: string,
  rows: ReadonlyArray<Row>,
  history: HistoryResult | undefined,
  notes: ReadonlyArray<string>,
  batch?: BatchResult,
) => {
  const lines = [
    "## Throughput and latency (`npm run bench`)",
    "",
    `Machine: ${machineLine(machine)}.`,
    "",
    `Command: \`${command}\``,
    "",
    "Workload: 1,000 pages, 4 cluster centres each, gaussian noise σ = 0.015, 50,000 pre-generated bodies",
    "rotated across connections. (a) is a bare `node:http` server in its own process that parses the same JSON",
    "and answers a constant: the ceiling for one Node process here. Ratios are to (a) at the same connection",
    "count (req/s: higher is better; latency: lower is better). Latency counts every answer, not only 2xx.",
    "(e) is (b) with HTTP_FAST_LANE=false: every request through the HttpApi, as before the fast lane.",
    "",
    table(
      ["scenario", ...measurementHeaders, "req/s ÷ (a)", "p50 ÷ (a)", "p99 ÷ (a)", "load avg"],
      rows.map((r) => {
        const v = vsRaw(rows, r.measurement)
        return [
          labels[r.id],
          ...measurementCells(r.measurement),
          r.id === "a" ? "1" : fixed(v.rps, 3),
          r.id === "a" ? "1" : fixed(v.p50, 1),
          r.id === "a" ? "1" : fixed(v.p99, 1),
          fixed(r.measurement.loadAverage, 1),
        ]
      }),
    ),
  ]
  if (history !== undefined) {
    lines.push(
      "",
      "### History: one page with 1,000,000 clicks in 10,000 clusters against a fresh page",
      "",
      `Storage ${history.storage}, CLUSTER_RADIUS=${historyRadius}; rows inserted in ${history.loadSeconds.toFixed(1)} s; ` +
        `first request on the page (recovery: replay of every click) answered ${history.firstRequestStatus} after ` +
        `${history.firstRequestSeconds.toFixed(2)} s; clusters after recovery: ${history.clustersAfterRecovery ?? "not checked"}. ` +
        "Clicks drawn around the lattice's centres (σ = 0.001) on both pages.",
      "",
      table(
        ["endpoint", "page", ...measurementHeaders],
        history.rows.map((r) => [r.endpoint, r.page, ...measurementCells(r.measurement)]),
      ),
      "",
      "History ÷ fresh (target ≤ 1.5; for req/s: fresh ÷ history):",
      "",
      table(
        ["endpoint", "conns", "p50", "p99", "req/s"],
        historyRatios(history).map((r) => [
          r.endpoint,
          String(r.connections),
          fixed(r.p50, 2),
          fixed(r.p99, 2),
          fixed(r.rps, 2),
        ]),
      ),
    )
  }
  if (batch !== undefined) lines.push(...batchMarkdown(batch))
  if (notes.length > 0) lines.push("", "Notes:", "", ...notes.map((n) => `- ${n}`))
  return lines.join("\n")
}

const bench = Command.make("bench", options, (o) =>
  Effect.gen(function* () {
    const machine = machineFacts()
    const command = commandLine("bench")
    const only = new Set<Scenario>(o.only)
    const notes: Array<string> = []
    const rows: Array<Row> = []
    const runId = Date.now().toString(36)
    yield* Console.log(`bench: ${machineLine(machine)}`)

    if (!o.skipBuild) {
      yield* Console.log("building the service (tsc → bench-results/dist)")
      const build = yield* buildService
      yield* Console.log(`  built in ${build.seconds} s`)
      if (build.typeErrors)
        notes.push("The build reported type errors (work in progress in the tree); measured anyway.")
    }

    const needPostgres = only.has("d") || only.has("f") || only.has("history") || only.has("cluster")
    const pg = needPostgres ? yield* postgresReachable(o.postgres) : { ok: false, reason: "not needed" }
    if (needPostgres && !pg.ok) {
      const note = `Postgres unreachable at ${o.postgres} (${pg.reason}): (d) skipped, history on the embedded database.`
      notes.push(note)
      yield* Console.log(note)
    }

    const connectionCounts = o.connections
    const saveOnPostgres = [...new Set([...connectionCounts, 64])].sort((a, b) => a - b)
    const seed = 7
    const pool = pagesPool(seed)

    if (only.has("a")) {
      yield* Console.log("\n(a) raw node:http ceiling")
      const rawCounts = only.has("d") && pg.ok ? saveOnPostgres : connectionCounts
      yield* Effect.scoped(
        Effect.gen(function* () {
          const raw = yield* startRawServer
          yield* warm(raw.url, PREDICT, pool, o.warmup)
          for (const c of rawCounts) {
            const m = yield* measure(raw.url, PREDICT, pool, c, o.duration, "raw")
            rows.push({ id: "a", scenario: labels.a, endpoint: "any", storage: "none", measurement: m })
          }
        }),
      )
    }

    if (only.has("b") || only.has("c")) {
      yield* Effect.scoped(
        Effect.gen(function* () {
          const storage = yield* embeddedStorage
          const server = yield* startService(storage.env)
          // Saves first (at least a second of them): predictions then meet pages that have clusters.
          yield* Console.log("\n(c) save, embedded database")
          yield* touchPages(server.url, seed)
          yield* warm(server.url, SAVE, pool, Math.max(o.warmup, 1))
          if (only.has("c")) {
            for (const c of connectionCounts) {
              const m = yield* measure(server.url, SAVE, pool, c, o.duration, "save")
              rows.push({ id: "c", scenario: labels.c, endpoint: SAVE, storage: "embedded", measurement: m })
            }
          }
          if (only.has("b")) {
            yield* Console.log("\n(b) predict, embedded database")
            yield* warm(server.url, PREDICT, pool, o.warmup)
            for (const c of connectionCounts) {
              const m = yield* measure(server.url, PREDICT, pool, c, o.duration, "predict")
              rows.push({
                id: "b",
                scenario: labels.b,
                endpoint: PREDICT,
                storage: "embedded",
                measurement: m,
              })
            }
          }
        }),
      )
    }

    if (only.has("e")) {
      // The same service with its fast lane switched off: what the lane gives, measured in the same run.
      yield* Console.log("\n(e) predict, HttpApi only (HTTP_FAST_LANE=false), embedded database")
      yield* Effect.scoped(
        Effect.gen(function* () {
          const storage = yield* embeddedStorage
          const server = yield* startService({ ...storage.env, HTTP_FAST_LANE: "false" })
          yield* touchPages(server.url, seed)
          yield* warm(server.url, SAVE, pool, Math.max(o.warmup, 1))
          yield* warm(server.url, PREDICT, pool, o.warmup)
          for (const c of connectionCounts) {
            const m = yield* measure(server.url, PREDICT, pool, c, o.duration, "predict (HttpApi only)")
            rows.push({ id: "e", scenario: labels.e, endpoint: PREDICT, storage: "embedded", measurement: m })
          }
        }),
      )
    }

    if (only.has("d") && pg.ok) {
      yield* Console.log("\n(d) save, Postgres")
      yield* Effect.scoped(
        Effect.gen(function* () {
          const storage = yield* postgresStorage(o.postgres)
          const server = yield* startService(storage.env)
          yield* touchPages(server.url, seed)
          yield* warm(server.url, SAVE, pool, o.warmup)
          for (const c of saveOnPostgres) {
            const m = yield* measure(server.url, SAVE, pool, c, o.duration, "save")
            rows.push({ id: "d", scenario: labels.d, endpoint: SAVE, storage: "postgres", measurement: m })
          }
        }),
      )
    }

    let batch: BatchResult | undefined
    if (only.has("f") && pg.ok) {
      yield* Console.log(`\n(f) batch ingestion, POST /clicks with ${BATCH_SIZE} clicks a batch, Postgres`)
      batch = yield* Effect.scoped(
        Effect.flatMap(postgresStorage(o.postgres), (storage) =>
          batchScenario(storage, [1, 4, 16], o.duration, o.warmup),
        ),
      )
    }

    let history: HistoryResult | undefined
    if (only.has("history")) {
      history = yield* Effect.scoped(
        Effect.flatMap(pg.ok ? postgresStorage(o.postgres) : embeddedStorage, (storage) =>
          historyScenario(storage, o.duration, o.warmup, runId),
        ),
      )
    }

    let cluster: ClusterResult | undefined
    if (only.has("cluster") && pg.ok) {
      const counts = o.connections.filter((c) => c > 1)
      cluster = yield* Effect.scoped(clusterScenario(o.postgres, o.duration, o.warmup, counts[0] ?? 32))
    }

    const order: ReadonlyArray<Row["id"]> = ["a", "b", "e", "c", "d"]
    const sorted = [...rows].sort((x, y) => order.indexOf(x.id) - order.indexOf(y.id))
    const text = [
      markdown(machine, command, sorted, history, notes, batch),
      ...(cluster === undefined ? [] : clusterMarkdown(cluster)),
    ].join("\n")
    yield* Console.log(`\n${text}`)
    const historySummary = history === undefined ? undefined : { ...history, ratios: historyRatios(history) }
    yield* writeJson(o.json, {
      machine,
      command,
      options: { ...o, only: [...only] },
      measurements: sorted.map((r) => ({ ...r, vsRaw: vsRaw(sorted, r.measurement) })),
      history: historySummary,
      batch,
      cluster,
      notes,
    })
    yield* Console.log(`\nresults written to ${o.json}`)
    if (o.docs !== "") {
      yield* writeDocsSection(o.docs, "bench", text)
      yield* Console.log(`section rewritten in ${o.docs}`)
    }
  }),
).pipe(
  Command.withDescription(
    "Measures the service against a raw node:http ceiling: predict, save on the embedded database and on Postgres, " +
      "batch ingestion (POST /clicks) against Postgres's bulk insert, and a page with a long history.",
  ),
)

Command.run(bench, { name: "bench", version: "0.1.0" })(process.argv).pipe(
  Effect.catchTag("BenchError", (e) => Effect.zipRight(Console.error(e.message), Effect.fail(e))),
  Effect.provide(NodeContext.layer),
  NodeRuntime.runMain,
)
