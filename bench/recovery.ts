import { Command, Options } from "@effect/cli"
import { NodeContext, NodeRuntime } from "@effect/platform-node"
import { Console, Effect } from "effect"
import pg from "pg"
import { BenchError, buildService, type Child, startService } from "./Processes.ts"
import { commandLine, machineFacts, machineLine, ms, table, writeDocsSection, writeJson } from "./Report.ts"
import { postgresStorage } from "./Storage.ts"

const options = {
  pages: Options.integer("pages").pipe(Options.withDefault(10_000)),
  clicksPerPage: Options.integer("clicks-per-page").pipe(Options.withDefault(100)),
  heavyClicks: Options.integer("heavy-clicks").pipe(
    Options.withDefault(100_000),
    Options.withDescription("clicks of one extra page, to show what snapshots save on a long history"),
  ),
  probes: Options.integer("probes").pipe(Options.withDefault(200)),
  skipBuild: Options.boolean("skip-build"),
  postgres: Options.text("postgres").pipe(Options.withDefault("postgres://postgres@127.0.0.1:5432/postgres")),
  json: Options.text("json").pipe(Options.withDefault("bench-results/recovery.json")),
  docs: Options.text("docs").pipe(Options.withDefault("docs/benchmarks.md")),
}

const HEAVY = "rp/heavy"

/**
 * Clicks around ten centres per page (x, y in [0, 1]), straight into the clicks table; the server recomputes
 * clusters from x and y when it recovers a page, so the stored cluster_idx only needs to be plausible.
 */
const insertClicks = (page: string, pages: number, clicks: number) => `
  INSERT INTO clicks (page_uuid, seq, x, y, cluster_idx, request_id, created_at)
  SELECT ${page}, s,
         0.1 + ((s % 10) % 4) * 0.25 + (random() - 0.5) * 0.02,
         0.1 + ((s % 10) / 4) * 0.3 + (random() - 0.5) * 0.02,
         s % 10, NULL, now() - (${clicks} - s) * interval '1 second'
  FROM generate_series(0, ${pages - 1}) AS p, generate_series(1, ${clicks}) AS s`

const percentile = (sorted: ReadonlyArray<number>, q: number) =>
  sorted.length === 0 ? Number.NaN : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!

const predict = (server: Child, page: string) =>
  Effect.promise(async () => {
    const started = performance.now()
    const response = await fetch(`${server.url}/predict_cluster`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ page_uuid: page, coordinates: { x: 0.1, y: 0.1 } }),
    })
    await response.text()
    if (response.status !== 200) throw new Error(`predict answered ${response.status}`)
    return performance.now() - started
  })

/** First-answer latency of pages no actor holds yet (each page asked once), then of the same pages warm. */
const coldAndWarm = (server: Child, pages: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const cold: Array<number> = []
    for (const p of pages) cold.push(yield* predict(server, p))
    const warm: Array<number> = []
    for (const p of pages) warm.push(yield* predict(server, p))
    const summary = (xs: Array<number>) => {
      const sorted = xs.sort((a, b) => a - b)
      return { p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99), max: sorted.at(-1) ?? Number.NaN }
    }
    return { cold: summary(cold), warm: summary(warm), heavy: yield* predict(server, HEAVY) }
  })

/** Time from spawning the server to its first answer on `GET /`: start-up, migrations check, pool. */
const timedStart = (env: Record<string, string>) =>
  Effect.gen(function* () {
    const started = performance.now()
    const server = yield* startService(env)
    return { server, readySeconds: (performance.now() - started) / 1000 }
  })

const snapshotCount = (databaseUrl: string) =>
  Effect.tryPromise({
    try: async () => {
      const client = new pg.Client({ connectionString: databaseUrl })
      await client.connect()
      try {
        return Number((await client.query("SELECT count(*) AS n FROM page_snapshots")).rows[0].n)
      } finally {
        await client.end()
      }
    },
    catch: (cause) => new BenchError({ message: `counting snapshots: ${String(cause)}` }),
  })

