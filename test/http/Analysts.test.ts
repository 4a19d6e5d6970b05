import { randomUUID } from "node:crypto"
import { beforeAll, describe, expect, it } from "@effect/vitest"
import { countPeriods } from "../../src/domain/Periods.ts"
import { servedStorage } from "../support/ServedStorage.ts"
import { storageModes } from "../support/StorageModes.ts"

interface Activity {
  readonly series: ReadonlyArray<{ readonly period_start: string; readonly clicks: number }>
}

describe("countPeriods", () => {
  it("counts the UTC periods overlapping [from, to)", () => {
    const d = (s: string) => new Date(s)
    expect(countPeriods(d("2026-01-01T00:00:00Z"), d("2026-01-02T00:00:00Z"), "hour")).toBe(24)
    expect(countPeriods(d("2026-01-01T00:30:00Z"), d("2026-01-01T01:30:00Z"), "hour")).toBe(2)
    expect(countPeriods(d("2026-01-31T00:00:00Z"), d("2026-03-01T00:00:00Z"), "month")).toBe(2)
    expect(countPeriods(d("2026-11-25T00:00:00Z"), d("2026-11-26T00:00:00Z"), "week")).toBe(1) // a Wednesday
    expect(countPeriods(d("2026-11-25T00:00:00Z"), d("2026-11-25T00:00:00Z"), "day")).toBe(0)
  })
})

describe.each(storageModes())("analysts' API, $name storage", ({ make }) => {
  const served = servedStorage(make)
  const page = `analyst/${randomUUID()}`
  const encoded = encodeURIComponent(page)

  beforeAll(async () => {
    for (const [x, y] of [
      [0.2, 0.2],
      [0.21, 0.2],
      [0.7, 0.7],
    ] as const) {
      await fetch(`${served.url}/save_click_and_predict_cluster`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ page_uuid: page, coordinates: { x, y } }),
      })
    }
  })

  it("lists a page's clusters with centroid, count and first and last click time", async () => {
    const response = await fetch(`${served.url}/pages/${encoded}/clusters`)
    expect(response.status).toBe(200)
    const body = (await response.json()) as {
      page_uuid: string
      clusters: Array<{
        cluster_idx: number
        centroid: { x: number; y: number }
        count: number
        first_click_at: string
        last_click_at: string
      }>
    }
    expect(body.page_uuid).toBe(page)
    expect(body.clusters.map((c) => [c.cluster_idx, c.centroid, c.count])).toEqual([
      [0, { x: (0.2 + 0.21) / 2, y: 0.2 }, 2],
      [1, { x: 0.7, y: 0.7 }, 1],
    ])
    for (const c of body.clusters)
      expect(Date.parse(c.first_click_at)).toBeLessThanOrEqual(Date.parse(c.last_click_at))
    expect((await fetch(`${served.url}/pages/${encodeURIComponent("analyst/none")}/clusters`)).status).toBe(
      404,
    )
  })

  it("counts clicks per period, zero-filled, for the page or one cluster", async () => {
    const now = Date.now()
    const hour = 3_600_000
    const from = new Date(Math.floor(now / hour) * hour - 3 * hour).toISOString()
    const to = new Date(Math.floor(now / hour) * hour + 2 * hour).toISOString()
    const all = (await (
      await fetch(`${served.url}/pages/${encoded}/activity?granularity=hour&from=${from}&to=${to}`)
    ).json()) as Activity
    expect(all.series).toHaveLength(5)
    expect(all.series.map((p) => p.clicks)).toEqual([0, 0, 0, 3, 0])
    expect(all.series[0]?.period_start).toBe(from.replace(".000Z", "Z"))
    const one = (await (
      await fetch(
        `${served.url}/pages/${encoded}/activity?granularity=day&from=${from}&to=${to}&cluster_idx=1`,
      )
    ).json()) as Activity
    expect(one.series.reduce((n, p) => n + p.clicks, 0)).toBe(1)
  })

  it("refuses a reversed range, too many periods and unknown granularities with 422", async () => {
    const ask = (query: string) => fetch(`${served.url}/pages/${encoded}/activity?${query}`)
    expect((await ask("granularity=day&from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z")).status).toBe(422)
    expect((await ask("granularity=hour&from=2020-01-01T00:00:00Z&to=2026-01-01T00:00:00Z")).status).toBe(422)
    expect((await ask("granularity=hour&from=2026-01-01T00:00:00Z&to=2027-02-21T00:00:00Z")).status).toBe(200) // < 10,000 hours
    expect((await ask("granularity=minute&from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z")).status).toBe(
      422,
    )
    expect((await ask("granularity=day&from=yesterday&to=2026-01-02T00:00:00Z")).status).toBe(422)
    expect(
      (await ask("granularity=day&from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z&cluster_idx=-1")).status,
    ).toBe(422)
  })
})
