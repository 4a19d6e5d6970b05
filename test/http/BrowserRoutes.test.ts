import { createHash } from "node:crypto"
import { readFileSync } from "node:fs"
import { request } from "node:http"
import { gunzipSync } from "node:zlib"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { InProcessServer, type RunningServer } from "../support/InProcessServer.ts"

/** A GET with exactly these headers (fetch would add and decode its own Accept-Encoding). */
const get = (url: string, headers: Record<string, string> = {}) =>
  new Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }>(
    (resolve, reject) => {
      const req = request(url, { headers }, (response) => {
        const chunks: Array<Buffer> = []
        response.on("data", (chunk: Buffer) => chunks.push(chunk))
        response.on("end", () =>
          resolve({
            status: response.statusCode ?? 0,
            headers: response.headers,
            body: Buffer.concat(chunks),
          }),
        )
      })
      req.on("error", reject)
      req.end()
    },
  )

const trackerFile = readFileSync(new URL("../../src/http/browser/tracker.js", import.meta.url))

describe("the browser routes", () => {
  let server: RunningServer
  beforeAll(async () => {
    server = await InProcessServer.run()
  })
  afterAll(async () => {
    await server.stop()
  })

  it("serves tracker.js as it is or gzipped, each with its ETag, cacheable, and 304 when unchanged", async () => {
    const plain = await get(`${server.url}/tracker.js`)
    expect(plain.status).toBe(200)
    expect(plain.headers["content-type"]).toBe("text/javascript; charset=utf-8")
    expect(plain.headers["content-encoding"]).toBeUndefined()
    expect(plain.headers["cache-control"]).toBe("public, max-age=3600")
    expect(plain.headers.vary).toBe("accept-encoding")
    expect(plain.body.equals(trackerFile)).toBe(true)

    const gzipped = await get(`${server.url}/tracker.js`, { "accept-encoding": "gzip, deflate, br" })
    expect(gzipped.headers["content-encoding"]).toBe("gzip")
    expect(gunzipSync(gzipped.body).equals(trackerFile)).toBe(true)
    // Small enough to embed anywhere.
    expect(gzipped.body.byteLength).toBeLessThan(2048)
    expect(gzipped.headers.etag).not.toBe(plain.headers.etag)

    for (const tag of [plain.headers.etag, gzipped.headers.etag, `W/${plain.headers.etag}`]) {
      const again = await get(`${server.url}/tracker.js`, { "if-none-match": String(tag) })
      expect({ tag, status: again.status, length: again.body.byteLength }).toEqual({
        tag,
        status: 304,
        length: 0,
      })
    }
    expect((await get(`${server.url}/tracker.js`, { "if-none-match": '"other"' })).status).toBe(200)
  })

  it("serves the map under a policy that allows exactly its inline script and style, and its background's origin", async () => {
    const background = "https://shots.example.com/page.png;script-src *,x"
    const map = await get(
      `${server.url}/pages/${encodeURIComponent("a/b")}/map?background=${encodeURIComponent(background)}`,
    )
    expect(map.status).toBe(200)
    expect(map.headers["content-type"]).toBe("text/html; charset=utf-8")
    const html = map.body.toString("utf8")
    const policy = String(map.headers["content-security-policy"])
    const directives = new Map(
      policy.split(";").map((d) => {
        const [name = "", ...sources] = d.trim().split(/\s+/)
        return [name, sources] as const
      }),
    )
    const hashes = (tag: string) =>
      [...html.matchAll(new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`, "g"))].map(
        (m) =>
          `'sha256-${createHash("sha256")
            .update(m[1] ?? "")
            .digest("base64")}'`,
      )
    expect(hashes("script")).toHaveLength(1)
    expect(directives.get("script-src")).toEqual(hashes("script"))
    expect(directives.get("style-src")).toEqual(hashes("style"))
    expect(directives.get("default-src")).toEqual(["'none'"])
    expect(directives.get("connect-src")).toEqual(["'self'"])
    // The background's origin only: what follows in its URL cannot add a directive.
    expect(directives.get("img-src")).toEqual(["'self'", "https://shots.example.com"])
    expect([...directives.keys()].filter((name) => name === "script-src")).toHaveLength(1)

    const plain = await get(`${server.url}/pages/p/map`)
    expect(String(plain.headers["content-security-policy"])).toContain("img-src 'self'")
    expect(String(plain.headers["content-security-policy"])).not.toContain("example")
  })

  it("refuses a page id the other page routes refuse, with the same error", async () => {
    const map = await get(`${server.url}/pages/${"x".repeat(513)}/map`)
    expect(map.status).toBe(422)
    expect(JSON.parse(map.body.toString("utf8"))).toMatchObject({ _tag: "InvalidRequest" })
  })
})
