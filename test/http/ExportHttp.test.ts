import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { parse } from "csv-parse/sync"
import { Schema } from "effect"
import { runId } from "../support/Cases.ts"
import { ServerProcess } from "../support/ServerProcess.ts"
import { type StorageMode, storageModes } from "../support/StorageModes.ts"

/** An exported row exactly: no field missing, none extra, each of its type. */
const Row = Schema.Struct({
  page_uuid: Schema.String,
  cluster_idx: Schema.Int,
  centroid_x: Schema.Number,
  centroid_y: Schema.Number,
  click_count: Schema.Int,
  first_click_at: Schema.String,
  last_click_at: Schema.String,
  snapshot_seq: Schema.Int,
})
type Row = typeof Row.Type

/** The same row as a CSV record (every field a string), in the same column order. */
const CsvRow = Schema.Struct({
  ...Row.fields,
  cluster_idx: Schema.NumberFromString,
  centroid_x: Schema.NumberFromString,
  centroid_y: Schema.NumberFromString,
  click_count: Schema.NumberFromString,
  snapshot_seq: Schema.NumberFromString,
})

const exact = { onExcessProperty: "error" } as const
const decodeRow = Schema.decodeUnknownSync(Row, exact)
const decodeCsvRows = Schema.decodeUnknownSync(Schema.Array(CsvRow), exact)
const decodeAnswer = Schema.decodeUnknownSync(Schema.Struct({ cluster_idx: Schema.Int }))
const decodeError = Schema.decodeUnknownSync(
  Schema.Struct({
    _tag: Schema.String,
    message: Schema.String,
    issues: Schema.optional(Schema.Array(Schema.Struct({ path: Schema.String }))),
  }),
)
const decodeOpenApi = Schema.decodeUnknownSync(
  Schema.Struct({
    paths: Schema.Record({
      key: Schema.String,
      value: Schema.Struct({
        get: Schema.optional(
          Schema.Struct({
            parameters: Schema.Array(Schema.Struct({ name: Schema.String })),
            security: Schema.Unknown,
          }),
        ),
      }),
    }),
  }),
)

/**
 * This run's pages: the database may hold other runs' pages (with DATABASE_URL set, ServerProcess passes it on to
 * the "embedded" server too), so every check looks at these only.
 */
const run = runId()
const pageA = `${run}/page-a`
const pageB = `${run}/page-b`
const pageC = `${run}/page-c,with comma`
const ours = (rows: ReadonlyArray<Row>) => rows.filter((r) => r.page_uuid.startsWith(`${run}/`))

/** Clicks per page; the pages' clusters are whatever the saves answer. */
const clicks: ReadonlyArray<readonly [string, number, number]> = [
  [pageB, 0.1, 0.1],
  [pageA, 0.5, 0.5],
  [pageB, 0.11, 0.12],
  [pageB, 0.9, 0.9],
  [pageA, 0.52, 0.49],
  [pageB, 0.12, 0.1],
  [pageC, 0.3, 0.7],
  [pageB, 0.88, 0.91],
]

const saveCount = (page: string) => clicks.filter(([p]) => p === page).length

const save = async (url: string, page: string, x: number, y: number) => {
  const response = await fetch(`${url}/save_click_and_predict_cluster`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ page_uuid: page, coordinates: { x, y } }),
  })
  expect(response.status).toBe(200)
  return decodeAnswer(await response.json()).cluster_idx
}

const exportText = async (url: string, query: string, headers: Record<string, string> = {}) => {
  const response = await fetch(`${url}/snapshots/export?${query}`, { headers })
  return { status: response.status, type: response.headers.get("content-type"), text: await response.text() }
}

const ndjsonRows = (text: string): ReadonlyArray<Row> =>
  text === ""
    ? []
    : text
        .trimEnd()
        .split("\n")
        .map((line) => decodeRow(JSON.parse(line)))

const csvRows = (text: string): ReadonlyArray<Row> => decodeCsvRows(parse(text, { columns: true }))

