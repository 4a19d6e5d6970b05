import { randomUUID } from "node:crypto"
import { describe, expect, it } from "@effect/vitest"
import { servedStorage } from "../support/ServedStorage.ts"
import { storageModes } from "../support/StorageModes.ts"
import { artifactPath, chromiumBrowser, fixtureOrigin } from "./Chromium.ts"

interface Cluster {
  readonly cluster_idx: number
  readonly centroid: { readonly x: number; readonly y: number }
  readonly count: number
}

/** The document the fixture page lays out: wider and taller than the window, so coordinates are the document's. */
const DOCUMENT = { width: 1600, height: 2000 } as const
const VIEWPORT = { width: 1000, height: 700 } as const

/** Where the test clicks (document pixels), with how many clicks around each spot. */
const SPOTS = [
  { x: 300, y: 200, clicks: 4 },
  { x: 1300, y: 450, clicks: 3 },
  { x: 700, y: 1700, clicks: 2 },
] as const

/** A few pixels around a spot: the i-th click's offset. */
const jitter = (i: number) => ({ dx: ((i * 7) % 13) - 6, dy: ((i * 5) % 11) - 5 })

/** A customer's page on another origin, with the one script tag. */
const fixturePage = (service: string, page: string, attributes = 'data-interval="60000"') => `<!doctype html>
<html><head><meta charset="utf-8"><title>A tracked page</title>
<style>
  html, body { margin: 0; }
  body { width: ${DOCUMENT.width}px; height: ${DOCUMENT.height}px; position: relative; font: 16px system-ui; background: #fff; }
  header { height: 80px; background: #1f3a5f; color: #fff; padding: 24px; box-sizing: border-box; font-size: 24px; }
  button { position: absolute; transform: translate(-50%, -50%); padding: 12px 24px; font-size: 18px; }
</style>
<script src="${service}/tracker.js" data-page="${page}" ${attributes} async></script>
</head><body>
<header>A tracked page</header>
${SPOTS.map((s, i) => `<button style="left:${s.x}px;top:${s.y}px">Button ${i + 1}</button>`).join("\n")}
</body></html>`

// The browser does not care where clicks are stored: one storage mode (Postgres when CI names one) is enough.
const storage = storageModes().at(-1)
if (storage === undefined) throw new Error("no storage mode")

