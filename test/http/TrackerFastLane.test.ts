import { request } from "node:http"
import { describe, expect, it } from "@effect/vitest"
import { servedStorage } from "../support/ServedStorage.ts"
import { storageModes } from "../support/StorageModes.ts"

interface Answer {
  readonly status: number
  readonly contentType: string | undefined
  readonly requestId: string | undefined
  readonly body: string
}

/**
 * POSTs a body. With a content length the request is one the fast lane takes; sent chunked (no length) the same
 * body goes to the HttpApi: the two lanes' answers can be compared.
 */
const post = (
  url: string,
  path: string,
  body: string,
  lane: "fast" | "api",
  headers: Record<string, string> = {},
) =>
  new Promise<Answer>((resolve, reject) => {
    const req = request(`${url}${path}`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        ...(lane === "fast" ? { "content-length": String(Buffer.byteLength(body)) } : {}),
        ...headers,
      },
    })
    req.on("error", reject)
    req.on("response", (response) => {
      let text = ""
      response.setEncoding("utf8")
      response.on("data", (chunk: string) => {
        text += chunk
      })
      response.on("end", () =>
        resolve({
          status: response.statusCode ?? 0,
          contentType: response.headers["content-type"],
          requestId: response.headers["x-request-id"]?.toString(),
          body: text,
        }),
      )
    })
    if (lane === "api") req.write(body)
    req.end(lane === "fast" ? body : undefined)
  })

const fastLaneCount = async (url: string, served: string) => {
  const text = await (await fetch(`${url}/metrics`)).text()
  const line = text.split("\n").find((l) => l.startsWith(`http_fast_lane_requests_total{served="${served}"}`))
  return line === undefined ? 0 : Number(line.split(" ").at(-1))
}

const click = (page: unknown, x: unknown, y: unknown, extra: Record<string, unknown> = {}) =>
  JSON.stringify({ page_uuid: page, coordinates: { x, y }, ...extra })

/** Bodies no endpoint accepts: malformed JSON, wrong shapes, values out of range. */
const refused: ReadonlyArray<string> = [
  "",
  "{",
  '{"page_uuid":',
  "null",
  "[]",
  '"text"',
  "42",
  "{}",
  click("", 0.5, 0.5),
  click(7, 0.5, 0.5),
  click("p".repeat(513), 0.5, 0.5),
  click("p", 1.5, 0.5),
  click("p", 0.5, -0.01),
  click("p", "0.5", 0.5),
  click("p", null, 0.5),
  '{"page_uuid":"p","coordinates":{"x":1e400,"y":0.5}}',
  '{"page_uuid":"p","coordinates":null}',
  '{"page_uuid":"p","coordinates":[0.5,0.5]}',
]
/** Saves also refuse a request id that is not a UUID (a prediction ignores the field). */
const refusedSaves = [...refused, click("p", 0.5, 0.5, { request_id: "not-a-uuid" })]

const savePaths = ["/save_click_and_predict_cluster", "/new_click"]
const predictPaths = ["/predict_cluster", "/predict_click"]

