import { randomUUID } from "node:crypto"
import { describe, expect, it } from "@effect/vitest"
import { PageClusters } from "../../src/domain/PageClusters.ts"
import { servedStorage } from "../support/ServedStorage.ts"
import { storageModes } from "../support/StorageModes.ts"

interface Click {
  readonly page_uuid: string
  readonly coordinates: { readonly x: number; readonly y: number }
  readonly request_id?: string
}

const post = async (url: string, body: string, contentType = "application/json") => {
  const response = await fetch(`${url}/clicks`, {
    method: "POST",
    headers: { "content-type": contentType },
    body,
  })
  return { status: response.status, body: (await response.json()) as unknown }
}

/** A deterministic stream of numbers in [0, 1): the same batch every run. */
const numbers = (seed: number) => {
  let s = seed
  return () => {
    s = (s * 1_103_515_245 + 12_345) % 2_147_483_648
    return s / 2_147_483_648
  }
}

/** Clicks around a few spots per page, the pages interleaved at random. */
const interleaved = (pages: ReadonlyArray<string>, n: number, seed: number): Array<Click> => {
  const next = numbers(seed)
  return Array.from({ length: n }, () => {
    const page = pages[Math.floor(next() * pages.length)] ?? ""
    const spot = Math.floor(next() * 3) * 0.3 + 0.1
    return { page_uuid: page, coordinates: { x: spot + next() * 0.05, y: spot + next() * 0.05 } }
  })
}

/**
 * The answers the domain gives to the pages' clicks replayed in order (CLUSTER_RADIUS's default), continuing from
 * `pages`' state; one entry per click, in the batch's order.
 */
const replay = (clicks: ReadonlyArray<Click>, pages: Map<string, PageClusters>) =>
  clicks.map((click) => {
    let clusters = pages.get(click.page_uuid)
    if (clusters === undefined) {
      clusters = new PageClusters(0.04)
      pages.set(click.page_uuid, clusters)
    }
    const size = clusters.size
    const idx = clusters.assign(click.coordinates.x, click.coordinates.y, 0)
    return { cluster_idx: idx, is_new: idx === size }
  })

const refusal = (status: number, tag: string) => ({
  error: expect.objectContaining({ _tag: tag, status, message: expect.any(String) }),
})

