import { readFile } from "node:fs/promises"
import { Console, Effect, type Scope } from "effect"
import { type Measurement, runLoad } from "./Load.ts"
import { BenchError, type Child, freePort, startService } from "./Processes.ts"
import { fixed, measurementCells, measurementHeaders, ms, ratio, table } from "./Report.ts"
import { postgresStorage } from "./Storage.ts"
import { BodyPool, pagesPool, pagesTouchPool } from "./Workload.ts"

const PREDICT = "/predict_cluster"
const SAVE = "/save_click_and_predict_cluster"

/** One measured load: what, where, and the CPU the runners spent per answered request. */
export interface ClusterRow {
  readonly scenario: string
  readonly endpoint: string
  readonly runners: number
  readonly measurement: Measurement
  /** CPU time (user + system) of every runner of the cluster, per answered request, in ms. */
  readonly cpuMsPerRequest: number
}

export interface ClusterResult {
  readonly rows: ReadonlyArray<ClusterRow>
  readonly recovery: RecoveryResult | undefined
  readonly notes: ReadonlyArray<string>
}

/** A runner killed (SIGKILL) while holding pages with many clicks, and how long until all of them answer again. */
export interface RecoveryResult {
  readonly pages: number
  readonly clicks: number
  /** Pages answered by the killed runner before its death (found while loading every page). */
  readonly pagesOnKilled: number
  readonly allAnswerMs: number
  readonly answers503: number
}

const RECOVERY_PAGES = 20_000
const RECOVERY_CLICKS_PER_PAGE = 100

/**
 * `pages` pages of 100 clicks each: 20 clusters on a 5 × 4 lattice (far beyond the default radius), 5 clicks at
 * each centre, in rounds, so each page recovers to exactly 20 clusters.
 */
const recoveryInsertSql = (prefix: string, pages: number) => `
  INSERT INTO clicks (page_uuid, seq, x, y, cluster_idx, request_id, created_at)
  SELECT '${prefix}/' || (g / ${RECOVERY_CLICKS_PER_PAGE}), (g % ${RECOVERY_CLICKS_PER_PAGE}) + 1,
    0.1 + 0.2 * ((g % 20) % 5), 0.125 + 0.25 * ((g % 20) / 5),
    g % 20, NULL, now()
  FROM generate_series(0::bigint, ${pages * RECOVERY_CLICKS_PER_PAGE - 1}::bigint) AS g
`

/** Predicts every page through `url`, 64 at a time, until each has answered 200; how many 503s that took. */
const untilEveryPageAnswers = (url: string, pages: ReadonlyArray<string>) =>
  Effect.promise(async () => {
    let next = 0
    let unavailable = 0
    const started = performance.now()
    await Promise.all(
      Array.from({ length: 64 }, async () => {
        while (next < pages.length) {
          const page = pages[next++]
          while (true) {
            const response = await fetch(`${url}${PREDICT}`, {
              method: "POST",
              headers: { "content-type": "application/json" },
              body: JSON.stringify({ page_uuid: page, coordinates: { x: 0.1, y: 0.125 } }),
            }).catch(() => undefined)
            await response?.text()
            if (response?.status === 200) break
            unavailable++
          }
        }
      }),
    )
    return { allMs: performance.now() - started, unavailable }
  })

/**
 * Recovery after a runner's death: two runners over 20,000 pages of 100 clicks (about half on each), every page
 * loaded, then one runner killed (SIGKILL); the survivor is asked about every page until all answer.
 */
