import { beforeAll, describe, expect, it } from "@effect/vitest"
import type { RunningServer } from "../support/InProcessServer.ts"
import { freshStorage, inProcessServers } from "../support/ServedStorage.ts"
import { storageModes } from "../support/StorageModes.ts"
import { post as postIn } from "./Lanes.ts"

const page = `invalid-input-${Date.now()}`

/** Bodies that are not valid clicks, each with the field path the 422 answer must name. */
const invalidBodies: ReadonlyArray<readonly [string, unknown, string]> = [
  ["x above 1", { page_uuid: page, coordinates: { x: 1.5, y: 0.5 } }, "coordinates.x"],
  ["y below 0", { page_uuid: page, coordinates: { x: 0.5, y: -0.01 } }, "coordinates.y"],
  ["x as a string", { page_uuid: page, coordinates: { x: "0.5", y: 0.5 } }, "coordinates.x"],
  ["y null", { page_uuid: page, coordinates: { x: 0.5, y: null } }, "coordinates.y"],
  ["y missing", { page_uuid: page, coordinates: { x: 0.5 } }, "coordinates.y"],
  ["coordinates missing", { page_uuid: page }, "coordinates"],
  ["coordinates an array", { page_uuid: page, coordinates: [0.5, 0.5] }, "coordinates"],
  ["page_uuid missing", { coordinates: { x: 0.5, y: 0.5 } }, "page_uuid"],
  ["page_uuid empty", { page_uuid: "", coordinates: { x: 0.5, y: 0.5 } }, "page_uuid"],
  ["page_uuid a number", { page_uuid: 7, coordinates: { x: 0.5, y: 0.5 } }, "page_uuid"],
  ["page_uuid too long", { page_uuid: "p".repeat(513), coordinates: { x: 0.5, y: 0.5 } }, "page_uuid"],
  ["empty object", {}, "page_uuid"],
  ["null", null, "(body)"],
  ["an array", [], "(body)"],
  ["a number", 42, "(body)"],
]

interface ErrorAnswer {
  readonly _tag: string
  readonly message: string
  readonly issues: ReadonlyArray<{ readonly path: string; readonly message: string }>
}

const answerOf = async (response: Response): Promise<ErrorAnswer> => (await response.json()) as ErrorAnswer