describe.each(storageModes())("POST /clicks, $name storage", ({ make }) => {
  const served = servedStorage(make)
  const run = randomUUID()
  const pages = [`batch-${run}/a`, `batch-${run}/b`, `batch-${run}/c`]
  const state = new Map<string, PageClusters>()
  /** Clicks acknowledged per page, for the durability check at the end. */
  const acknowledged = new Map<string, number>()
  const ack = (clicks: ReadonlyArray<Click>) => {
    for (const c of clicks) acknowledged.set(c.page_uuid, (acknowledged.get(c.page_uuid) ?? 0) + 1)
  }

  it("answers each click in the batch's order as the domain replays each page, interleaved pages and bad clicks alike", async () => {
    const clicks = interleaved(pages, 120, 1)
    const bad: Array<unknown> = [
      { page_uuid: pages[0], coordinates: { x: 2, y: 0.5 } },
      { coordinates: { x: 0.5, y: 0.5 } },
      "a string",
      { page_uuid: pages[1], coordinates: { x: 0.5, y: 0.5 }, request_id: "not-a-uuid" },
    ]
    // The bad clicks at 0, 31, 62 and 93; the good ones keep their order around them.
    const batch: Array<unknown> = [...clicks]
    bad.forEach((b, k) => {
      batch.splice(k * 31, 0, b)
    })
    const answer = await post(served.url, JSON.stringify(batch))
    expect(answer.status).toBe(200)
    const expected: Array<unknown> = replay(clicks, state)
    bad.forEach((_, k) => {
      expected.splice(k * 31, 0, refusal(422, "InvalidRequest"))
    })
    expect(answer.body).toEqual(expected)
    ack(clicks)
  })

  it("answers alike the pages served at once (idle actors) and those sent a message (a cold page, clicks after a keyed one)", async () => {
    const cold = `batch-${run}/cold`
    const clicks: Array<Click> = interleaved([...pages, cold], 90, 5)
    // A keyed click midway through pages[0]: its clicks before it are served at once, it and the later ones by message.
    const k = clicks.findIndex((c, i) => i > 20 && c.page_uuid === pages[0])
    const keyed = clicks[k]
    if (keyed === undefined) throw new Error("no click of pages[0] after the 20th")
    clicks[k] = { ...keyed, request_id: randomUUID() }
    const answer = await post(served.url, JSON.stringify(clicks))
    expect(answer.status).toBe(200)
    expect(answer.body).toEqual(replay(clicks, state))
    ack(clicks)
  })

  it("reads NDJSON, and text/plain holding either an array or NDJSON (what sendBeacon sends)", async () => {
    const ndjson = interleaved(pages, 30, 2)
    const asLines = (clicks: ReadonlyArray<Click>) => clicks.map((c) => JSON.stringify(c)).join("\n")
    expect(await post(served.url, `${asLines(ndjson)}\n`, "application/x-ndjson")).toEqual({
      status: 200,
      body: replay(ndjson, state),
    })
    ack(ndjson)
    const plainLines = interleaved(pages, 30, 3)
    expect(await post(served.url, asLines(plainLines), "text/plain;charset=UTF-8")).toEqual({
      status: 200,
      body: replay(plainLines, state),
    })
    ack(plainLines)
    const plainArray = interleaved(pages, 30, 4)
    expect(await post(served.url, ` ${JSON.stringify(plainArray)}`, "text/plain")).toEqual({
      status: 200,
      body: replay(plainArray, state),
    })
    ack(plainArray)
  })

  it("answers a resent batch as the first time and stores nothing twice; a request id reused for another click is 409", async () => {
    const clicks = interleaved(pages, 40, 5).map((c) => ({ ...c, request_id: randomUUID() }))
    const first = await post(served.url, JSON.stringify(clicks))
    expect(first).toEqual({ status: 200, body: replay(clicks, state) })
    ack(clicks)
    // Resent as NDJSON, with upper-case ids: the same keys, the same answers (the pages' state does not move).
    const resent = clicks
      .map((c) => JSON.stringify({ ...c, request_id: c.request_id.toUpperCase() }))
      .join("\n")
    expect(await post(served.url, resent, "application/x-ndjson")).toEqual(first)
    const reused = clicks[0]
    if (reused === undefined) throw new Error("no click")
    const other = {
      ...reused,
      coordinates: { x: 1 - reused.coordinates.x, y: reused.coordinates.y },
    }
    const mixed = await post(served.url, JSON.stringify([other, clicks[1]]))
    expect(mixed).toEqual({
      status: 200,
      body: [refusal(409, "IdempotencyConflict"), (first.body as Array<unknown>)[1]],
    })
  })

  it("refuses a batch over MAX_BATCH_CLICKS or MAX_BATCH_BYTES (413), and a body that is no batch", async () => {
    const page = pages[0] ?? ""
    const tooMany = Array.from({ length: 1001 }, () => ({ page_uuid: page, coordinates: { x: 0.5, y: 0.5 } }))
    const many = await post(served.url, JSON.stringify(tooMany))
    expect(many).toMatchObject({ status: 413, body: { _tag: "PayloadTooLarge" } })
    expect(JSON.stringify(many.body)).toContain("MAX_BATCH_CLICKS")
    // Over 16 KiB (MAX_BODY_BYTES) is fine for a batch; over 1 MiB is not.
    const padded = [{ page_uuid: page, coordinates: { x: 0.5, y: 0.5 }, note: "x".repeat(1024 * 1024) }]
    const large = await post(served.url, JSON.stringify(padded))
    expect(large).toMatchObject({ status: 413, body: { _tag: "PayloadTooLarge" } })
    expect(JSON.stringify(large.body)).toContain("MAX_BATCH_BYTES")
    const fine = interleaved([page], 200, 6).map((c) => ({ ...c, note: "y".repeat(100) }))
    expect((await post(served.url, JSON.stringify(fine))).status).toBe(200)
    replay(fine, state)
    ack(fine)

    expect(
      await post(served.url, JSON.stringify({ page_uuid: page, coordinates: { x: 0.1, y: 0.1 } })),
    ).toMatchObject({ status: 422, body: { _tag: "InvalidRequest" } })
    expect(await post(served.url, "[{")).toMatchObject({ status: 400, body: { _tag: "MalformedRequest" } })
    expect(
      await post(served.url, `${JSON.stringify(fine[0])}\n{"page_uuid":`, "application/x-ndjson"),
    ).toMatchObject({ status: 400, body: { _tag: "MalformedRequest" } })
    expect(await post(served.url, "", "application/x-ndjson")).toMatchObject({ status: 422 })
    expect(await post(served.url, "[]", "application/x-www-form-urlencoded")).toMatchObject({
      status: 415,
      body: { _tag: "UnsupportedMediaType" },
    })
    // An empty batch is answered with no answers.
    expect(await post(served.url, "[]")).toEqual({ status: 200, body: [] })
  })

  it("has every acknowledged click stored, once", async () => {
    await served.server.stop()
    const rows = await served.storage.query<{ page_uuid: string; n: string }>(
      "SELECT page_uuid, count(*) AS n FROM clicks WHERE page_uuid = ANY($1) GROUP BY page_uuid",
      [[...acknowledged.keys()]],
    )
    const stored = new Map(rows.map((r) => [r.page_uuid, Number(r.n)]))
    expect(stored).toEqual(acknowledged)
  })
})
