import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { parse } from "csv-parse/sync"
import { Schema } from "effect"
import { PageClusters } from "../../src/domain/PageClusters.ts"
import { runId } from "../support/Cases.ts"
import { InProcessServer, type RunningServer } from "../support/InProcessServer.ts"
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
  seq: Schema.Int,
})
type Row = typeof Row.Type

/** The same row as a CSV record (every field a string), in the same column order. */
const CsvRow = Schema.Struct({
  ...Row.fields,
  cluster_idx: Schema.NumberFromString,
  centroid_x: Schema.NumberFromString,
  centroid_y: Schema.NumberFromString,
  click_count: Schema.NumberFromString,
  seq: Schema.NumberFromString,
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

/** This run's pages: every check looks at these only, whatever else the database holds. */
const run = runId()
const pageA = `${run}/page-a`
const pageB = `${run}/page-b`
const pageC = `${run}/page-c,with comma`
const ours = (rows: ReadonlyArray<Row>) => rows.filter((r) => r.page_uuid.startsWith(`${run}/`))

/** Clicks per page, saved in this order. */
const clicks: Array<readonly [string, number, number]> = [
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

/**
 * What a fresh domain replay of a page's saved clicks gives (CLUSTER_RADIUS's default), without the times: the
 * export must say exactly this, and `seq` = the number of the page's saves.
 */
const replayed = (page: string) => {
  const clusters = new PageClusters(0.04)
  for (const [p, x, y] of clicks) if (p === page) clusters.assign(x, y, 0)
  return Array.from({ length: clusters.size }, (_, i) => {
    const s = clusters.summary(i)
    return {
      page_uuid: page,
      cluster_idx: i,
      centroid_x: s.centroidX,
      centroid_y: s.centroidY,
      click_count: s.count,
      seq: saveCount(page),
    }
  })
}

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

describe.each(storageModes())("cluster export over HTTP, $name storage", ({ make }) => {
  let storage: StorageMode
  let server: RunningServer
  /** Per page: the cluster each save answered. */
  const answers = new Map<string, Array<number>>()
  let exported: ReadonlyArray<Row> = []
  let savedFrom = 0
  let savedTo = 0

  beforeAll(async () => {
    storage = await make()
    // Snapshots only at shutdown: the first exports must rebuild every page from its clicks alone.
    server = await InProcessServer.run({
      ...storage.env,
      SNAPSHOT_EVERY: "1000",
      SNAPSHOT_INTERVAL: "1 hour",
    })
  })
  afterAll(async () => {
    await server?.stop()
    await storage?.dispose()
  })

  it("exports right after the saves (no snapshot yet) the clusters a fresh replay gives, with each page's seq", async () => {
    savedFrom = Date.now()
    for (const [page, x, y] of clicks)
      answers.set(page, [...(answers.get(page) ?? []), await save(server.url, page, x, y)])
    savedTo = Date.now()

    const { status, type, text } = await exportText(server.url, "format=ndjson")
    expect(status).toBe(200)
    expect(type).toBe("application/x-ndjson")
    exported = ours(ndjsonRows(text))

    const pages = [...answers.keys()].sort()
    const expected = pages.flatMap(replayed)
    expect(exported.map(({ first_click_at: _f, last_click_at: _l, ...row }) => row)).toEqual(expected)
    // The clusters are the ones the saves answered.
    for (const page of pages) {
      expect(new Set(answers.get(page))).toEqual(new Set(replayed(page).map((r) => r.cluster_idx)))
    }
    for (const row of exported) {
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
      "page_uuid,cluster_idx,centroid_x,centroid_y,click_count,first_click_at,last_click_at,seq",
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
    server = await InProcessServer.run({ ...storage.env, ADMIN_TOKEN: "s3cret-token" })

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

  it("after a restart, exports a page's older snapshot together with the clicks saved since", async () => {
    // The stop above snapshotted every page; these saves come after those snapshots.
    for (const [x, y] of [
      [0.1, 0.11],
      [0.4, 0.4],
    ] as const) {
      clicks.push([pageB, x, y])
      await save(server.url, pageB, x, y)
    }
    const { status, text } = await exportText(
      server.url,
      `format=csv&page_uuid=${encodeURIComponent(pageB)}`,
      {
        authorization: "Bearer s3cret-token",
      },
    )
    expect(status).toBe(200)
    const rows = csvRows(text)
    expect(rows.map(({ first_click_at: _f, last_click_at: _l, ...row }) => row)).toEqual(replayed(pageB))
    expect(rows[0]?.seq).toBe(saveCount(pageB))
  })
})
