import { Command, Options } from "@effect/cli"
import { NodeContext, NodeRuntime } from "@effect/platform-node"
import { Console, Effect } from "effect"
import { runLoad } from "./Load.ts"
import { buildService, type Child, startService } from "./Processes.ts"
import { commandLine, machineFacts, machineLine, table, writeDocsSection, writeJson } from "./Report.ts"
import { embeddedStorage, postgresReachable, postgresStorage } from "./Storage.ts"
import {
  type Bodies,
  type BodyPool,
  floodSaves,
  memoryInsertSql,
  memoryPool,
  unknownPredicts,
} from "./Workload.ts"

const CLUSTERS_PER_PAGE = 20
const WARM_PAGES = 1000

/** The service's default MAX_ACTIVE_PAGES (src/Config.ts): the flood scenario runs with it. */
const DEFAULT_MAX_ACTIVE_PAGES = 100_000

const options = {
  only: Options.text("only").pipe(
    Options.withDefault("clusters,flood"),
    Options.withDescription(
      "scenarios to run: clusters (bytes per cluster), flood (pages beyond MAX_ACTIVE_PAGES)",
    ),
  ),
  pages: Options.integer("pages").pipe(Options.withDefault(100_000)),
  floodPages: Options.integer("flood-pages").pipe(Options.withDefault(300_000)),
  floodBound: Options.integer("flood-max-active-pages").pipe(
    Options.withDefault(DEFAULT_MAX_ACTIVE_PAGES),
    Options.withDescription("MAX_ACTIVE_PAGES for the flood (default: the service's default)"),
  ),
  floodClicks: Options.integer("flood-clicks").pipe(
    Options.withDefault(3),
    Options.withDescription("clicks saved on each flood page"),
  ),
  connections: Options.integer("connections").pipe(Options.withDefault(64)),
  skipBuild: Options.boolean("skip-build"),
  postgres: Options.text("postgres").pipe(Options.withDefault("postgres://postgres@127.0.0.1:5432/postgres")),
  json: Options.text("json").pipe(Options.withDefault("bench-results/memory.json")),
  docs: Options.text("docs").pipe(
    Options.withDefault("docs/benchmarks.md"),
    Options.withDescription('the Markdown file whose memory section is rewritten; "" to leave it'),
  ),
}

/**
 * The server's node gets `--expose-gc` and a SIGUSR2 handler that collects garbage, so both readings are taken
 * after a full collection: otherwise garbage left by the recoveries' queries would count as pages' memory.
 */
const gcOnSignal = [
  "--expose-gc",
  "--import",
  "data:text/javascript,process.on('SIGUSR2',()=>globalThis.gc())",
]

