import { Args, Command, Options } from "@effect/cli"
import { FileSystem } from "@effect/platform"
import { NodeContext, NodeRuntime } from "@effect/platform-node"
import cliProgress from "cli-progress"
import { Console, Duration, Effect, Option } from "effect"
import { openClickFile } from "./ClickCsv.ts"
import { ClickReplayer, type ReplayReport } from "./ClickReplayer.ts"
import { exitOnError, positiveInteger } from "./CliOptions.ts"

const file = Args.file({ name: "FILE.csv", exists: "yes" }).pipe(
  Args.withDescription("clicks as page_uuid,x,y[,timestamp], with or without a header line"),
)
const url = Options.text("url").pipe(
  Options.withDefault("http://127.0.0.1:8000"),
  Options.withDescription("the service's base URL"),
)
const concurrency = positiveInteger("concurrency", 32, "requests in flight at most, across pages")
const json = Options.file("json").pipe(
  Options.optional,
  Options.withDescription("also write the report to this file as JSON"),
)
const endpoint = Options.text("endpoint").pipe(
  Options.withDefault("/save_click_and_predict_cluster"),
  Options.withDescription("the path each click is posted to"),
)
const readAhead = positiveInteger(
  "read-ahead",
  10_000,
  "rows read ahead of the requests at most (memory bound)",
)
const timeout = positiveInteger(
  "timeout",
  30,
  "seconds before a request without an answer counts as an error",
)

const round = (n: number, digits = 1) => Number(n.toFixed(digits))

/** The report as the terminal shows it. */
const formatReport = (file: string, report: ReplayReport) => {
  const errors = Object.entries(report.errorsByStatus)
    .map(([status, n]) => `${status}: ${n}`)
    .join(", ")
  const lines = [
    `replayed ${file} to ${report.url} (concurrency ${report.concurrency})`,
    `  rows read ${report.rows}, skipped ${report.skipped}, sent ${report.sent}, ok ${report.ok}, errors ${report.errors}${errors === "" ? "" : ` (${errors})`}`,
    `  elapsed ${round(report.elapsedSeconds, 2)} s, throughput ${round(report.throughput)} req/s`,
  ]
  for (const example of report.skippedExamples)
    lines.push(`  skipped record ${example.record}: ${example.reason}`)
  for (const [path, e] of Object.entries(report.endpoints)) {
    const l = e.latencyMs
    lines.push(
      `  ${path}: sent ${e.sent}, ok ${e.ok}; latency ms p50 ${round(l.p50, 2)}, p90 ${round(l.p90, 2)}, p99 ${round(l.p99, 2)}, max ${round(l.max, 2)}, mean ${round(l.mean, 2)}`,
    )
  }
  return lines.join("\n")
}

/**
 * Shows how far the replay is until the scope closes: a bar over the file's bytes on a terminal, a plain line
 * every few seconds otherwise (logs of CI jobs and pipes do not render a redrawn bar).
 */
const showProgress = (replayer: ClickReplayer, size: number, bytesRead: () => number) => {
  // The reader runs ahead of the answers by up to --read-ahead rows: count the part of the file read so far only
  // in the proportion of its rows that are settled.
  const done = () => (replayer.rows === 0 ? 0 : bytesRead() * (replayer.settled / replayer.rows))
  const counters = () => ({
    sent: replayer.sent,
    errors: replayer.errors,
    rate: Math.round(replayer.answered / Math.max(replayer.elapsedSeconds(), 1e-3)),
  })
  if (process.stderr.isTTY) {
    const bar = new cliProgress.SingleBar(
      {
        format: "{bar} {percentage}% | {sent} sent | {rate} req/s | {errors} errors | ETA {eta_formatted}",
        stream: process.stderr,
        hideCursor: true,
      },
      cliProgress.Presets.shades_classic,
    )
    return Effect.acquireRelease(
      Effect.sync(() => {
        bar.start(Math.max(size, 1), 0, counters())
        return setInterval(() => bar.update(done(), counters()), 200)
      }),
      (timer) =>
        Effect.sync(() => {
          clearInterval(timer)
          bar.update(done(), counters())
          bar.stop()
        }),
    )
  }
  return Effect.acquireRelease(
    Effect.sync(() =>
      setInterval(() => {
        const { sent, errors, rate } = counters()
        const percent = size > 0 ? Math.round((100 * done()) / size) : 100
        process.stderr.write(`replay: ${percent}% done, ${sent} sent, ${rate} req/s, ${errors} errors\n`)
      }, 2000),
    ),
    (timer) => Effect.sync(() => clearInterval(timer)),
  )
}

const command = Command.make(
  "replay",
  { file, url, concurrency, json, endpoint, readAhead, timeout },
  (options) =>
    Effect.gen(function* () {
      const clicks = yield* openClickFile(options.file)
      const replayer = new ClickReplayer({
        url: options.url.replace(/\/+$/, ""),
        endpoint: options.endpoint,
        concurrency: options.concurrency,
        readAhead: options.readAhead,
        timeout: Duration.seconds(options.timeout),
      })
      const finish = (report: ReplayReport) =>
        Effect.gen(function* () {
          yield* Console.log(formatReport(options.file, report))
          if (Option.isSome(options.json)) {
            const path = options.json.value
            const fs = yield* FileSystem.FileSystem
            yield* fs.writeFileString(path, `${JSON.stringify(report, null, 2)}\n`)
            yield* Console.log(`  report written to ${path}`)
          }
        })
      const report = yield* Effect.scoped(
        Effect.zipRight(showProgress(replayer, clicks.size, clicks.bytesRead), replayer.run(clicks.rows)),
      ).pipe(
        // Ctrl-C still prints what was measured so far.
        Effect.onInterrupt(() => finish(replayer.report()).pipe(Effect.orDie)),
      )
      yield* finish(report)
    }),
).pipe(
  Command.withDescription("Replays a click file against the service, keeping each page's clicks in order."),
)

const cli = Command.run(command, { name: "replay", version: "0.1.0" })

cli(process.argv).pipe(exitOnError, Effect.provide(NodeContext.layer), NodeRuntime.runMain)
