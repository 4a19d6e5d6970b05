import { randomUUID } from "node:crypto"
import { describe, expect, it } from "@effect/vitest"
import { PREFLIGHT_MAX_AGE } from "../../src/http/Cors.ts"
import { servedStorage } from "../support/ServedStorage.ts"
import { storageModes } from "../support/StorageModes.ts"

const embedded = storageModes()[0]
if (embedded === undefined) throw new Error("no storage mode")

const site = "https://shop.example"

const click = (page: string) => JSON.stringify({ page_uuid: page, coordinates: { x: 0.5, y: 0.5 } })

const post = (url: string, path: string, body: string, headers: Record<string, string>) =>
  fetch(`${url}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body,
  })

const preflight = (url: string, path: string, origin: string) =>
  fetch(`${url}${path}`, {
    method: "OPTIONS",
    headers: {
      origin,
      "access-control-request-method": "POST",
      "access-control-request-headers": "content-type",
    },
  })

/** The fast lane's served requests so far (every label). */
const laneServed = async (url: string) => {
  const text = await (await fetch(`${url}/metrics`)).text()
  return text
    .split("\n")
    .filter((line) => line.startsWith("http_fast_lane_requests_total"))
    .reduce((sum, line) => sum + Number(line.slice(line.lastIndexOf(" ") + 1)), 0)
}

describe("CORS, any origin (the default)", () => {
  const served = servedStorage(embedded.make)
  const page = `cors-${randomUUID()}`

  it("answers a preflight on the tracker routes 204 with the methods, headers and max age", async () => {
    for (const path of ["/clicks", "/save_click_and_predict_cluster", "/predict_cluster"]) {
      const response = await preflight(served.url, path, site)
      expect(response.status).toBe(204)
      expect(response.headers.get("access-control-allow-origin")).toBe("*")
      expect(response.headers.get("access-control-allow-methods")).toContain("POST")
      expect(response.headers.get("access-control-allow-headers")).toContain("content-type")
      expect(response.headers.get("access-control-max-age")).toBe(String(PREFLIGHT_MAX_AGE))
    }
  })

  it("allows any origin on tracker answers, errors included, and the fast lane leaves such requests to the HttpApi", async () => {
    const before = await laneServed(served.url)
    const saved = await post(served.url, "/save_click_and_predict_cluster", click(page), { origin: site })
    expect(saved.status).toBe(200)
    expect(saved.headers.get("access-control-allow-origin")).toBe("*")
    const batch = await post(served.url, "/clicks", `[${click(page)}]`, {
      origin: site,
      "content-type": "text/plain",
    })
    expect(batch.status).toBe(200)
    expect(batch.headers.get("access-control-allow-origin")).toBe("*")
    expect(await laneServed(served.url)).toBe(before)
    // Without an Origin the lane serves the save, with no CORS headers.
    const direct = await post(served.url, "/save_click_and_predict_cluster", click(page), {})
    expect(direct.status).toBe(200)
    expect(direct.headers.get("access-control-allow-origin")).toBeNull()
    expect(await laneServed(served.url)).toBe(before + 1)

    const refusals = [
      await post(served.url, "/save_click_and_predict_cluster", "{}", { origin: site }),
      await post(served.url, "/clicks", "[", { origin: site }),
      await post(served.url, "/clicks", "[]", { origin: site, "content-type": "application/octet-stream" }),
      await post(served.url, "/save_click_and_predict_cluster", "x".repeat(20_000), { origin: site }),
    ]
    expect(refusals.map((r) => r.status)).toEqual([422, 400, 415, 413])
    for (const refusal of refusals) expect(refusal.headers.get("access-control-allow-origin")).toBe("*")
  })

  it("gives the admin and ops routes no CORS", async () => {
    const health = await fetch(`${served.url}/healthz`, { headers: { origin: site } })
    expect(health.status).toBe(200)
    expect(health.headers.get("access-control-allow-origin")).toBeNull()
    expect((await preflight(served.url, "/snapshots/export", site)).status).toBe(404)
  })
})

describe("CORS, listed origins", () => {
  const other = "http://localhost:3000"
  const served = servedStorage(embedded.make, { CORS_ORIGINS: `${site}, ${other}` })
  const page = `cors-${randomUUID()}`

  it("echoes a listed origin and gives a refused one no Access-Control-Allow-Origin", async () => {
    for (const origin of [site, other]) {
      const allowed = await preflight(served.url, "/clicks", origin)
      expect(allowed.status).toBe(204)
      expect(allowed.headers.get("access-control-allow-origin")).toBe(origin)
      expect(allowed.headers.get("vary")).toContain("Origin")
      const saved = await post(served.url, "/save_click_and_predict_cluster", click(page), { origin })
      expect(saved.status).toBe(200)
      expect(saved.headers.get("access-control-allow-origin")).toBe(origin)
    }
    const refused = await preflight(served.url, "/clicks", "https://evil.example")
    expect(refused.headers.get("access-control-allow-origin")).toBeNull()
    const answered = await post(served.url, "/clicks", `[${click(page)}]`, { origin: "https://evil.example" })
    expect(answered.headers.get("access-control-allow-origin")).toBeNull()
  })
})

describe("CORS off (CORS_ORIGINS empty)", () => {
  const served = servedStorage(embedded.make, { CORS_ORIGINS: "" })

  it("answers no CORS headers and no preflight", async () => {
    expect((await preflight(served.url, "/clicks", site)).status).toBe(404)
    const saved = await post(served.url, "/save_click_and_predict_cluster", click(`cors-${randomUUID()}`), {
      origin: site,
    })
    expect(saved.status).toBe(200)
    expect(saved.headers.get("access-control-allow-origin")).toBeNull()
  })
})
