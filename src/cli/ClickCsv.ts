import { createReadStream } from "node:fs"
import { stat } from "node:fs/promises"
import { parse } from "csv-parse"
import { Data, Effect, identity, Option, Stream } from "effect"

/** One click of a click file, in the order of the file. */
export interface ClickRow {
  /** 1-based number of the record in the file, the header not counted. */
  readonly record: number
  readonly page: string
  readonly x: number
  readonly y: number
  /** As written in the file; the replay keeps the order of the rows, not their timing. */
  readonly timestamp: string | undefined
}

/** A record that is not a click (too few columns, a coordinate that is not a number): skipped and counted. */
export interface MalformedRow {
  readonly _tag: "Malformed"
  readonly record: number
  readonly reason: string
}

export class ClickFileError extends Data.TaggedError("ClickFileError")<{
  readonly message: string
  readonly cause: unknown
}> {}

/** Where each field is in a record. */
interface Layout {
  readonly page: number
  readonly x: number
  readonly y: number
  readonly timestamp: number
}

/** Files without a header list `page_uuid,x,y[,timestamp]` in that order. */
const positional: Layout = { page: 0, x: 1, y: 2, timestamp: 3 }

const isStringArray = (value: unknown): value is ReadonlyArray<string> =>
  Array.isArray(value) && value.every((cell) => typeof cell === "string")

/**
 * The layout a header names, or none when the first record is data. A header is recognised by its `page_uuid`
 * column, so a file may also order its columns differently or carry extra ones.
 */
export const headerLayout = (record: ReadonlyArray<string>): Layout | undefined => {
  const names = record.map((cell) => cell.trim().toLowerCase())
  const page = names.indexOf("page_uuid")
  if (page === -1) return undefined
  const find = (name: string, fallback: number) => {
    const i = names.indexOf(name)
    return i === -1 ? fallback : i
  }
  return { page, x: find("x", -1), y: find("y", -1), timestamp: find("timestamp", -1) }
}

const coordinate = (cell: string | undefined): number =>
  cell === undefined || cell === "" ? Number.NaN : Number(cell)

const malformed = (record: number, reason: string): MalformedRow => ({ _tag: "Malformed", record, reason })

/** A record as a click, or why it is not one. */
export const toClickRow = (
  fields: ReadonlyArray<string>,
  layout: Layout,
  record: number,
): ClickRow | MalformedRow => {
  const page = fields[layout.page]
  if (page === undefined || page === "") return malformed(record, "no page_uuid")
  const x = coordinate(fields[layout.x])
  const y = coordinate(fields[layout.y])
  // Numbers outside [0, 1] are sent as they are (the service answers 422): a replay does not clean the data.
  if (!Number.isFinite(x) || !Number.isFinite(y)) return malformed(record, "x or y is not a number")
  const timestamp = layout.timestamp === -1 ? undefined : fields[layout.timestamp]
  return { record, page, x, y, timestamp: timestamp === "" ? undefined : timestamp }
}

/** A click file being read: its rows as a stream, and how far the reading is, for progress. */
export interface ClickFile {
  readonly size: number
  readonly bytesRead: () => number
  readonly rows: Stream.Stream<ClickRow | MalformedRow, ClickFileError>
}

/**
 * Opens a click file (`page_uuid,x,y[,timestamp]`, with or without a header) and streams its rows. The file is
 * read as the stream is pulled, so memory stays constant whatever the file's size.
 */
export const openClickFile = Effect.fn("ClickCsv.openClickFile")(function* (path: string) {
  const size = yield* Effect.tryPromise({
    try: () => stat(path),
    catch: (cause) => new ClickFileError({ message: `cannot read ${path}`, cause }),
  }).pipe(Effect.map((s) => s.size))
  let input: ReturnType<typeof createReadStream> | undefined
  const rows = Stream.unwrapScoped(
    Effect.gen(function* () {
      const file = yield* Effect.acquireRelease(
        Effect.sync(() => createReadStream(path)),
        (s) => Effect.sync(() => s.destroy()),
      )
      input = file
      const parser = parse({ skip_empty_lines: true, relax_column_count: true, trim: true, bom: true })
      // `pipe` does not pass the source's errors on: forward them so the stream fails instead of hanging.
      file.on("error", (error) => parser.destroy(error))
      file.pipe(parser)
      yield* Effect.addFinalizer(() => Effect.sync(() => parser.destroy()))
      let layout: Layout | undefined
      let record = 0
      return Stream.fromAsyncIterable<unknown, ClickFileError>(
        parser,
        (cause) => new ClickFileError({ message: `cannot parse ${path} as CSV`, cause }),
      ).pipe(
        Stream.mapEffect((fields): Effect.Effect<Option.Option<ClickRow | MalformedRow>, ClickFileError> => {
          if (!isStringArray(fields)) return Effect.succeed(Option.some(malformed(++record, "not a record")))
          if (layout === undefined) {
            const header = headerLayout(fields)
            if (header === undefined) layout = positional
            else if (header.x === -1 || header.y === -1)
              return new ClickFileError({
                message: `the header of ${path} has no x or no y column`,
                cause: fields,
              })
            else {
              layout = header
              return Effect.succeed(Option.none())
            }
          }
          return Effect.succeed(Option.some(toClickRow(fields, layout, ++record)))
        }),
        Stream.filterMap(identity),
      )
    }),
  )
  const file: ClickFile = { size, bytesRead: () => input?.bytesRead ?? 0, rows }
  return file
})
