import { Command, Options, ValidationError } from "@effect/cli"
import { FileSystem, Path } from "@effect/platform"
import { NodeContext, NodeRuntime } from "@effect/platform-node"
import cliProgress from "cli-progress"
import { Cause, Chunk, Clock, Console, Data, Effect, Layer, Option, Stream } from "effect"
import { AppConfig } from "../Config.ts"
import { ExportFormat, encodeRows } from "../http/ExportFormat.ts"
import type { ExportRow } from "../persistence/ClusterExport.ts"
import { ClusterExport } from "../persistence/ClusterExport.ts"
import { EmbeddedPostgresError } from "../persistence/EmbeddedPostgres.ts"
import { SqlLive } from "../persistence/Sql.ts"

const embeddedCaveat =
  "Without DATABASE_URL it opens the embedded database under DATA_DIR (default ./data) itself: stop the server " +
  "first. PGlite is single-process and does not notice a second process, so reading it while the server runs " +
  "can read torn data or damage the database."

class ExportFailed extends Data.TaggedError("ExportFailed")<{ readonly message: string }> {}

const format = Options.choice("format", ExportFormat.literals).pipe(
  Options.withDescription("csv (with a header line) or ndjson (one JSON object per line)"),
)
const out = Options.file("out").pipe(
  Options.withDescription("the file to write; it appears only once the export is complete"),
)
const page = Options.text("page").pipe(
  Options.optional,
  Options.withDescription("export only this page_uuid"),
)

/**
 * For the embedded database, refuses a DATA_DIR without a database (opening it would create an empty one and
 * export nothing) and reminds that the server must be down.
 */
const checkEmbedded = Effect.gen(function* () {
  const config = yield* AppConfig
  if (Option.isSome(config.databaseUrl)) return
  const fs = yield* FileSystem.FileSystem
  const path = yield* Path.Path
  if (!(yield* fs.exists(path.join(config.dataDir, "PG_VERSION")))) {
    return yield* new ExportFailed({
      message: `no embedded database in ${config.dataDir}: set DATA_DIR to the server's, or DATABASE_URL`,
    })
  }
  yield* Console.error(`reading the embedded database in ${config.dataDir}. ${embeddedCaveat}`)
})

/** The database of the configured storage mode, migrated, as the server opens it. */
const StorageLive = Layer.unwrapEffect(Effect.as(checkEmbedded, SqlLive)).pipe(
  Layer.catchAll((error) =>
    Layer.fail(
      error instanceof EmbeddedPostgresError
        ? new ExportFailed({
            message: `${error.message}; is the server still running on it? Stop it first (PGlite is single-process) or set DATABASE_URL`,
          })
        : error,
    ),
  ),
)

/**
 * Counts exported pages and rows, and shows them until the scope closes: a bar on a terminal, a plain line
 * every few seconds otherwise (logs of CI jobs and pipes do not render a redrawn bar).
 */
const makeProgress = (totalPages: number) =>
  Effect.gen(function* () {
    let pages = 0
    let rows = 0
    let lastPage: string | undefined
    const count = (chunk: Chunk.Chunk<ExportRow>) => {
      for (const row of chunk) {
        if (row.page_uuid !== lastPage) {
          pages++
          lastPage = row.page_uuid
        }
      }
      rows += Chunk.size(chunk)
    }
    const line = () => `export: ${pages}/${totalPages} pages, ${rows} rows`
    if (process.stderr.isTTY) {
      const bar = new cliProgress.SingleBar(
        {
          format: "{bar} {percentage}% | {value}/{total} pages | {rows} rows | ETA {eta_formatted}",
          stream: process.stderr,
          hideCursor: true,
        },
        cliProgress.Presets.shades_classic,
      )
      yield* Effect.acquireRelease(
        Effect.sync(() => bar.start(Math.max(totalPages, 1), 0, { rows })),
        () => Effect.sync(() => bar.stop()),
      )
      return {
        advance: (chunk: Chunk.Chunk<ExportRow>) =>
          Effect.sync(() => {
            count(chunk)
            bar.update(pages, { rows })
          }),
        summary: () => ({ pages, rows }),
      }
    }
    let printedAt = yield* Clock.currentTimeMillis
    return {
      advance: (chunk: Chunk.Chunk<ExportRow>) =>
        Effect.flatMap(Clock.currentTimeMillis, (now) => {
          count(chunk)
          if (now - printedAt < 2000) return Effect.void
          printedAt = now
          return Console.error(line())
        }),
      summary: () => ({ pages, rows }),
    }
  })

const command = Command.make("export", { format, out, page }, (options) =>
  Effect.gen(function* () {
    const clusters = yield* ClusterExport
    const fs = yield* FileSystem.FileSystem
    const filter = { page: Option.getOrUndefined(options.page) }
    const started = yield* Clock.currentTimeMillis
    const totalPages = yield* clusters.countPages(filter)
    // Written beside the target and renamed at the end, so a failed export never leaves a file that looks whole.
    const partial = `${options.out}.partial`
    const { pages, rows } = yield* Effect.scoped(
      Effect.gen(function* () {
        const progress = yield* makeProgress(totalPages)
        const source = yield* clusters.rows(filter)
        yield* source.pipe(
          Stream.mapChunksEffect((chunk) => Effect.as(progress.advance(chunk), chunk)),
          encodeRows(options.format),
          Stream.run(fs.sink(partial)),
        )
        return progress.summary()
      }),
    ).pipe(Effect.onError(() => fs.remove(partial).pipe(Effect.ignore)))
    yield* fs.rename(partial, options.out)
    const seconds = (((yield* Clock.currentTimeMillis) - started) / 1000).toFixed(1)
    yield* Console.error(`exported ${rows} rows of ${pages} pages to ${options.out} in ${seconds} s`)
  }),
).pipe(
  Command.withDescription(
    "Writes one row per cluster of every page as of now (page_uuid, cluster_idx, centroid_x, centroid_y, " +
      "click_count, first_click_at, last_click_at, seq: the page's last click included), rebuilt from each " +
      "page's latest snapshot and its clicks after it: the same rows as GET /snapshots/export, straight from " +
      `the database at DATABASE_URL. ${embeddedCaveat}`,
  ),
  Command.provide(ClusterExport.Default.pipe(Layer.provide(StorageLive), Layer.provide(AppConfig.Default))),
)

const cli = Command.run(command, { name: "export", version: "0.1.0" })

/** An error and its causes in one line, e.g. a failed migration with the database's reason. */
const describe = (error: unknown) => {
  const parts: Array<string> = []
  for (let e = error; e instanceof Error; e = e.cause) parts.push(e.message)
  return parts.length === 0 ? String(error) : parts.join(": ")
}

cli(process.argv).pipe(
  // Usage errors are printed by the CLI already; anything else (some database errors arrive as defects) gets
  // one line instead of a stack trace. An interruption (Ctrl-C) is left to the runtime.
  Effect.catchAllCause((cause) => {
    if (Cause.isInterruptedOnly(cause)) return Effect.failCause(cause)
    const error = Cause.squash(cause)
    return Effect.zipRight(
      ValidationError.isValidationError(error)
        ? Effect.void
        : Console.error(`export failed: ${describe(error)}`),
      Effect.sync(() => {
        process.exitCode = 1
      }),
    )
  }),
  Effect.provide(NodeContext.layer),
  NodeRuntime.runMain,
)
