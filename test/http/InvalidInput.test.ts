import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { ServerProcess } from "../support/ServerProcess.ts"
import { type StorageMode, storageModes } from "../support/StorageModes.ts"

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
  let storage: StorageMode
  let server: ServerProcess

  beforeAll(async () => {
    storage = await make()
    server = await ServerProcess.start(storage.env)
  })
  afterAll(async () => {
    await server?.stop()
    await storage?.dispose()
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

    expect(await server.stop()).toBe(0)
    const rows = await storage.query<{ n: number }>("SELECT count(*)::int AS n FROM clicks")
    expect(rows[0]?.n).toBe(2)
  })

  it("answers 404 with a JSON message for unknown paths and for a page without clicks", async () => {
    server = await ServerProcess.start(storage.env)
    const unknown = await fetch(`${server.url}/no_such_endpoint`)
    expect(unknown.status).toBe(404)
    expect((await answerOf(unknown)).message).toMatch(/no_such_endpoint/)
    const best = await fetch(`${server.url}/get_best_cluster?page_uuid=${encodeURIComponent("never-seen")}`)
    expect(best.status).toBe(404)
    expect((await answerOf(best))._tag).toBe("PageNotFound")
  })
})