const recoveryScenario = (adminUrl: string) =>
  Effect.gen(function* () {
    const prefix = `recovery-${Date.now().toString(36)}`
    const storage = yield* postgresStorage(adminUrl)
    const a = yield* startRunner(storage.env)
    yield* Console.log(`\ncluster recovery: loading ${RECOVERY_PAGES * RECOVERY_CLICKS_PER_PAGE} clicks`)
    yield* storage.exec(recoveryInsertSql(prefix, RECOVERY_PAGES))
    const b = yield* startRunner(storage.env)
    yield* untilReady(a)
    const pages = Array.from({ length: RECOVERY_PAGES }, (_, p) => `${prefix}/${p}`)
    const before = yield* forwardedCount(a)
    // Every page loaded on its owner (those of B through A, forwarded).
    yield* untilEveryPageAnswers(a.url, pages)
    const pagesOnKilled = (yield* forwardedCount(a)) - before
    yield* Console.log(`  ${pagesOnKilled} pages on the runner to kill; killing it`)
    b.signal("SIGKILL")
    const answered = yield* untilEveryPageAnswers(a.url, pages)
    yield* Console.log(
      `  every page answered ${answered.allMs.toFixed(0)} ms after the kill (${answered.unavailable} 503s)`,
    )
    return {
      pages: RECOVERY_PAGES,
      clicks: RECOVERY_PAGES * RECOVERY_CLICKS_PER_PAGE,
      pagesOnKilled,
      allAnswerMs: answered.allMs,
      answers503: answered.unavailable,
    }
  })

/** A process's CPU time so far (user + system), in ms, from /proc (Linux; clock ticks of 10 ms). */
const cpuMs = (pid: number) =>
  Effect.tryPromise({
    try: () => readFile(`/proc/${pid}/stat`, "utf8"),
    catch: () => new BenchError({ message: `cannot read /proc/${pid}/stat` }),
  }).pipe(
    Effect.map((stat) => {
      // Fields after the command name (which may hold spaces), from field 3 on: utime is 14, stime 15.
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
      return (Number(fields[11]) + Number(fields[12])) * 10
    }),
  )

const totalCpuMs = (runners: ReadonlyArray<Child>) =>
  Effect.map(
    Effect.forEach(runners, (r) => cpuMs(r.pid)),
    (all) => all.reduce((a, b) => a + b, 0),
  )

/** Polls `/readyz` until 200: a runner holds every shard assigned to it. */
const untilReady = (runner: Child) =>
  Effect.gen(function* () {
    const deadline = Date.now() + 120_000
    while (Date.now() < deadline) {
      const ok = yield* Effect.promise(() =>
        fetch(`${runner.url}/readyz`).then(
          (r) => r.ok,
          () => false,
        ),
      )
      if (ok) return
      yield* Effect.sleep("100 millis")
    }
    return yield* new BenchError({
      message: `runner ${runner.url} not ready within 120 s:\n${runner.logs()}`,
    })
  })

const startRunner = (env: Record<string, string>) =>
  Effect.gen(function* () {
    const socket = yield* freePort
    const runner = yield* startService({ ...env, RUNNER_ADDRESS: `127.0.0.1:${socket}` })
    yield* untilReady(runner)
    return runner
  })

const forwardedCount = (runner: Child) =>
  Effect.promise(async () => {
    const text = await (await fetch(`${runner.url}/metrics`)).text()
    const match = /^cluster_messages_forwarded_total\{outcome="ok"\} (\d+)/m.exec(text)
    return Number(match?.[1] ?? 0)
  })

/** The pages of `pages` that `via` forwards (another runner owns them), found by asking it about each. */
const forwardedPages = (via: Child, pages: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const forwarded = new Set<string>()
    for (const page of pages) {
      const before = yield* forwardedCount(via)
      yield* Effect.promise(() =>
        fetch(`${via.url}${PREDICT}`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ page_uuid: page, coordinates: { x: 0.5, y: 0.5 } }),
        }).then((r) => r.text()),
      )
      if ((yield* forwardedCount(via)) > before) forwarded.add(page)
    }
    return forwarded
  })

const pageOf = (body: string): string => {
  const parsed: unknown = JSON.parse(body)
  return typeof parsed === "object" && parsed !== null && "page_uuid" in parsed
    ? String(parsed.page_uuid)
    : ""
}