describe.each(storageModes())("tracker fast lane, $name storage", ({ make }) => {
  const served = servedStorage(make)
  const run = `fast-lane-${Date.now()}`

  it("refuses every bad body exactly as the HttpApi does (status, content type, body)", async () => {
    const refusedBefore = await fastLaneCount(served.url, "refused")
    for (const [paths, bodies] of [
      [savePaths, refusedSaves],
      [predictPaths, refused],
    ] as const) {
      for (const path of paths)
        for (const body of bodies) {
          const fast = await post(served.url, path, body, "fast")
          const api = await post(served.url, path, body, "api")
          expect({ path, sent: body, ...fast, requestId: undefined }).toEqual({
            path,
            sent: body,
            ...api,
            requestId: undefined,
          })
          expect([400, 422]).toContain(fast.status)
        }
    }
    expect((await fastLaneCount(served.url, "refused")) - refusedBefore).toBe(
      2 * refused.length + 2 * refusedSaves.length,
    )
  })

  it("answers a stream of saves and predictions as the HttpApi does on a twin page, and both pages end alike", async () => {
    const nowBefore = await fastLaneCount(served.url, "now")
    const points: Array<readonly [number, number]> = []
    for (let i = 0; i < 60; i++) points.push([((i * 37) % 100) / 100, ((i * 61) % 100) / 100])
    for (const [x, y] of [...points, ...points.map(([px, py]) => [px + 0.01, py] as const)]) {
      for (const [path, kind] of [
        ["/predict_cluster", "predict"],
        ["/save_click_and_predict_cluster", "save"],
        ["/new_click", "save"],
      ] as const) {
        const fast = await post(served.url, path, click(`${run}/fast`, x, y), "fast")
        const api = await post(served.url, path, click(`${run}/api`, x, y), "api")
        expect({ path, kind, ...fast, requestId: undefined }).toEqual({
          path,
          kind,
          ...api,
          requestId: undefined,
        })
        expect(fast.status).toBe(200)
      }
    }
    // The first request on the fresh page recovers it through an actor message; the rest are served at once.
    expect((await fastLaneCount(served.url, "now")) - nowBefore).toBeGreaterThan(300)

    const clusters = async (page: string) =>
      (await (await fetch(`${served.url}/pages/${encodeURIComponent(page)}/clusters`)).json()) as {
        clusters: ReadonlyArray<{ cluster_idx: number; count: number; centroid: unknown }>
      }
    const best = async (page: string) =>
      (await fetch(`${served.url}/get_best_cluster?page_uuid=${encodeURIComponent(page)}`)).json()
    const fastClusters = (await clusters(`${run}/fast`)).clusters
    const apiClusters = (await clusters(`${run}/api`)).clusters
    expect(fastClusters.map((c) => [c.cluster_idx, c.count, c.centroid])).toEqual(
      apiClusters.map((c) => [c.cluster_idx, c.count, c.centroid]),
    )
    expect(fastClusters.reduce((n, c) => n + c.count, 0)).toBe(points.length * 4)
    expect(await best(`${run}/fast`)).toEqual(await best(`${run}/api`))
  })

  it("echoes a sane x-request-id, makes one otherwise, and counts the request in the HTTP metrics", async () => {
    const metricLine = async () =>
      (await (await fetch(`${served.url}/metrics`)).text())
        .split("\n")
        .find((l) => l.startsWith('http_requests_total{route="/predict_click",method="POST",status="200"}'))
    const countOf = (line: string | undefined) => (line === undefined ? 0 : Number(line.split(" ").at(-1)))
    const before = countOf(await metricLine())
    const given = await post(served.url, "/predict_click", click(`${run}/ids`, 0.5, 0.5), "fast", {
      "x-request-id": "trace-123",
    })
    expect(given).toMatchObject({ status: 200, requestId: "trace-123", body: '{"cluster_idx":null}' })
    const made = await post(served.url, "/predict_click", click(`${run}/ids`, 0.5, 0.5), "fast", {
      "x-request-id": "no spaces allowed",
    })
    expect(made.requestId).toMatch(/^[0-9a-f-]{36}$/)
    expect(countOf(await metricLine()) - before).toBe(2)
  })

  it("saves with a request id through the lane: a repeat gets the first answer, another click the 409", async () => {
    const requestId = "6f1c1c52-8a7e-4c55-9d59-2b7f2d0f7e11".replace(
      "6f1c",
      Date.now().toString(16).slice(-4),
    )
    const body = click(`${run}/idem`, 0.25, 0.25, { request_id: requestId })
    const first = await post(served.url, "/save_click_and_predict_cluster", body, "fast")
    const repeat = await post(served.url, "/save_click_and_predict_cluster", body, "fast")
    expect(first).toMatchObject({ status: 200, body: '{"cluster_idx":0,"is_new":true}' })
    expect(repeat).toMatchObject({ status: 200, body: '{"cluster_idx":0,"is_new":true}' })
    const other = click(`${run}/idem`, 0.75, 0.75, { request_id: requestId })
    const conflict = await post(served.url, "/save_click_and_predict_cluster", other, "fast")
    expect(conflict.status).toBe(409)
    expect(JSON.parse(conflict.body)).toMatchObject({ _tag: "IdempotencyConflict" })
  })
})

describe.each(storageModes())("tracker fast lane switched off, $name storage", ({ make }) => {
  const served = servedStorage(make, { HTTP_FAST_LANE: "false" })
  const run = `fast-lane-off-${Date.now()}`

  it("answers the tracker routes through the HttpApi alone: same answers, the lane counts nothing", async () => {
    const page = `${run}/p`
    const answers = [
      await post(served.url, "/save_click_and_predict_cluster", click(page, 0.5, 0.5), "fast"),
      await post(served.url, "/new_click", click(page, 0.51, 0.5), "fast"),
      await post(served.url, "/predict_click", click(page, 0.52, 0.5), "fast"),
      await post(served.url, "/predict_cluster", click(page, 0.9, 0.9), "fast"),
      await post(served.url, "/predict_cluster", "{", "fast"),
    ]
    expect(answers.map((a) => [a.status, a.body])).toEqual([
      [200, '{"cluster_idx":0,"is_new":true}'],
      [200, '{"cluster_idx":0,"is_new":false}'],
      [200, '{"cluster_idx":0}'],
      [200, '{"cluster_idx":null}'],
      [400, '{"message":"the request body could not be read as JSON (Decode)","_tag":"MalformedRequest"}'],
    ])
    for (const how of ["now", "message", "refused"]) expect(await fastLaneCount(served.url, how)).toBe(0)
  })
})