/** A number from the Prometheus exposition at /metrics, when the service exports it. */
const metric = (server: Child, name: string) =>
  Effect.promise(async () => {
    const response = await fetch(`${server.url}/metrics`).catch(() => undefined)
    if (response === undefined || !response.ok) return null
    const line = (await response.text())
      .split("\n")
      .find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`))
    return line === undefined ? null : Number(line.split(" ").at(-1))
  })

/** Collects garbage in the server twice (a second pass frees what finalizers of the first released), then reads. */
const settledReading = (server: Child) =>
  Effect.gen(function* () {
    for (let i = 0; i < 2; i++) {
      server.signal("SIGUSR2")
      yield* Effect.sleep("1500 millis")
    }
    return {
      rssBytes: yield* server.rssBytes,
      heapUsedBytes: yield* metric(server, "nodejs_heap_size_used_bytes"),
      heapTotalBytes: yield* metric(server, "nodejs_heap_size_total_bytes"),
      externalBytes: yield* metric(server, "nodejs_external_memory_bytes"),
      activePages: yield* metric(server, "page_actors_active"),
    }
  })

const loadPages = (server: Child, pool: BodyPool, amount: number, connections: number) =>
  Effect.gen(function* () {
    let found = 0
    let missing = 0
    const started = performance.now()
    const m = yield* runLoad({
      url: server.url,
      path: "/predict_cluster",
      bodies: pool,
      connections,
      amount,
      // Each page's first cluster is at the predicted point: `null` would mean the page did not load its clusters.
      onBody: (status, body) => {
        if (status === 200 && body.includes('"cluster_idx":0')) found++
        else missing++
      },
    })
    return { measurement: m, found, missing, seconds: (performance.now() - started) / 1000 }
  })

type Opts = {
  readonly pages: number
  readonly connections: number
  readonly postgres: string
  readonly floodPages: number
  readonly floodClicks: number
  readonly floodBound: number
}
type Machine = ReturnType<typeof machineFacts>

const mib = (b: number | null) => (b === null ? "–" : (b / 2 ** 20).toFixed(1))

/** Bytes per cluster: 100,000 pages × 20 clusters loaded into memory, none evicted. */
const clustersScenario = (o: Opts, usePostgres: boolean, machine: Machine, command: string) =>
  Effect.gen(function* () {
    const clusters = o.pages * CLUSTERS_PER_PAGE
    const result = yield* Effect.scoped(
      Effect.gen(function* () {
        const storage = yield* usePostgres ? postgresStorage(o.postgres) : embeddedStorage
        // Pages stay loaded for the whole run (none passivates or is evicted), and no periodic snapshot churns
        // memory while it is measured.
        const env = {
          ...storage.env,
          ACTOR_IDLE_TIMEOUT: "10 hours",
          SNAPSHOT_INTERVAL: "10 hours",
          MAX_ACTIVE_PAGES: String(o.pages + WARM_PAGES),
        }
        yield* Console.log(`${storage.name}: migrating, then inserting ${clusters + WARM_PAGES * 20} clicks`)
        yield* Effect.scoped(startService(env))
        const insertStarted = performance.now()
        yield* storage.exec(memoryInsertSql("warm", WARM_PAGES))
        yield* storage.exec(memoryInsertSql("mem", o.pages))
        const insertSeconds = (performance.now() - insertStarted) / 1000
        yield* Console.log(`  inserted in ${insertSeconds.toFixed(1)} s`)

        const server = yield* startService(env, gcOnSignal)
        // Warm-up pages of their own (excluded from the count) so that the code is compiled before the baseline.
        yield* loadPages(server, memoryPool("warm", WARM_PAGES), WARM_PAGES, o.connections)
        const before = yield* settledReading(server)
        yield* Console.log(
          `  before: RSS ${(before.rssBytes / 2 ** 20).toFixed(1)} MiB, ${before.activePages} pages`,
        )
        yield* Console.log(
          `  loading ${o.pages} pages × ${CLUSTERS_PER_PAGE} clusters (one predict per page)`,
        )
        const load = yield* loadPages(server, memoryPool("mem", o.pages), o.pages, o.connections)
        yield* Console.log(
          `  ${load.found} pages answered their cluster, ${load.missing} did not, in ${load.seconds.toFixed(1)} s ` +
            `(statuses ${JSON.stringify(load.measurement.statusCodes)})`,
        )
        const after = yield* settledReading(server)
        yield* Console.log(
          `  after: RSS ${(after.rssBytes / 2 ** 20).toFixed(1)} MiB, ${after.activePages} pages`,
        )
        const heapDelta =
          after.heapUsedBytes !== null && before.heapUsedBytes !== null
            ? after.heapUsedBytes - before.heapUsedBytes
            : null
        return {
          storage: storage.name,
          pages: o.pages,
          clustersPerPage: CLUSTERS_PER_PAGE,
          clusters,
          insertSeconds,
          loadSeconds: load.seconds,
          pagesAnswered: load.found,
          pagesMissing: load.missing,
          errors: load.measurement.errors + load.measurement.timeouts,
          statusCodes: load.measurement.statusCodes,
          before,
          after,
          rssBytesPerCluster: (after.rssBytes - before.rssBytes) / clusters,
          heapBytesPerCluster: heapDelta === null ? null : heapDelta / clusters,
        }
      }),
    )

    const text = [
      "## Memory per cluster (`npm run bench:memory`)",
      "",
      `Machine: ${machineLine(machine)}.`,
      "",
      `Command: \`${command}\``,
      "",
      `${result.pages.toLocaleString("en")} pages × ${result.clustersPerPage} clusters (one click each) inserted ` +
        `straight into the ${result.storage} database, then one predict per page makes every page's actor load ` +
        "(ACTOR_IDLE_TIMEOUT and SNAPSHOT_INTERVAL set to 10 hours and MAX_ACTIVE_PAGES above the page count, so " +
        "nothing passivates, is evicted or snapshots). Readings " +
        `are taken after two forced garbage collections in the server. ${result.pagesAnswered.toLocaleString("en")} ` +
        `pages answered their first cluster, ${result.pagesMissing} did not (answers by status: ` +
        `${JSON.stringify(result.statusCodes)}, no answer: ${result.errors}); loading took ` +
        `${result.loadSeconds.toFixed(1)} s (${(result.pages / result.loadSeconds).toFixed(0)} pages/s).`,
      "",
      table(
        ["reading", "RSS MiB", "V8 heap used MiB", "V8 heap total MiB", "external MiB", "active pages"],
        [
          { label: "before (1,000 warm-up pages loaded)", r: result.before },
          { label: "after", r: result.after },
        ].map(({ label, r }) => [
          label,
          mib(r.rssBytes),
          mib(r.heapUsedBytes),
          mib(r.heapTotalBytes),
          mib(r.externalBytes),
          String(r.activePages ?? "–"),
        ]),
      ),
      "",
      `**Bytes per cluster (RSS after − before) / ${result.clusters.toLocaleString("en")}: ` +
        `${result.rssBytesPerCluster.toFixed(0)}** (target ≤ 200); V8 heap only: ` +
        `${result.heapBytesPerCluster === null ? "–" : result.heapBytesPerCluster.toFixed(0)}. RSS counts what the ` +
        "process holds from the system: V8's committed heap (used or not, after the collections) and memory " +
        "outside it (typed arrays' buffers, the allocator's fragmentation); the heap figure is what the pages' " +
        "objects themselves take.",
    ].join("\n")
    return { text, result }
  })