/**
 * Cluster mode against one process, on the same machine and the same Postgres (a database each): throughput of a
 * runner serving pages it owns (1 runner: every page) against single-process mode; a request forwarded to the
 * owner against one served in place (latency added, CPU per request of the whole cluster); and the aggregate of
 * 1, 2 and 3 runners, each sent an equal share of the connections.
 */
export const clusterScenario = (
  adminUrl: string,
  seconds: number,
  warmup: number,
  connections: number,
): Effect.Effect<ClusterResult, BenchError, Scope.Scope> =>
  Effect.gen(function* () {
    const seed = 7
    const pool = pagesPool(seed)
    const rows: Array<ClusterRow> = []
    const notes: Array<string> = []

    const measure = (
      scenario: string,
      runners: ReadonlyArray<Child>,
      targets: ReadonlyArray<{ readonly url: string; readonly bodies: BodyPool }>,
      path: string,
    ) =>
      Effect.gen(function* () {
        const share = Math.max(1, Math.round(connections / targets.length))
        const cpuBefore = yield* totalCpuMs(runners)
        const all = yield* Effect.forEach(
          targets,
          (t) => runLoad({ url: t.url, path, bodies: t.bodies, connections: share, seconds }),
          { concurrency: "unbounded" },
        )
        const cpu = (yield* totalCpuMs(runners)) - cpuBefore
        const first = all[0]
        if (first === undefined) return
        const requests = all.reduce((n, m) => n + m.requests, 0)
        // One row per load: latency of the first target's load, throughput and counts of all of them.
        const measurement: Measurement = {
          ...first,
          connections: share * targets.length,
          requests,
          rps: all.reduce((n, m) => n + m.rps, 0),
          errors: all.reduce((n, m) => n + m.errors, 0),
          timeouts: all.reduce((n, m) => n + m.timeouts, 0),
          non2xx: all.reduce((n, m) => n + m.non2xx, 0),
        }
        const row = {
          scenario,
          endpoint: path,
          runners: runners.length,
          measurement,
          cpuMsPerRequest: requests > 0 ? cpu / requests : Number.NaN,
        }
        yield* Console.log(
          `  ${scenario} ${path}: ${measurement.rps.toFixed(0)} req/s, p50 ${ms(first.latencyMs.p50)} ms, ` +
            `CPU ${fixed(row.cpuMsPerRequest, 3)} ms/request, non-2xx ${measurement.non2xx}, errors ${measurement.errors}`,
        )
        rows.push(row)
      })

    const warm = (url: string, bodies: BodyPool) =>
      Effect.gen(function* () {
        yield* runLoad({ url, path: PREDICT, bodies: pagesTouchPool(seed), connections: 32, amount: 1000 })
        if (warmup > 0) {
          yield* runLoad({ url, path: SAVE, bodies, connections: 32, seconds: Math.max(1, warmup) })
          yield* runLoad({ url, path: PREDICT, bodies, connections: 32, seconds: warmup })
        }
      })

    yield* Console.log("\ncluster: single process on Postgres")
    yield* Effect.scoped(
      Effect.gen(function* () {
        const storage = yield* postgresStorage(adminUrl)
        const server = yield* startService(storage.env)
        yield* warm(server.url, pool)
        yield* measure("one process", [server], [{ url: server.url, bodies: pool }], PREDICT)
        yield* measure("one process", [server], [{ url: server.url, bodies: pool }], SAVE)
      }),
    )

    yield* Console.log("\ncluster: runners on Postgres")
    const storage = yield* postgresStorage(adminUrl)
    const a = yield* startRunner(storage.env)
    yield* warm(a.url, pool)
    // One runner owns every shard: every page is its own, served by the same fast path as one process.
    yield* measure("1 runner, pages local", [a], [{ url: a.url, bodies: pool }], PREDICT)
    yield* measure("1 runner, pages local", [a], [{ url: a.url, bodies: pool }], SAVE)

    const b = yield* startRunner(storage.env)
    yield* untilReady(a)
    const pages = [...new Set(pool.bodies.map(pageOf))]
    const remote = yield* forwardedPages(a, pages)
    const remotePool = new BodyPool(pool.bodies.filter((body) => remote.has(pageOf(body))))
    const localPool = new BodyPool(pool.bodies.filter((body) => !remote.has(pageOf(body))))
    notes.push(`With 2 runners, ${remote.size} of ${pages.length} pages are owned by the second runner.`)
    yield* runLoad({
      url: a.url,
      path: SAVE,
      bodies: remotePool,
      connections: 32,
      seconds: Math.max(1, warmup),
    })
    yield* measure("2 runners, via A, pages local to A", [a, b], [{ url: a.url, bodies: localPool }], PREDICT)
    yield* measure(
      "2 runners, via A, pages of B (forwarded)",
      [a, b],
      [{ url: a.url, bodies: remotePool }],
      PREDICT,
    )
    yield* measure("2 runners, via A, pages local to A", [a, b], [{ url: a.url, bodies: localPool }], SAVE)
    yield* measure(
      "2 runners, via A, pages of B (forwarded)",
      [a, b],
      [{ url: a.url, bodies: remotePool }],
      SAVE,
    )
    const spread = (runners: ReadonlyArray<Child>) => runners.map((r) => ({ url: r.url, bodies: pool }))
    yield* measure("2 runners, all pages, both sent to", [a, b], spread([a, b]), PREDICT)
    yield* measure("2 runners, all pages, both sent to", [a, b], spread([a, b]), SAVE)

    const c = yield* startRunner(storage.env)
    yield* Effect.all([untilReady(a), untilReady(b)])
    yield* measure("3 runners, all pages, all sent to", [a, b, c], spread([a, b, c]), PREDICT)
    yield* measure("3 runners, all pages, all sent to", [a, b, c], spread([a, b, c]), SAVE)
    yield* Effect.all([a.stop, b.stop, c.stop], { concurrency: "unbounded" })

    const recovery = yield* Effect.scoped(recoveryScenario(adminUrl))
    return { rows, recovery, notes }
  })

