import { createWriteStream } from "node:fs"
import { stat } from "node:fs/promises"
import { Readable } from "node:stream"
import { pipeline } from "node:stream/promises"
import { Command, Options } from "@effect/cli"
import { NodeContext, NodeRuntime } from "@effect/platform-node"
import { stringify } from "csv-stringify"
import { Clock, Console, Data, Effect, Option } from "effect"
import { generateClicks } from "./ClickGenerator.ts"
import { exitOnError, positiveInteger } from "./CliOptions.ts"

class WriteError extends Data.TaggedError("WriteError")<{
  readonly message: string
  readonly cause: unknown
}> {}

const pages = positiveInteger("pages", 1000, "number of pages")
const clusters = positiveInteger("clusters", 5, "cluster centres per page")
const clicks = positiveInteger("clicks", 100_000, "clicks in the file")
const noise = Options.float("noise").pipe(
  Options.filterMap((n) => (n >= 0 ? Option.some(n) : Option.none()), "--noise must not be negative"),
  Options.withDefault(0.02),
  Options.withDescription("standard deviation of the gaussian noise around a centre, in page widths"),
)
const out = Options.file("out").pipe(Options.withDescription("the CSV file to write"))
const seed = Options.integer("seed").pipe(
  Options.withDefault(1),
  Options.withDescription("same seed, same clicks (and page ids)"),
)
const rate = positiveInteger("rate", 100, "mean clicks per second, for the timestamps")
const start = Options.date("start").pipe(
  Options.optional,
  Options.withDescription("timestamp of the first click (default: so that the last one is about now)"),
)

const command = Command.make(
  "gen-clicks",
  { pages, clusters, clicks, noise, out, seed, rate, start },
  (options) =>
    Effect.gen(function* () {
      const began = yield* Clock.currentTimeMillis
      const first = Option.match(options.start, {
        onNone: () => began - (options.clicks / options.rate) * 1000,
        onSome: (date) => date.getTime(),
      })
      const rows = generateClicks({ ...options, start: first })
      // A pipeline writes as fast as the file takes it: the generator is pulled only when the writer drains.
      yield* Effect.tryPromise({
        try: () =>
          pipeline(
            Readable.from(rows),
            stringify({ header: true, columns: ["page_uuid", "x", "y", "timestamp"] }),
            createWriteStream(options.out),
          ),
        catch: (cause) => new WriteError({ message: `cannot write ${options.out}`, cause }),
      })
      const size = yield* Effect.promise(() => stat(options.out)).pipe(Effect.map((s) => s.size))
      const seconds = ((yield* Clock.currentTimeMillis) - began) / 1000
      yield* Console.log(
        `wrote ${options.clicks} clicks on ${options.pages} pages × ${options.clusters} clusters ` +
          `(noise ${options.noise}) to ${options.out}: ${(size / 1e6).toFixed(1)} MB in ` +
          `${seconds.toFixed(1)} s`,
      )
    }),
).pipe(
  Command.withDescription(
    "Writes a realistic click file: clustered clicks of many pages, interleaved in time.",
  ),
)

Command.run(command, { name: "gen-clicks", version: "0.1.0" })(process.argv).pipe(
  exitOnError,
  Effect.provide(NodeContext.layer),
  NodeRuntime.runMain,
)