/** Runs a load and counts its answers by status (a connection error or timeout counts as no answer). */
const loadCounting = (server: Child, path: string, bodies: Bodies, amount: number, connections: number) =>
  Effect.gen(function* () {
    const started = performance.now()
    const statuses: Record<string, number> = {}
    const m = yield* runLoad({
      url: server.url,
      path,
      bodies,
      connections,
      amount,
      onBody: (status) => {
        statuses[status] = (statuses[status] ?? 0) + 1
      },
    })
    return {
      seconds: (performance.now() - started) / 1000,
      statuses,
      noAnswer: m.errors + m.timeouts,
      ok: statuses["200"] ?? 0,
    }
  })

/**
 * A flood of new pages through the real server with the default MAX_ACTIVE_PAGES: saves on `floodPages` pages (a
 * few clicks each), then as many predicts on pages that have no clicks. Memory must stay within the bound's
 * budget, and every acknowledged click must be stored although pages are evicted while clicks arrive.
 */
const floodScenario = (o: Opts, usePostgres: boolean) =>
  Effect.scoped(
    Effect.gen(function* () {
      const storage = yield* usePostgres ? postgresStorage(o.postgres) : embeddedStorage
      // Only the bound takes pages out of memory: no idle passivation within the run.
      const env: Record<string, string> = { ...storage.env, ACTOR_IDLE_TIMEOUT: "10 hours" }
      if (o.floodBound !== DEFAULT_MAX_ACTIVE_PAGES) env.MAX_ACTIVE_PAGES = String(o.floodBound)
      const server = yield* startService(env, gcOnSignal)
      yield* Console.log(`flood (${storage.name}): warming up on 1,000 pages`)
      yield* loadCounting(
        server,
        "/save_click_and_predict_cluster",
        floodSaves("warm", 1000, 3),
        3000,
        o.connections,
      )
      const before = yield* settledReading(server)
      yield* Console.log(`  before: RSS ${mib(before.rssBytes)} MiB, ${before.activePages} pages`)
      const saves = floodSaves("flood", o.floodPages, o.floodClicks)
      yield* Console.log(`  saving ${saves.total} clicks on ${o.floodPages} new pages`)
      const saved = yield* loadCounting(
        server,
        "/save_click_and_predict_cluster",
        saves,
        saves.total,
        o.connections,
      )
      yield* Console.log(
        `  ${saved.ok} acknowledged in ${saved.seconds.toFixed(1)} s (${JSON.stringify(saved.statuses)}, ` +
          `no answer ${saved.noAnswer})`,
      )
      const afterSaves = yield* settledReading(server)
      yield* Console.log(
        `  after saves: RSS ${mib(afterSaves.rssBytes)} MiB, ${afterSaves.activePages} pages`,
      )
      yield* Console.log(`  predicting on ${o.floodPages} pages without clicks`)
      const predicted = yield* loadCounting(
        server,
        "/predict_cluster",
        unknownPredicts("ghost", o.floodPages),
        o.floodPages,
        o.connections,
      )
      yield* Console.log(
        `  answered in ${predicted.seconds.toFixed(1)} s (${JSON.stringify(predicted.statuses)}, ` +
          `no answer ${predicted.noAnswer})`,
      )
      const afterPredicts = yield* settledReading(server)
      yield* Console.log(
        `  after predicts: RSS ${mib(afterPredicts.rssBytes)} MiB, ${afterPredicts.activePages} pages`,
      )
      const evictions = yield* metric(server, "page_evictions_total")
      const snapshots = yield* metric(server, "snapshots_written_total")
      yield* server.stop
      const stored = yield* storage.count("SELECT count(*) FROM clicks WHERE page_uuid LIKE 'flood/%'")
      const distinct = yield* storage.count(
        "SELECT count(DISTINCT (page_uuid, x, y)) FROM clicks WHERE page_uuid LIKE 'flood/%'",
      )
      const ghostClicks = yield* storage.count("SELECT count(*) FROM clicks WHERE page_uuid LIKE 'ghost/%'")
      yield* Console.log(`  stored ${stored} clicks (${distinct} distinct), acknowledged ${saved.ok}`)
      const pagesAdded =
        afterSaves.activePages !== null && before.activePages !== null
          ? afterSaves.activePages - before.activePages
          : null
      return {
        storage: storage.name,
        maxActivePages: o.floodBound,
        pages: o.floodPages,
        connections: o.connections,
        clicksPerPage: o.floodClicks,
        saved,
        predicted,
        before,
        afterSaves,
        afterPredicts,
        evictions,
        snapshots,
        stored,
        distinct,
        ghostClicks,
        rssBytesPerPage:
          pagesAdded === null || pagesAdded <= 0
            ? null
            : (afterSaves.rssBytes - before.rssBytes) / pagesAdded,
        heapBytesPerPage:
          pagesAdded === null ||
          pagesAdded <= 0 ||
          afterSaves.heapUsedBytes === null ||
          before.heapUsedBytes === null
            ? null
            : (afterSaves.heapUsedBytes - before.heapUsedBytes) / pagesAdded,
      }
    }),
  )