describe.each(storageModes())("snapshot export over HTTP, $name storage", ({ make }) => {
  let storage: StorageMode
  let server: ServerProcess
  /** Per page and cluster: the points the saves put in it. */
  const members = new Map<string, Map<number, Array<readonly [number, number]>>>()
  let exported: ReadonlyArray<Row> = []
  let savedFrom = 0
  let savedTo = 0

  beforeAll(async () => {
    storage = await make()
    // Every save is followed by a snapshot, so the export soon covers all of them.
    server = await ServerProcess.start({ ...storage.env, SNAPSHOT_EVERY: "1" })
  })
  afterAll(async () => {
    await server?.stop()
    await storage?.dispose()
  })

  it("exports, per page, the clusters the saves answered, once their snapshots are written", async () => {
    savedFrom = Date.now()
    for (const [page, x, y] of clicks) {
      const cluster = await save(server.url, page, x, y)
      const clusters = members.get(page) ?? new Map<number, Array<readonly [number, number]>>()
      clusters.set(cluster, [...(clusters.get(cluster) ?? []), [x, y]])
      members.set(page, clusters)
    }
    savedTo = Date.now()

    // Snapshots are written after the answers, off the request path: wait until each page's covers all its saves.
    const deadline = Date.now() + 30_000
    for (;;) {
      const { status, type, text } = await exportText(server.url, "format=ndjson")
      expect(status).toBe(200)
      expect(type).toBe("application/x-ndjson")
      exported = ours(ndjsonRows(text))
      const done = [...members.keys()].every((page) =>
        exported.some((r) => r.page_uuid === page && r.snapshot_seq === saveCount(page)),
      )
      if (done) break
      if (Date.now() > deadline) throw new Error(`snapshots did not catch up: ${text}`)
      await new Promise((r) => setTimeout(r, 200))
    }

    const expected = [...members.keys()].sort().flatMap((page) =>
      [...(members.get(page)?.entries() ?? [])]
        .sort(([a], [b]) => a - b)
        .map(([cluster, points]) => ({
          page_uuid: page,
          cluster_idx: cluster,
          centroid_x: points.reduce((s, [x]) => s + x, 0) / points.length,
          centroid_y: points.reduce((s, [, y]) => s + y, 0) / points.length,
          click_count: points.length,
          snapshot_seq: saveCount(page),
        })),
    )
    expect(exported.map((r) => r.page_uuid)).toEqual(expected.map((r) => r.page_uuid))
    for (const [i, row] of exported.entries()) {
      const want = expected[i]
      expect(row).toMatchObject({ ...want, centroid_x: expect.any(Number), centroid_y: expect.any(Number) })
      expect(row.centroid_x).toBeCloseTo(want?.centroid_x ?? Number.NaN, 12)
      expect(row.centroid_y).toBeCloseTo(want?.centroid_y ?? Number.NaN, 12)
      const first = Date.parse(row.first_click_at)
      const last = Date.parse(row.last_click_at)
      expect(row.first_click_at).toBe(new Date(first).toISOString())
      expect(first).toBeLessThanOrEqual(last)
      expect(first).toBeGreaterThanOrEqual(savedFrom - 1000)
      expect(last).toBeLessThanOrEqual(savedTo + 1000)
    }
  })

  it("exports the same rows as CSV with a header line", async () => {
    const { status, type, text } = await exportText(server.url, "format=csv")
    expect(status).toBe(200)
    expect(type).toBe("text/csv; charset=utf-8")
    expect(text.split("\n")[0]).toBe(
      "page_uuid,cluster_idx,centroid_x,centroid_y,click_count,first_click_at,last_click_at,snapshot_seq",
    )
    expect(text).toContain(`"${pageC}",0,0.3,0.7,1,`)
    expect(ours(csvRows(text))).toEqual(exported)
  })

  it("exports one page with page_uuid, and nothing for an unknown page", async () => {
    const one = await exportText(server.url, `format=ndjson&page_uuid=${encodeURIComponent(pageC)}`)
    expect(ndjsonRows(one.text)).toEqual(exported.filter((r) => r.page_uuid === pageC))
    expect(
      ndjsonRows((await exportText(server.url, `format=ndjson&page_uuid=${encodeURIComponent(pageA)}`)).text),
    ).toEqual(exported.filter((r) => r.page_uuid === pageA))
    expect(await exportText(server.url, `format=ndjson&page_uuid=${run}/nobody`)).toMatchObject({
      status: 200,
      text: "",
    })
    expect(
      (await exportText(server.url, `format=csv&page_uuid=${run}/nobody`)).text.split("\n"),
    ).toHaveLength(2)
  })

  it("answers 422 naming the parameter for a bad or missing format and an empty page_uuid", async () => {
    for (const [query, path] of [
      ["format=xml", "format"],
      ["", "format"],
      ["format=CSV", "format"],
      ["format=csv&page_uuid=", "page_uuid"],
    ]) {
      const { status, text } = await exportText(server.url, query)
      expect(status, query).toBe(422)
      const body = decodeError(JSON.parse(text))
      expect(body._tag).toBe("InvalidRequest")
      expect(body.issues?.map((i) => i.path)).toContain(path)
    }
  })

  it("declares the endpoint, its parameters and its bearer security in the OpenAPI document", async () => {
    const doc = decodeOpenApi(await (await fetch(`${server.url}/openapi.json`)).json())
    const endpoint = doc.paths["/snapshots/export"]?.get
    expect(endpoint?.parameters.map((p) => p.name)).toEqual(["format", "page_uuid"])
    expect(endpoint?.security).toEqual([{ bearer: [] }])
  })

  it("with ADMIN_TOKEN set, answers 401 without the token or with another one, and exports with it", async () => {
    // One server at a time: the embedded database belongs to one process.
    await server.stop()
    server = await ServerProcess.start({ ...storage.env, ADMIN_TOKEN: "s3cret-token" })

    const missing = await exportText(server.url, "format=ndjson")
    expect(missing.status).toBe(401)
    expect(decodeError(JSON.parse(missing.text))).toEqual({
      _tag: "Unauthorized",
      message: "this endpoint needs the header Authorization: Bearer <ADMIN_TOKEN>",
    })
    for (const authorization of [
      "Bearer wrong-token",
      "Bearer s3cret-token-and-more",
      "Basic s3cret-token",
    ]) {
      const wrong = await exportText(server.url, "format=ndjson", { authorization })
      expect(wrong.status, authorization).toBe(401)
      expect(decodeError(JSON.parse(wrong.text))._tag).toBe("Unauthorized")
    }

    const allowed = await exportText(server.url, "format=ndjson", { authorization: "Bearer s3cret-token" })
    expect(allowed.status).toBe(200)
    expect(ours(ndjsonRows(allowed.text))).toEqual(exported)
    // The tracker endpoints stay open.
    expect((await fetch(`${server.url}/`)).status).toBe(200)
  })
})
