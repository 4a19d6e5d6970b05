import { randomUUID } from "node:crypto"
import { request } from "node:http"
import { describe, expect, it } from "@effect/vitest"
import { servedStorage } from "../support/ServedStorage.ts"
import { storageModes } from "../support/StorageModes.ts"

const embedded = storageModes()[0]
if (embedded === undefined) throw new Error("no storage mode")

const click = (page: string, x = 0.5) => ({ page_uuid: page, coordinates: { x, y: 0.5 } })

interface Answer {
  readonly status: number
  readonly retryAfter: string | undefined
  readonly body: unknown
}

/** POSTs JSON from a chosen loopback address (another client IP), as node:http allows. */
const post = (url: string, path: string, body: unknown, from = "127.0.0.1") =>
  new Promise<Answer>((resolve, reject) => {
    const text = JSON.stringify(body)
    const req = request(
      `${url}${path}`,
      {
        method: "POST",
        localAddress: from,
        headers: { "content-type": "application/json", "content-length": Buffer.byteLength(text) },
      },
      (res) => {
        const chunks: Array<Buffer> = []
        res.on("data", (chunk: Buffer) => chunks.push(chunk))
        res.on("end", () => {
          const retry = res.headers["retry-after"]
          resolve({
            status: res.statusCode ?? 0,
            retryAfter: typeof retry === "string" ? retry : undefined,
            body: JSON.parse(Buffer.concat(chunks).toString("utf8")),
          })
        })
      },
    )
    req.on("error", reject)
    req.end(text)
  })

const SAVE = "/save_click_and_predict_cluster"

/** A 429 as declared: RateLimited in the body, and Retry-After saying the same seconds, within the window. */
const expectLimited = (answer: Answer, window: number) => {
  expect(answer).toMatchObject({
    status: 429,
    body: { _tag: "RateLimited", message: expect.any(String), retry_after_seconds: expect.any(Number) },
  })
  const seconds = Number(answer.retryAfter)
  expect(seconds).toBeGreaterThanOrEqual(1)
  expect(seconds).toBeLessThanOrEqual(window)
  expect(answer.body).toMatchObject({ retry_after_seconds: seconds })
}

const clustersCount = async (url: string, page: string) => {
  const response = await fetch(`${url}/pages/${encodeURIComponent(page)}/clusters`)
  const body = (await response.json()) as { clusters: ReadonlyArray<{ count: number }> }
  return body.clusters.reduce((sum, c) => sum + c.count, 0)
}

describe("rate limit per page", () => {
  const served = servedStorage(embedded.make, { RATE_LIMIT_PER_PAGE: "3", RATE_LIMIT_WINDOW: "1 hour" })

  it("answers 429 with Retry-After past a page's clicks per window; other pages go on; a batch refuses that page's clicks alone", async () => {
    const page = `limited-${randomUUID()}`
    const other = `limited-${randomUUID()}`
    for (let i = 0; i < 3; i++) expect((await post(served.url, SAVE, click(page, i / 10))).status).toBe(200)
    expectLimited(await post(served.url, SAVE, click(page)), 3600)
    expect((await post(served.url, SAVE, click(other))).status).toBe(200)
    const batch = await post(served.url, "/clicks", [click(page), click(other, 0.2), click(other, 0.9)])
    expect(batch.status).toBe(200)
    expect(batch.body).toEqual([
      {
        error: { _tag: "RateLimited", status: 429, message: expect.stringContaining("RATE_LIMIT_PER_PAGE") },
      },
      { cluster_idx: 1, is_new: true },
      { cluster_idx: 2, is_new: true },
    ])
    // Refused clicks are not stored.
    expect(await clustersCount(served.url, page)).toBe(3)
    expect(await clustersCount(served.url, other)).toBe(3)
  })
})

describe("rate limit per client IP", () => {
  const served = servedStorage(embedded.make, { RATE_LIMIT_PER_IP: "5", RATE_LIMIT_WINDOW: "10 minutes" })

  it("counts a client's clicks over every page, batches by their clicks, and leaves other clients alone", async () => {
    for (let i = 0; i < 3; i++)
      expect((await post(served.url, SAVE, click(`ip-${randomUUID()}`))).status).toBe(200)
    // Two more fit, three do not: the whole batch is refused.
    const batch = [click(`ip-${randomUUID()}`), click(`ip-${randomUUID()}`), click(`ip-${randomUUID()}`)]
    expectLimited(await post(served.url, "/clicks", batch), 600)
    expect((await post(served.url, "/clicks", batch.slice(0, 2))).status).toBe(200)
    expectLimited(await post(served.url, SAVE, click(`ip-${randomUUID()}`)), 600)
    // Another client (another loopback address) has its own allowance.
    expect((await post(served.url, SAVE, click(`ip-${randomUUID()}`), "127.0.0.2")).status).toBe(200)
  })
})

describe("rate limits off by default", () => {
  const served = servedStorage(embedded.make)

  it("answers every save from one client on one page", async () => {
    const page = `unlimited-${randomUUID()}`
    const answers = await Promise.all(
      Array.from({ length: 50 }, (_, i) => post(served.url, SAVE, click(page, i / 50))),
    )
    expect(answers.map((a) => a.status)).toEqual(answers.map(() => 200))
    const batch = await post(
      served.url,
      "/clicks",
      Array.from({ length: 500 }, () => click(page)),
    )
    expect(batch.status).toBe(200)
    expect(await clustersCount(served.url, page)).toBe(550)
  })
})
