import { stringify } from "csv-stringify/sync"
import { Chunk, Schema, Stream } from "effect"
import type { ExportRow } from "../persistence/ClusterExport.ts"

/** The file formats of a cluster export. */
export const ExportFormat = Schema.Literal("ndjson", "csv")
export type ExportFormat = typeof ExportFormat.Type

export const exportColumns: ReadonlyArray<keyof ExportRow> = [
  "page_uuid",
  "cluster_idx",
  "centroid_x",
  "centroid_y",
  "click_count",
  "first_click_at",
  "last_click_at",
  "seq",
]

export const contentType: Record<ExportFormat, string> = {
  ndjson: "application/x-ndjson",
  csv: "text/csv; charset=utf-8",
}

const utf8 = new TextEncoder()

const ndjson = (rows: Chunk.Chunk<ExportRow>) => {
  let text = ""
  for (const row of rows) text += `${JSON.stringify(row)}\n`
  return text
}

const csvOptions = { columns: exportColumns, eol: "\n" }

/**
 * The rows as the bytes of one export file. Each chunk of rows becomes one buffer (one write), so the cost per
 * row stays low and memory is bounded by the largest chunk the source emits, never by the whole export.
 */
export const encodeRows =
  (format: ExportFormat) =>
  <E, R>(rows: Stream.Stream<ExportRow, E, R>): Stream.Stream<Uint8Array, E, R> => {
    const body = rows.pipe(
      Stream.mapChunks((chunk) =>
        Chunk.isEmpty(chunk)
          ? Chunk.empty()
          : Chunk.of(
              utf8.encode(format === "ndjson" ? ndjson(chunk) : stringify(Chunk.toArray(chunk), csvOptions)),
            ),
      ),
    )
    // The header goes first even when there are no rows, so an empty export is still a valid CSV file.
    return format === "csv"
      ? Stream.concat(Stream.succeed(utf8.encode(stringify([], { ...csvOptions, header: true }))), body)
      : body
  }