const floodText = (
  r: Effect.Effect.Success<ReturnType<typeof floodScenario>>,
  machine: Machine,
  command: string,
) =>
  [
    "## Memory under a flood of pages (`npm run bench:memory`)",
    "",
    `Machine: ${machineLine(machine)}.`,
    "",
    `Command: \`${command}\``,
    "",
    `The service with MAX_ACTIVE_PAGES ${r.maxActivePages.toLocaleString("en")}` +
      `${r.maxActivePages === DEFAULT_MAX_ACTIVE_PAGES ? " (the default)" : ""} on the ` +
      `${r.storage} database, ACTOR_IDLE_TIMEOUT 10 hours (only the bound takes pages out of memory). ` +
      `${(r.pages * r.clicksPerPage).toLocaleString("en")} saves through the server on ` +
      `${r.pages.toLocaleString("en")} new pages (${r.clicksPerPage} clicks each, pages in blocks of 1,000 clicked in ` +
      `rounds), ${r.connections} connections; then ${r.pages.toLocaleString("en")} predicts on pages that have no clicks. ` +
      "Readings after two forced garbage collections in the server.",
    "",
    table(
      ["reading", "RSS MiB", "V8 heap used MiB", "V8 heap total MiB", "external MiB", "active pages"],
      [
        { label: "before (1,000 warm-up pages)", m: r.before },
        { label: `after the saves on ${r.pages.toLocaleString("en")} pages`, m: r.afterSaves },
        { label: `after ${r.pages.toLocaleString("en")} predicts on unknown pages`, m: r.afterPredicts },
      ].map(({ label, m }) => [
        label,
        mib(m.rssBytes),
        mib(m.heapUsedBytes),
        mib(m.heapTotalBytes),
        mib(m.externalBytes),
        String(m.activePages ?? "–"),
      ]),
    ),
    "",
    `Saves: ${r.saved.ok.toLocaleString("en")} acknowledged in ${r.saved.seconds.toFixed(0)} s (answers by status ` +
      `${JSON.stringify(r.saved.statuses)}, no answer: ${r.saved.noAnswer}); **stored afterwards: ` +
      `${r.stored.toLocaleString("en")} clicks, ${r.distinct.toLocaleString("en")} distinct** (each save is a ` +
      `distinct click): ${r.stored >= r.saved.ok && r.distinct === r.stored ? "no acknowledged click lost, none stored twice" : "MISMATCH"}. ` +
      `Pages evicted: ${r.evictions?.toLocaleString("en") ?? "–"}; snapshots written: ` +
      `${r.snapshots?.toLocaleString("en") ?? "–"}. Predicts: ${JSON.stringify(r.predicted.statuses)} in ` +
      `${r.predicted.seconds.toFixed(0)} s, no answer: ${r.predicted.noAnswer}; clicks stored for those pages: ` +
      `${r.ghostClicks}.`,
    "",
    `Memory per page in memory (after the saves − before) / pages added: ` +
      `${r.rssBytesPerPage === null ? "–" : r.rssBytesPerPage.toFixed(0)} bytes RSS, ` +
      `${r.heapBytesPerPage === null ? "–" : r.heapBytesPerPage.toFixed(0)} bytes of V8 heap (pages of ` +
      `${r.clicksPerPage} clusters).`,
  ].join("\n")