describe("tracker.js on another origin, in Chromium", () => {
  const served = servedStorage(storage.make)
  const browser = chromiumBrowser()
  const page = `tracked/${randomUUID()}`
  const quietPage = `quiet/${randomUUID()}`
  // The page, and a screenshot of it once a test took one (the map's background).
  let screenshot: Buffer | undefined
  const site = fixtureOrigin((request, response) => {
    if (request.url === "/screenshot.png" && screenshot !== undefined)
      response.writeHead(200, { "content-type": "image/png" }).end(screenshot)
    else
      response.writeHead(200, { "content-type": "text/html; charset=utf-8" }).end(
        request.url === "/quiet.html"
          ? // Another page id; Do-Not-Track respected, sent every 200 ms otherwise.
            fixturePage(served.url, quietPage, 'data-respect-dnt="true" data-interval="200"')
          : fixturePage(served.url, page),
      )
  })

  it("records clicks as document-relative coordinates and sends them when the page is hidden", async () => {
    const tab = await browser.current.newPage({ viewport: VIEWPORT })
    const problems: Array<string> = []
    tab.on("pageerror", (error) => problems.push(`page error: ${error.message}`))
    // The async tracker delays the load event: once loaded, it listens.
    await tab.goto(`${site.url}/index.html`, { waitUntil: "load" })
    const size = await tab.evaluate(
      "[document.documentElement.scrollWidth, document.documentElement.scrollHeight]",
    )
    expect(size).toEqual([DOCUMENT.width, DOCUMENT.height])

    const expected: Array<Array<{ x: number; y: number }>> = []
    let n = 0
    for (const spot of SPOTS) {
      // Scroll the spot into the window (the browser keeps the scroll within the document); the mouse clicks in
      // window coordinates.
      const scroll = await tab.evaluate(
        `window.scrollTo(${spot.x - VIEWPORT.width / 2}, ${spot.y - VIEWPORT.height / 2}); [scrollX, scrollY]`,
      )
      if (!Array.isArray(scroll) || typeof scroll[0] !== "number" || typeof scroll[1] !== "number")
        throw new Error(`no scroll position: ${JSON.stringify(scroll)}`)
      const [scrollX, scrollY] = scroll
      const clicks: Array<{ x: number; y: number }> = []
      for (let i = 0; i < spot.clicks; i++, n++) {
        const { dx, dy } = jitter(n)
        const pageX = spot.x + dx
        const pageY = spot.y + dy
        await tab.mouse.click(pageX - scrollX, pageY - scrollY)
        clicks.push({ x: pageX / DOCUMENT.width, y: pageY / DOCUMENT.height })
      }
      expected.push(clicks)
    }
    const clusters = async () => {
      const response = await fetch(`${served.url}/pages/${encodeURIComponent(page)}/clusters`)
      if (response.status === 404) return []
      return ((await response.json()) as { clusters: ReadonlyArray<Cluster> }).clusters
    }
    // Nothing sent yet: the timer is a minute away and the batch is far from full.
    expect(await clusters()).toEqual([])

    // Leaving the page hides it: the batch goes out as a beacon (text/plain, no preflight).
    await tab.goto("about:blank")
    const total = SPOTS.reduce((sum, s) => sum + s.clicks, 0)
    await expect
      .poll(async () => (await clusters()).reduce((sum, c) => sum + c.count, 0), { timeout: 30_000 })
      .toBe(total)

    const stored = await clusters()
    expect(stored.map((c) => c.count)).toEqual(SPOTS.map((s) => s.clicks))
    stored.forEach((cluster, i) => {
      const clicks = expected[i] ?? []
      const mean = (f: (c: { x: number; y: number }) => number) =>
        clicks.reduce((sum, c) => sum + f(c), 0) / clicks.length
      expect(cluster.centroid.x).toBeCloseTo(
        mean((c) => c.x),
        9,
      )
      expect(cluster.centroid.y).toBeCloseTo(
        mean((c) => c.y),
        9,
      )
    })
    // The biggest cluster lists its clicks: exactly the document-relative coordinates clicked.
    const best = (await (
      await fetch(`${served.url}/get_best_cluster?page_uuid=${encodeURIComponent(page)}`)
    ).json()) as { cluster: { all_coordinates: ReadonlyArray<{ x: number; y: number }> } }
    expect(best.cluster.all_coordinates).toEqual(expected[0])
    expect(problems).toEqual([])
    await tab.close()
  })

  it("shows the tracked page's clusters on the map, over a screenshot of the page", async () => {
    const shot = await browser.current.newPage({ viewport: VIEWPORT })
    await shot.goto(`${site.url}/index.html`, { waitUntil: "load" })
    screenshot = await shot.screenshot({ fullPage: true })
    await shot.close()

    const tab = await browser.current.newPage({ viewport: { width: 1440, height: 900 } })
    await tab.goto(
      `${served.url}/pages/${encodeURIComponent(page)}/map?background=${encodeURIComponent(`${site.url}/screenshot.png`)}`,
    )
    await tab.waitForSelector("body[data-live=true]")
    const counts = await tab.$$eval("#map circle", (all) =>
      all.map((c) => Number(c.getAttribute("data-count"))),
    )
    expect(counts).toEqual(SPOTS.map((s) => s.clicks))
    await tab.screenshot({ path: artifactPath("tracked-page-map.png") })
    await tab.close()
  })

  it("sends on its timer while the page stays open, and records nothing under Do-Not-Track when told to", async () => {
    const stored = async () => {
      const response = await fetch(`${served.url}/pages/${encodeURIComponent(quietPage)}/clusters`)
      if (response.status === 404) return 0
      const body = (await response.json()) as { clusters: ReadonlyArray<Cluster> }
      return body.clusters.reduce((sum, c) => sum + c.count, 0)
    }
    // A visitor with Do-Not-Track: clicks, then leaves (which would send the batch).
    const tracked = await browser.current.newContext({ viewport: VIEWPORT })
    await tracked.addInitScript(
      "Object.defineProperty(Navigator.prototype, 'doNotTrack', { get: () => '1' })",
    )
    const dnt = await tracked.newPage()
    await dnt.goto(`${site.url}/quiet.html`, { waitUntil: "load" })
    for (const spot of SPOTS.slice(0, 1))
      for (let i = 0; i < 3; i++) await dnt.mouse.click(spot.x + i, spot.y)
    await dnt.goto("about:blank")
    await tracked.close()
    // A visitor without: two clicks, sent by the timer while the page stays open.
    const tab = await browser.current.newPage({ viewport: VIEWPORT })
    await tab.goto(`${site.url}/quiet.html`, { waitUntil: "load" })
    for (const spot of SPOTS.slice(0, 1))
      for (let i = 0; i < 2; i++) await tab.mouse.click(spot.x + i, spot.y)
    await expect.poll(stored, { timeout: 30_000 }).toBe(2)
    // The first visitor's clicks were never sent (they would have left before the second's).
    expect(await stored()).toBe(2)
    await tab.close()
  })
})