const post = (url: string, path: string, body: string) =>
  fetch(`${url}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body })

describe.each(storageModes())("invalid input, $name storage", ({ make }) => {
  const storage = freshStorage(make)
  const servers = inProcessServers()
  let server: RunningServer

  beforeAll(async () => {
    server = await servers.start(storage.current.env)
  })

  it("answers 422 naming the field for every invalid click, 400 for malformed JSON, and stores nothing", async () => {
    const valid = JSON.stringify({ page_uuid: page, coordinates: { x: 0.5, y: 0.5 } })
    expect(await (await post(server.url, "/save_click_and_predict_cluster", valid)).json()).toEqual({
      cluster_idx: 0,
      is_new: true,
    })

    for (const path of [
      "/save_click_and_predict_cluster",
      "/new_click",
      "/predict_cluster",
      "/predict_click",
    ]) {
      for (const [what, body, field] of invalidBodies) {
        const response = await post(server.url, path, JSON.stringify(body))
        expect(response.status, `${path} ${what}`).toBe(422)
        const answer = await answerOf(response)
        expect(
          answer.issues.map((i) => i.path),
          `${path} ${what}`,
        ).toContain(field)
        expect(typeof answer.message).toBe("string")
      }
      const malformed = await post(server.url, path, '{"page_uuid": "p", "coordinates": {')
      expect(malformed.status).toBe(400)
      expect((await answerOf(malformed)).message).toMatch(/JSON/)
    }

    // The page is as it was: a far point founds cluster 1, not a later index.
    const next = await post(
      server.url,
      "/save_click_and_predict_cluster",
      JSON.stringify({ page_uuid: page, coordinates: { x: 0.9, y: 0.9 } }),
    )
    expect(await next.json()).toEqual({ cluster_idx: 1, is_new: true })

    await server.stop()
    const rows = await storage.current.query<{ n: number }>("SELECT count(*)::int AS n FROM clicks")
    expect(rows[0]?.n).toBe(2)
  })

  it("answers 404 with a JSON message for unknown paths and for a page without clicks", async () => {
    server = await servers.start(storage.current.env)
    const unknown = await fetch(`${server.url}/no_such_endpoint`)
    expect(unknown.status).toBe(404)
    expect((await answerOf(unknown)).message).toMatch(/no_such_endpoint/)
    const best = await fetch(`${server.url}/get_best_cluster?page_uuid=${encodeURIComponent("never-seen")}`)
    expect(best.status).toBe(404)
    expect((await answerOf(best))._tag).toBe("PageNotFound")
  })

  it("refuses page ids with lone surrogates or NUL (422) and URLs whose escapes are not UTF-8 (400) on every route, in both lanes, and stores nothing", async () => {
    const prefix = `${page}-unicode`
    const trackerPaths = [
      "/save_click_and_predict_cluster",
      "/new_click",
      "/predict_cluster",
      "/predict_click",
    ]
    // As JSON escapes: JSON.stringify writes a lone surrogate as \udXXX.
    for (const id of [`${prefix}\ud800`, `${prefix}\udfff`, `\udc00${prefix}`, `${prefix}\u0000`]) {
      const body = JSON.stringify({ page_uuid: id, coordinates: { x: 0.5, y: 0.5 } })
      for (const path of trackerPaths)
        for (const lane of ["fast", "api"] as const) {
          const answer = await postIn(server.url, path, body, lane)
          expect(answer.status, `${path} ${lane} ${body}`).toBe(422)
          const error = JSON.parse(answer.body) as ErrorAnswer
          expect(error._tag).toBe("InvalidRequest")
          expect(error.issues).toContainEqual({
            path: "page_uuid",
            message: expect.stringMatching(/well-formed Unicode without NUL/),
          })
        }
    }
    const activity = "granularity=day&from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z"
    const routes = (id: string) => [
      `/get_best_cluster?page_uuid=${id}`,
      `/pages/${id}/clusters`,
      `/pages/${id}/activity?${activity}`,
      `/snapshots/export?format=ndjson&page_uuid=${id}`,
    ]
    for (const url of routes(`${encodeURIComponent(prefix)}%00`)) {
      const response = await fetch(`${server.url}${url}`)
      expect(response.status, url).toBe(422)
      expect((await answerOf(response)).message).toMatch(/well-formed Unicode without NUL/)
    }
    // Escapes that decode to no UTF-8 (a surrogate, an overlong NUL, a stray byte, no hex): the router and the query
    // parser used to keep these undecoded, i.e. as another page id.
    for (const bad of ["%ED%A0%80", "%C0%80", "%FF", "%ZZ", "%"])
      for (const url of [
        ...routes(`${encodeURIComponent(prefix)}${bad}`),
        `/save_click_and_predict_cluster?page_uuid=${bad}`,
      ]) {
        const response = url.startsWith("/save")
          ? await post(
              server.url,
              url,
              JSON.stringify({ page_uuid: prefix, coordinates: { x: 0.5, y: 0.5 } }),
            )
          : await fetch(`${server.url}${url}`)
        expect(response.status, url).toBe(400)
        expect(await answerOf(response)).toMatchObject({
          _tag: "MalformedRequest",
          message: expect.stringMatching(/percent-encoded UTF-8/),
        })
      }

    await server.stop()
    const rows = await storage.current.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM clicks WHERE page_uuid LIKE $1 OR page_uuid LIKE $2",
      [`${prefix}%`, `%${prefix}`],
    )
    expect(rows[0]?.n).toBe(0)
  })

  it("answers a body over MAX_BODY_BYTES 413 with JSON, sent chunked or with a length, stores nothing and goes on", async () => {
    server = await servers.start({ ...storage.current.env, MAX_BODY_BYTES: "4096" })
    const target = `${page}-large`
    const large = JSON.stringify({
      page_uuid: target,
      coordinates: { x: 0.5, y: 0.5 },
      pad: "x".repeat(20_000),
    })
    for (const [lane, chunks] of [
      ["api", 1],
      ["api", 40],
      ["fast", 1],
    ] as const) {
      const answer = await postIn(server.url, "/save_click_and_predict_cluster", large, lane, {}, chunks)
      expect(answer.status, `${lane} ${chunks}`).toBe(413)
      expect(answer.contentType).toBe("application/json")
      expect(JSON.parse(answer.body)).toEqual({
        _tag: "PayloadTooLarge",
        message: "the request body is larger than the limit (MAX_BODY_BYTES)",
      })
      expect(answer.connection).toBe("close")
    }
    // A chunked body within the limit is read whole; the page then holds exactly that one click.
    const small = JSON.stringify({
      page_uuid: target,
      coordinates: { x: 0.5, y: 0.5 },
      pad: "x".repeat(3000),
    })
    const saved = await postIn(server.url, "/save_click_and_predict_cluster", small, "api", {}, 30)
    expect([saved.status, saved.body]).toEqual([200, '{"cluster_idx":0,"is_new":true}'])

    await server.stop()
    const rows = await storage.current.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM clicks WHERE page_uuid = $1",
      [target],
    )
    expect(rows[0]?.n).toBe(1)
  })
})
