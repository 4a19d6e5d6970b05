import { Command, Options } from "@effect/cli"
import { NodeContext, NodeRuntime } from "@effect/platform-node"
import { Console, Effect } from "effect"
import { runLoad } from "./Load.ts"
import { buildService, type Child, startService } from "./Processes.ts"
import { commandLine, machineFacts, machineLine, table, writeDocsSection, writeJson } from "./Report.ts"
import { embeddedStorage, postgresReachable, postgresStorage } from "./Storage.ts"
import { type BodyPool, memoryInsertSql, memoryPool } from "./Workload.ts"

const CLUSTERS_PER_PAGE = 20
const WARM_PAGES = 1000

const options = {
  pages: Options.integer("pages").pipe(Options.withDefault(100_000)),
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

const memory = Command.make("bench-memory", options, (o) =>
  Effect.gen(function* () {
    const machine = machineFacts()
    const command = commandLine("bench:memory")
    const clusters = o.pages * CLUSTERS_PER_PAGE
    yield* Console.log(`bench:memory: ${machineLine(machine)}`)
    if (!o.skipBuild) {
      yield* Console.log("building the service (tsc → bench-results/dist)")
      yield* buildService
    }
    const pg = yield* postgresReachable(o.postgres)
    if (!pg.ok) yield* Console.log(`Postgres unreachable (${pg.reason}); using the embedded database`)

    const result = yield* Effect.scoped(
      Effect.gen(function* () {
        const storage = yield* pg.ok ? postgresStorage(o.postgres) : embeddedStorage
        // Pages stay loaded for the whole run, and no periodic snapshot churns memory while it is measured.
        const env = { ...storage.env, ACTOR_IDLE_TIMEOUT: "10 hours", SNAPSHOT_INTERVAL: "10 hours" }
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

    const mib = (b: number | null) => (b === null ? "–" : (b / 2 ** 20).toFixed(1))
    const text = [
      "## Memory per cluster (`npm run bench:memory`)",
      "",
      `Machine: ${machineLine(machine)}.`,
      "",
      `Command: \`${command}\``,
      "",
      `${result.pages.toLocaleString("en")} pages × ${result.clustersPerPage} clusters (one click each) inserted ` +
        `straight into the ${result.storage} database, then one predict per page makes every page's actor load ` +
        "(ACTOR_IDLE_TIMEOUT and SNAPSHOT_INTERVAL set to 10 hours so nothing passivates or snapshots). Readings " +
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
    yield* Console.log(`\n${text}`)
    yield* writeJson(o.json, { machine, command, ...result })
    if (o.docs !== "") {
      yield* writeDocsSection(o.docs, "memory", text)
      yield* Console.log(`section rewritten in ${o.docs}`)
    }
  }),
).pipe(
  Command.withDescription(
    "Measures the service's memory per cluster with 100,000 pages × 20 clusters loaded.",
  ),
)

Command.run(memory, { name: "bench-memory", version: "0.1.0" })(process.argv).pipe(
  Effect.catchTag("BenchError", (e) => Effect.zipRight(Console.error(e.message), Effect.fail(e))),
  Effect.provide(NodeContext.layer),
  NodeRuntime.runMain,
)