const recovery = Command.make("bench-recovery", options, (o) =>
  Effect.scoped(
    Effect.gen(function* () {
      if (!o.skipBuild) yield* buildService
      const storage = yield* postgresStorage(o.postgres)
      const env = {
        ...storage.env,
        SHUTDOWN_TIMEOUT: "10 minutes",
        ACTOR_IDLE_TIMEOUT: "10 hours",
        SNAPSHOT_EVERY: "1000000",
        SNAPSHOT_INTERVAL: "10 hours",
      }
      const total = o.pages * o.clicksPerPage + o.heavyClicks
      yield* Console.log(`migrating, then inserting ${total.toLocaleString("en")} clicks`)
      const first = yield* startService(env)
      yield* first.stop
      yield* storage.exec(insertClicks("'rp/' || p", o.pages, o.clicksPerPage))
      yield* storage.exec(insertClicks(`'${HEAVY}'`, 1, o.heavyClicks))
      yield* storage.exec("ANALYZE clicks")

      // Probe pages spread over the whole set, the same in both runs.
      const probes = Array.from({ length: o.probes }, (_, i) => `rp/${Math.floor((i * o.pages) / o.probes)}`)

      yield* Console.log("without snapshots: restart, cold pages")
      const plain = yield* timedStart(env)
      const withoutSnapshots = {
        readySeconds: plain.readySeconds,
        ...(yield* coldAndWarm(plain.server, probes)),
      }

      yield* Console.log("loading every page, then a graceful stop that snapshots them all")
      const all = Array.from({ length: o.pages }, (_, i) => `rp/${i}`)
      yield* Effect.forEach(all, (p) => predict(plain.server, p), { concurrency: 16, discard: true })
      const stopStarted = performance.now()
      yield* plain.server.stop
      const snapshotSeconds = (performance.now() - stopStarted) / 1000
      const databaseUrl = storage.env.DATABASE_URL ?? ""
      const snapshots = yield* snapshotCount(databaseUrl)

      yield* Console.log(`with ${snapshots} snapshots: restart, cold pages`)
      const snapped = yield* timedStart(env)
      const withSnapshots = {
        readySeconds: snapped.readySeconds,
        ...(yield* coldAndWarm(snapped.server, probes)),
      }
      yield* snapped.server.stop

      const machine = machineFacts()
      const result = {
        machine,
        command: commandLine("bench:recovery"),
        pages: o.pages,
        clicksPerPage: o.clicksPerPage,
        heavyClicks: o.heavyClicks,
        probes: o.probes,
        snapshots,
        snapshotSeconds,
        withoutSnapshots,
        withSnapshots,
      }
      yield* writeJson(o.json, result)
      const row = (name: string, r: typeof withSnapshots) => [
        name,
        r.readySeconds.toFixed(2),
        ms(r.cold.p50),
        ms(r.cold.p99),
        ms(r.cold.max),
        ms(r.warm.p50),
        ms(r.heavy),
      ]
      const markdown = `## Recovery (\`npm run bench:recovery\`)

${machineLine(machine)}

Command: \`${result.command}\`

${total.toLocaleString("en")} clicks in the machine's Postgres: ${o.pages.toLocaleString("en")} pages × ${o.clicksPerPage} clicks, plus one page of ${o.heavyClicks.toLocaleString("en")} clicks. "Ready" is the time from spawning the server to its first answer; pages load lazily, so it does not grow with the data. A cold page's first answer includes its recovery: without snapshots every stored click is replayed; with snapshots the latest snapshot is read and only the clicks after its watermark are replayed. ${o.probes} probe pages, each asked once cold, then once warm. The snapshots were written by one graceful stop with every page loaded (${snapshots.toLocaleString("en")} snapshots in ${snapshotSeconds.toFixed(1)} s).

${table(
  [
    "run",
    "ready s",
    "cold p50 ms",
    "cold p99 ms",
    "cold max ms",
    "warm p50 ms",
    `cold page of ${o.heavyClicks.toLocaleString("en")} clicks, ms`,
  ],
  [row("without snapshots (full replay)", withoutSnapshots), row("with snapshots", withSnapshots)],
)}
`
      yield* Console.log(markdown)
      if (o.docs !== "") yield* writeDocsSection(o.docs, "recovery", markdown)
    }),
  ),
)

Command.run(recovery, { name: "bench-recovery", version: "0.1.0" })(process.argv).pipe(
  Effect.provide(NodeContext.layer),
  NodeRuntime.runMain,
)
