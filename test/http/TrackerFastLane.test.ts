import { describe, expect, it } from "@effect/vitest"
import { servedStorage } from "../support/ServedStorage.ts"
import { storageModes } from "../support/StorageModes.ts"
import { click, comparable, nested, post, refused, refusedSaves } from "./Lanes.ts"

const fastLaneCount = async (url: string, served: string) => {
  const text = await (await fetch(`${url}/metrics`)).text()
  const line = text.split("\n").find((l) => l.startsWith(`http_fast_lane_requests_total{served="${served}"}`))
  return line === undefined ? 0 : Number(line.split(" ").at(-1))
}

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
          const sent = body.slice(0, 80)
          expect({ path, sent, ...comparable(fast) }).toEqual({ path, sent, ...comparable(api) })
          expect([400, 422]).toContain(fast.status)
          expect(fast.contentType).toBe("application/json")
          expect(JSON.parse(fast.body)).toMatchObject({
            _tag: expect.any(String),
            message: expect.any(String),
          })
        }
    }
    expect((await fastLaneCount(served.url, "refused")) - refusedBefore).toBe(
      2 * refused.length + 2 * refusedSaves.length,
    )
  })

  it("accepts a body nested to the limit and brackets inside strings, in both lanes", async () => {
    const page = `${run}/nesting`
    for (const body of [
      nested(31, "1", "extra"),
      click(`${page}/${"[".repeat(100)}`, 0.5, 0.5),
      click(page, 0.5, 0.5, { note: '\\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[' }),
    ]) {
      const fast = await post(served.url, "/predict_cluster", body, "fast")
      const api = await post(served.url, "/predict_cluster", body, "api")
      expect({ sent: body, ...comparable(fast) }).toEqual({ sent: body, ...comparable(api) })
      expect(fast.status, body).toBe(200)
    }
  })

  it("refuses bodies that are not JSON media types with 415, takes JSON in any JSON media type, in both lanes", async () => {
    const body = (lane: string) => click(`${run}/media-${lane}`, 0.5, 0.5)
    const refusedTypes = [
      "application/x-www-form-urlencoded",
      "*/*",
      "application/octet-stream",
      undefined,
      "multipart/form-data; boundary=x",
      "text/html",
      "application/jsonx",
    ]
    const acceptedTypes = [
      "application/json; charset=utf-8",
      "Application/JSON",
      "application/vnd.api+json",
      "text/plain",
      // What navigator.sendBeacon sends with a string.
      "text/plain;charset=UTF-8",
    ]
    for (const path of [...savePaths, ...predictPaths]) {
      for (const type of [...refusedTypes, ...acceptedTypes]) {
        const headers = { "content-type": type }
        const fast = await post(served.url, path, body("fast"), "fast", headers)
        const api = await post(served.url, path, body("api"), "api", headers)
        expect({ path, type, ...comparable(fast) }).toEqual({ path, type, ...comparable(api) })
        if (refusedTypes.includes(type)) {
          expect(fast.status, `${path} ${type}`).toBe(415)
          expect(JSON.parse(fast.body)).toMatchObject({
            _tag: "UnsupportedMediaType",
            message: expect.stringContaining("application/json"),
          })
        } else expect(fast.status, `${path} ${type}`).toBe(200)
      }
    }
    // Saved once per accepted type and save path in each lane: one cluster, that many clicks.
    for (const lane of ["fast", "api"]) {
      const clusters = (await (
        await fetch(`${served.url}/pages/${encodeURIComponent(`${run}/media-${lane}`)}/clusters`)
      ).json()) as { clusters: ReadonlyArray<{ count: number }> }
      expect(clusters.clusters.map((c) => c.count)).toEqual([acceptedTypes.length * savePaths.length])
    }
  })

  it("refuses a body that is not UTF-8 and a URL whose escapes are not UTF-8 with 400, in both lanes", async () => {
    const notUtf8 = Buffer.concat([
      Buffer.from('{"page_uuid":"x'),
      Buffer.from([0xff, 0xfe]),
      Buffer.from('","coordinates":{"x":0.5,"y":0.5}}'),
    ])
    for (const [path, body] of [
      ["/save_click_and_predict_cluster", notUtf8],
      ["/predict_cluster", notUtf8],
      ["/save_click_and_predict_cluster?x=%ED%A0%80", click(`${run}/url`, 0.5, 0.5)],
      ["/predict_click?page_uuid=%ZZ", click(`${run}/url`, 0.5, 0.5)],
      ["/new_click?%", click(`${run}/url`, 0.5, 0.5)],
    ] as const) {
      const fast = await post(served.url, path, body, "fast")
      const api = await post(served.url, path, body, "api")
      expect({ path, ...comparable(fast) }).toEqual({ path, ...comparable(api) })
      expect(fast.status, path).toBe(400)
      expect(JSON.parse(fast.body)).toMatchObject({ _tag: "MalformedRequest" })
    }
    const best = await fetch(`${served.url}/get_best_cluster?page_uuid=${encodeURIComponent(`${run}/url`)}`)
    expect(best.status).toBe(404)
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
        expect({ path, kind, ...comparable(fast) }).toEqual({ path, kind, ...comparable(api) })
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
      await post(served.url, "/predict_click", click(page, 0.5, 0.5), "fast", {
        "content-type": "text/plain",
      }),
      await post(served.url, "/predict_click", click(page, 0.5, 0.5), "fast", {
        "content-type": "application/x-www-form-urlencoded",
      }),
      await post(served.url, "/predict_click", " ", "fast"),
      await post(served.url, "/predict_click", nested(40, "1", "x"), "fast"),
    ]
    expect(answers.map((a) => [a.status, a.body])).toEqual([
      [200, '{"cluster_idx":0,"is_new":true}'],
      [200, '{"cluster_idx":0,"is_new":false}'],
      [200, '{"cluster_idx":0}'],
      [200, '{"cluster_idx":null}'],
      [400, '{"message":"the request body could not be read as JSON (Decode)","_tag":"MalformedRequest"}'],
      [200, '{"cluster_idx":0}'],
      [
        415,
        '{"message":"content type application/x-www-form-urlencoded is not accepted: send JSON with content-type application/json","_tag":"UnsupportedMediaType"}',
      ],
      [
        422,
        '{"message":"(body): the request body is empty; expected a JSON click","issues":[{"path":"(body)","message":"the request body is empty; expected a JSON click"}],"_tag":"InvalidRequest"}',
      ],
      [
        422,
        '{"message":"(body): the JSON is nested deeper than 32 levels","issues":[{"path":"(body)","message":"the JSON is nested deeper than 32 levels"}],"_tag":"InvalidRequest"}',
      ],
    ])
    for (const how of ["now", "message", "refused"]) expect(await fastLaneCount(served.url, how)).toBe(0)
  })
})
