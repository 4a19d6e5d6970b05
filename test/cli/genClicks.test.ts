import { execFile } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { promisify } from "node:util"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { parse } from "csv-parse/sync"
import { clusterCentre, generateClicks } from "../../src/cli/ClickGenerator.ts"
import { scriptArgs } from "../support/ServerProcess.ts"

const options = {
  pages: 7,
  clusters: 3,
  clicks: 3000,
  noise: 0.01,
  seed: 42,
  start: Date.UTC(2026, 0, 1),
  rate: 50,
}

describe("click generator", () => {
  it("draws every click near one of its page's centres, inside the page, in time order", () => {
    const clicks = Array.from(generateClicks(options))
    expect(clicks).toHaveLength(3000)
    const pages = new Set(clicks.map((c) => c.page_uuid))
    expect(pages.size).toBe(7)
    for (const page of pages) expect(page).toMatch(/^[0-9a-f]{12}\/[0-6]$/)

    let previous = ""
    let far = 0
    for (const click of clicks) {
      expect(click.x).toBeGreaterThanOrEqual(0)
      expect(click.x).toBeLessThanOrEqual(1)
      expect(click.y).toBeGreaterThanOrEqual(0)
      expect(click.y).toBeLessThanOrEqual(1)
      expect(click.timestamp >= previous).toBe(true)
      previous = click.timestamp
      const page = Number(click.page_uuid.split("/")[1])
      const nearest = Math.min(
        ...[0, 1, 2].map((k) => {
          const c = clusterCentre(options.seed, page, k)
          return Math.hypot(click.x - c.x, click.y - c.y)
        }),
      )
      // Gaussian noise of 0.01 per axis: beyond 0.05 from every centre is a five-sigma event.
      if (nearest > 0.05) far++
    }
    expect(far).toBe(0)
    // The rate sets the mean gap between clicks: 3000 clicks at 50/s span about a minute.
    const span = Date.parse(clicks.at(-1)?.timestamp ?? "") - options.start
    expect(span).toBeGreaterThan(45_000)
    expect(span).toBeLessThan(75_000)
  })

  it("gives the same clicks for the same seed and other clicks for another", () => {
    const first = Array.from(generateClicks(options)).slice(0, 50)
    expect(Array.from(generateClicks(options)).slice(0, 50)).toEqual(first)
    expect(Array.from(generateClicks({ ...options, seed: 43 })).slice(0, 50)).not.toEqual(first)
  })
})

describe("gen-clicks command", () => {
  const dir = mkdtempSync(join(tmpdir(), "gen-clicks-test-"))
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  it("writes a CSV with a header and one row per click", async () => {
    const out = join(dir, "clicks.csv")
    const args = [...scriptArgs("src/cli/genClicks.ts"), "--pages", "4", "--clusters", "2", "--clicks", "500"]
    await promisify(execFile)(process.execPath, [...args, "--noise", "0.02", "--out", out, "--seed", "7"])
    const text = readFileSync(out, "utf8")
    expect(text.split("\n")[0]).toBe("page_uuid,x,y,timestamp")
    const rows: Array<Record<string, string>> = parse(text, { columns: true })
    expect(rows).toHaveLength(500)
    expect(new Set(rows.map((r) => r.page_uuid)).size).toBe(4)
    for (const row of rows) {
      expect(Number(row.x)).toBeGreaterThanOrEqual(0)
      expect(Number(row.y)).toBeLessThanOrEqual(1)
      expect(Number.isNaN(Date.parse(row.timestamp ?? ""))).toBe(false)
    }
  })
})
