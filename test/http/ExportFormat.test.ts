import { describe, expect, it } from "@effect/vitest"
import { parse } from "csv-parse/sync"
import { Chunk, Effect, Stream } from "effect"
import { type ExportFormat, encodeRows, exportColumns } from "../../src/http/ExportFormat.ts"
import type { ExportRow } from "../../src/persistence/ClusterExport.ts"

const row = (page: string, clusterIdx: number): ExportRow => ({
  page_uuid: page,
  cluster_idx: clusterIdx,
  centroid_x: 0.1 + 0.2,
  centroid_y: 1e-7,
  click_count: 3,
  first_click_at: "2026-11-25T12:00:00.000Z",
  last_click_at: "2026-11-25T12:00:05.000Z",
  seq: 7,
})

const rows = [row("a", 0), row('b,"quoted"\nline', 0), row("b", 1)]

/** The rows in two stream chunks, as the database reads deliver them. */
const source = Stream.fromChunks(
  Chunk.unsafeFromArray(rows.slice(0, 2)),
  Chunk.unsafeFromArray(rows.slice(2)),
)

const encode = (format: ExportFormat, stream: Stream.Stream<ExportRow>) =>
  stream.pipe(encodeRows(format), Stream.decodeText(), Stream.mkString)

describe("ExportFormat", () => {
  it.effect("NDJSON: one JSON object per line, keys in column order, numbers as JSON numbers", () =>
    Effect.gen(function* () {
      const text = yield* encode("ndjson", source)
      expect(text.endsWith("\n")).toBe(true)
      const lines = text.slice(0, -1).split("\n")
      expect(lines.map((l) => JSON.parse(l))).toEqual(rows)
      for (const line of lines) expect(Object.keys(JSON.parse(line))).toEqual(exportColumns)
      expect(yield* encode("ndjson", Stream.empty)).toBe("")
    }),
  )

  it.effect("CSV: a header line, then RFC 4180 quoting, read back to the same values", () =>
    Effect.gen(function* () {
      const text = yield* encode("csv", source)
      expect(text.split("\n")[0]).toBe(exportColumns.join(","))
      expect(text.split("\n")[1]).toBe(
        "a,0,0.30000000000000004,1e-7,3,2026-11-25T12:00:00.000Z,2026-11-25T12:00:05.000Z,7",
      )
      const records: Array<Record<string, string>> = parse(text, { columns: true })
      expect(
        records.map((r) => ({
          ...r,
          cluster_idx: Number(r.cluster_idx),
          centroid_x: Number(r.centroid_x),
          centroid_y: Number(r.centroid_y),
          click_count: Number(r.click_count),
          seq: Number(r.seq),
        })),
      ).toEqual(rows)
      // An export with no rows is still a CSV file with its header.
      expect(yield* encode("csv", Stream.empty)).toBe(`${exportColumns.join(",")}\n`)
    }),
  )
})