/** The scenario's section of the report. */
export const clusterMarkdown = (result: ClusterResult): ReadonlyArray<string> => {
  const base = (endpoint: string) =>
    result.rows.find((r) => r.scenario === "one process" && r.endpoint === endpoint)?.measurement.rps ??
    Number.NaN
  return [
    "",
    "### Cluster mode: runners against one process (Postgres, same run)",
    "",
    "CPU is the user + system time of every process of the cluster (from /proc, 10 ms ticks) over the answered " +
      "requests; the load generator runs on the same two cores. A multi-target row sums the req/s of concurrent " +
      "loads, one per runner, and shows the latency of the first.",
    "",
    table(
      ["scenario", "endpoint", ...measurementHeaders, "CPU ms/request", "req/s ÷ one process"],
      result.rows.map((r) => [
        r.scenario,
        r.endpoint,
        ...measurementCells(r.measurement),
        fixed(r.cpuMsPerRequest, 3),
        fixed(ratio(r.measurement.rps, base(r.endpoint)), 2),
      ]),
    ),
    ...(result.notes.length > 0 ? ["", ...result.notes.map((n) => `- ${n}`)] : []),
    ...(result.recovery === undefined
      ? []
      : [
          "",
          `Recovery after a runner's death: two runners, ${result.recovery.pages.toLocaleString("en")} pages of ` +
            `${(result.recovery.clicks / result.recovery.pages).toFixed(0)} clicks (no snapshots), every page loaded, ` +
            `${result.recovery.pagesOnKilled.toLocaleString("en")} of them on the runner then killed (SIGKILL). ` +
            `Asking the survivor about every page right after the kill, 64 at a time: all answered after ` +
            `${result.recovery.allAnswerMs.toFixed(0)} ms ` +
            `(${result.recovery.answers503} answers 503 meanwhile, each retried).`,
        ]),
  ]
}