const memory = Command.make("bench-memory", options, (o) =>
  Effect.gen(function* () {
    const machine = machineFacts()
    const command = commandLine("bench:memory")
    const only = new Set(o.only.split(",").map((s) => s.trim()))
    yield* Console.log(`bench:memory: ${machineLine(machine)}`)
    if (!o.skipBuild) {
      yield* Console.log("building the service (tsc → bench-results/dist)")
      yield* buildService
    }
    const pg = yield* postgresReachable(o.postgres)
    if (!pg.ok) yield* Console.log(`Postgres unreachable (${pg.reason}); using the embedded database`)
    const json: Record<string, unknown> = { machine, command }
    if (only.has("clusters")) {
      const { text, result } = yield* clustersScenario(o, pg.ok, machine, command)
      yield* Console.log(`\n${text}`)
      json.clusters = result
      if (o.docs !== "") yield* writeDocsSection(o.docs, "memory", text)
    }
    if (only.has("flood")) {
      const result = yield* floodScenario(o, pg.ok)
      const text = floodText(result, machine, command)
      yield* Console.log(`\n${text}`)
      json.flood = result
      if (o.docs !== "") yield* writeDocsSection(o.docs, "memory-flood", text)
    }
    yield* writeJson(o.json, json)
    if (o.docs !== "") yield* Console.log(`sections rewritten in ${o.docs}`)
  }),
).pipe(
  Command.withDescription(
    "Measures the service's memory per cluster with 100,000 pages × 20 clusters loaded, and under a flood of " +
      "300,000 new pages with the default MAX_ACTIVE_PAGES.",
  ),
)

Command.run(memory, { name: "bench-memory", version: "0.1.0" })(process.argv).pipe(
  Effect.catchTag("BenchError", (e) => Effect.zipRight(Console.error(e.message), Effect.fail(e))),
  Effect.provide(NodeContext.layer),
  NodeRuntime.runMain,
)
