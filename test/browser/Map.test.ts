import { randomUUID } from "node:crypto"
import { describe, expect, it } from "@effect/vitest"
import type { Page } from "playwright-core"
import { servedStorage } from "../support/ServedStorage.ts"
import { storageModes } from "../support/StorageModes.ts"
import { artifactPath, chromiumBrowser, fixtureOrigin } from "./Chromium.ts"

interface Cluster {
  readonly cluster_idx: number
  readonly count: number
}

/** The background image, served from another origin: a light grid, as a page's screenshot would sit there. */
const grid = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 100 100"><rect width="100" height="100" fill="#f4f6fb"/>${Array.from(
  { length: 9 },
  (_, i) => `<path d="M${(i + 1) * 10} 0V100M0 ${(i + 1) * 10}H100" stroke="#d5dbe8" stroke-width="0.3"/>`,
).join("")}</svg>`

/** The circles the map draws: cluster index → the count it shows. */
const circles = (page: Page) =>
  page.$$eval("#map circle", (all) =>
    Object.fromEntries(
      all.map((c) => [Number(c.getAttribute("data-idx")), Number(c.getAttribute("data-count"))]),
    ),
  )

// The browser does not care where clicks are stored: one storage mode (Postgres when CI names one) is enough.
const storage = storageModes().at(-1)
if (storage === undefined) throw new Error("no storage mode")

describe("the cluster map, in Chromium", () => {
  const served = servedStorage(storage.make)
  const browser = chromiumBrowser()
  const backgrounds: Array<string> = []
  const images = fixtureOrigin((request, response) => {
    backgrounds.push(request.url ?? "")
    response.writeHead(200, { "content-type": "image/svg+xml" }).end(grid)
  })
  const page = `map/${randomUUID()}`

  const save = async (x: number, y: number) => {
    const response = await fetch(`${served.url}/save_click_and_predict_cluster`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ page_uuid: page, coordinates: { x, y } }),
    })
    expect(response.status).toBe(200)
  }
  const clusters = async () => {
    const response = await fetch(`${served.url}/pages/${encodeURIComponent(page)}/clusters`)
    expect(response.status).toBe(200)
    const body = (await response.json()) as { clusters: ReadonlyArray<Cluster> }
    return Object.fromEntries(body.clusters.map((c) => [c.cluster_idx, c.count]))
  }

  it("draws a page's clusters as circles with their counts, and follows new clicks live without a reload", async () => {
    // Three spots, far apart, with 3, 2 and 1 clicks.
    for (const [x, y] of [
      [0.2, 0.2],
      [0.21, 0.2],
      [0.2, 0.21],
      [0.75, 0.3],
      [0.76, 0.3],
      [0.5, 0.8],
    ] as const)
      await save(x, y)
    const stored = await clusters()
    expect(Object.values(stored).sort()).toEqual([1, 2, 3])

    const tab = await browser.current.newPage({ viewport: { width: 1440, height: 900 } })
    const problems: Array<string> = []
    tab.on("pageerror", (error) => problems.push(`page error: ${error.message}`))
    // A refused inline script, style or image is a console error; failed loads are told by their response.
    tab.on("console", (message) => {
      if (message.type() === "error" && !message.text().startsWith("Failed to load resource"))
        problems.push(`console: ${message.text()}`)
    })
    tab.on("response", (response) => {
      if (response.status() >= 400 && new URL(response.url()).pathname !== "/favicon.ico")
        problems.push(`${response.status()} ${response.url()}`)
    })
    const background = `${images.url}/grid.svg`
    await tab.goto(
      `${served.url}/pages/${encodeURIComponent(page)}/map?background=${encodeURIComponent(background)}`,
    )
    await tab.waitForSelector("body[data-live=true]")
    expect(await circles(tab)).toEqual(stored)
    expect(await tab.locator("#rows tr").count()).toBe(3)
    // The background came from its own origin, which the page's policy names.
    expect(backgrounds).toContain("/grid.svg")

    // More clicks while the map is open: the counts move and a fourth cluster appears, in the same document.
    let navigations = 0
    tab.on("framenavigated", (frame) => {
      if (frame === tab.mainFrame()) navigations += 1
    })
    for (const [x, y] of [
      [0.5, 0.81],
      [0.51, 0.8],
      [0.75, 0.31],
      [0.3, 0.6],
    ] as const)
      await save(x, y)
    const after = await clusters()
    expect(Object.keys(after)).toHaveLength(4)
    await expect.poll(() => circles(tab), { timeout: 30_000 }).toEqual(after)
    expect(navigations).toBe(0)
    // The hover text names the cluster, its clicks and its centroid.
    expect(await tab.locator("#map circle title").first().textContent()).toMatch(
      /^cluster \d+: \d+ clicks \(\d+\.\d%\)\ncentroid \(0\.\d{4}, 0\.\d{4}\)\nfirst \d{4}-/,
    )
    // The inline script and style ran under the page's Content-Security-Policy: nothing was refused.
    expect(problems).toEqual([])

    await tab.screenshot({ path: artifactPath("cluster-map.png"), fullPage: true })
    await tab.close()
  })
})
