import { randomUUID } from "node:crypto"
import { OpenApi } from "@effect/platform"
import { beforeAll, describe, expect, it } from "@effect/vitest"
import { countPeriods } from "../../src/domain/Periods.ts"
import { Api } from "../../src/http/Api.ts"
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

  it("serves at /openapi.json the document OpenApi.test.ts checks", async () => {
    const response = await fetch(`${served.url}/openapi.json`)
    expect(response.status).toBe(200)
    expect(await response.json()).toEqual(OpenApi.fromApi(Api))
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

  it("reads back pages with the longest id a save accepts: 512 characters, slashes and multibyte characters", async () => {
    const fill = (prefix: string, unit: string) => {
      let id = prefix
      while (id.length + unit.length <= 512) id += unit
      return id.padEnd(512, "x")
    }
    const pages = [
      fill(`long/${randomUUID()}/`, "a"),
      fill(`long/${randomUUID()}/`, "€/é😀%2F?#&"), // 9 bytes per € once encoded, an astral pair, reserved characters
      fill(`case/${randomUUID()}/`, "İẞK"), // characters whose lower case has another length or is another letter
    ]
    const hour = 3_600_000
    const from = new Date(Math.floor(Date.now() / hour) * hour - hour).toISOString()
    const to = new Date(Math.floor(Date.now() / hour) * hour + 2 * hour).toISOString()
    for (const id of pages) {
      expect(id).toHaveLength(512)
      const saved = await fetch(`${served.url}/save_click_and_predict_cluster`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ page_uuid: id, coordinates: { x: 0.5, y: 0.5 } }),
      })
      expect(saved.status).toBe(200)
      const clusters = await fetch(`${served.url}/pages/${encodeURIComponent(id)}/clusters`)
      expect(clusters.status).toBe(200)
      const body = (await clusters.json()) as {
        page_uuid: string
        clusters: ReadonlyArray<{ count: number }>
      }
      expect(body.page_uuid).toBe(id)
      expect(body.clusters.map((c) => c.count)).toEqual([1])
      const activity = await fetch(
        `${served.url}/pages/${encodeURIComponent(id)}/activity?granularity=hour&from=${from}&to=${to}`,
      )
      expect(activity.status).toBe(200)
      expect(((await activity.json()) as Activity).series.reduce((n, p) => n + p.clicks, 0)).toBe(1)
    }
    // One character more is the schema's 422 on every read, never the router's 404.
    const tooLong = encodeURIComponent(`${pages[1]}x`)
    for (const path of [
      `/pages/${tooLong}/clusters`,
      `/pages/${tooLong}/activity?granularity=day&from=${from}&to=${to}`,
    ]) {
      const response = await fetch(`${served.url}${path}`)
      expect(response.status).toBe(422)
      expect(((await response.json()) as { issues: ReadonlyArray<{ path: string }> }).issues[0]?.path).toBe(
        "page_uuid",
      )
    }
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

  it("refuses dates outside 0001..9999, dates Date.parse reads loosely and odd cluster indices with 422 naming the parameter", async () => {
    const day = "from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z"
    const cases: ReadonlyArray<readonly [query: string, param: string]> = [
      ["granularity=day&from=0000-01-01T00:00:00Z&to=0000-01-02T00:00:00Z", "from"],
      ["granularity=day&from=-000001-01-01T00:00:00Z&to=2026-01-02T00:00:00Z", "from"],
      ["granularity=day&from=-271821-04-20T00:00:00Z&to=2026-01-02T00:00:00Z", "from"],
      ["granularity=day&from=2026-01-01T00:00:00Z&to=%2B010000-01-01T00:00:00Z", "to"],
      ["granularity=month&from=9999-12-01T00:00:00Z&to=%2B275760-09-13T00:00:00Z", "to"],
      ["granularity=day&from=0001-01-01T00:00:00%2B01:00&to=0001-01-02T00:00:00Z", "from"], // year 0 in UTC
      ["granularity=day&from=9999-12-31T00:00:00Z&to=9999-12-31T23:00:00-05:00", "to"], // year 10000 in UTC
      ["granularity=day&from=1&to=2026-01-02T00:00:00Z", "from"], // Date.parse: 2001-01-01, local time
      ["granularity=day&from=2026-01-01T00:00:00&to=2026-01-02T00:00:00Z", "from"], // no zone: local time
      ["granularity=day&from=Jan%201%202026&to=2026-01-02T00:00:00Z", "from"],
      ["granularity=day&from=2026-01-01T00:00:00Z&to=2026-02-30T00:00:00Z", "to"],
      ["granularity=day&from=2026-01-01T00:00:00Z&to=", "to"],
      ["granularity=day&from=2026-01-01T00:00:00Z", "to"],
      ["granularity=day&from=2026-01-01T00:00:00Z&from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z", "from"],
      ["granularity=day&from=2026-01-01T00:00:00Z&to=2026-01-01T00:00:00Z", "from"],
      [`granularity=day&${day}&cluster_idx=2147483648`, "cluster_idx"],
      [`granularity=day&${day}&cluster_idx=99999999999999999999`, "cluster_idx"],
      [`granularity=day&${day}&cluster_idx=1e400`, "cluster_idx"],
      [`granularity=day&${day}&cluster_idx=1e3`, "cluster_idx"],
      [`granularity=day&${day}&cluster_idx=%205`, "cluster_idx"],
      [`granularity=day&${day}&cluster_idx=0x10`, "cluster_idx"],
      [`granularity=day&${day}&cluster_idx=1.5`, "cluster_idx"],
      [`granularity=day&${day}&cluster_idx=`, "cluster_idx"],
      [`granularity=day&${day}&cluster_idx=1&cluster_idx=2`, "cluster_idx"],
      [`granularity=DAY&${day}`, "granularity"],
      [`granularity=&${day}`, "granularity"],
      [`granularity=day&granularity=hour&${day}`, "granularity"],
      [day, "granularity"],
    ]
    for (const [query, param] of cases) {
      const response = await fetch(`${served.url}/pages/${encoded}/activity?${query}`)
      const body = (await response.json()) as { _tag: string; issues: ReadonlyArray<{ path: string }> }
      expect({ query, status: response.status, tag: body._tag }).toEqual({
        query,
        status: 422,
        tag: "InvalidRequest",
      })
      expect({ query, paths: body.issues.map((i) => i.path) }).toEqual({ query, paths: [param] })
    }
  })

  it("answers ranges at the edges of 0001..9999, dates without a time and the largest cluster index", async () => {
    const ask = async (query: string) => {
      const response = await fetch(`${served.url}/pages/${encoded}/activity?${query}`)
      expect({ query, status: response.status }).toEqual({ query, status: 200 })
      return (await response.json()) as Activity & { from: string; to: string }
    }
    const first = await ask("granularity=week&from=0001-01-03T00:00:00Z&to=0001-01-10T00:00:00Z")
    expect(first.series.map((p) => p.period_start)).toEqual(["0001-01-01T00:00:00Z", "0001-01-08T00:00:00Z"])
    const last = await ask("granularity=month&from=9999-11-15T00:00:00Z&to=9999-12-31T23:59:59.999Z")
    expect(last.series.map((p) => p.period_start)).toEqual(["9999-11-01T00:00:00Z", "9999-12-01T00:00:00Z"])
    const dates = await ask(
      "granularity=day&from=2026-01-01&to=2026-01-03T00:00:00%2B01:00&cluster_idx=2147483647",
    )
    expect([dates.from, dates.to, dates.series.length]).toEqual([
      "2026-01-01T00:00:00.000Z",
      "2026-01-02T23:00:00.000Z",
      2,
    ])
  })
})
