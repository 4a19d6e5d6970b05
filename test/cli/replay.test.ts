import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { createServer, type Server } from "node:http"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { openClickFile } from "../../src/cli/ClickCsv.ts"
import { ClickReplayer, type ReplayReport } from "../../src/cli/ClickReplayer.ts"
import { freePort } from "../support/ServerProcess.ts"

interface Arrival {
  readonly page: string
  /** The row's number in the file, carried in `x` (row / 1e6) so the stub can tell rows apart. */
  readonly row: number
}

/**
 * A stand-in for the service that records the order in which clicks arrive, answers after a random delay (so
 * that answers overtake one another) and notes any moment where one page had two requests in flight.
 */
class RecordingStub {
  readonly arrivals: Array<Arrival> = []
  readonly overlaps: Array<string> = []
  maxInFlight = 0
  private inFlight = 0
  private readonly pagesInFlight = new Set<string>()
  private server: Server | undefined
  url = ""

  constructor(private readonly statusFor: (arrival: Arrival) => number = () => 200) {}

  async start(): Promise<void> {
    this.server = createServer((request, response) => {
      const chunks: Array<Buffer> = []
      request.on("data", (chunk: Buffer) => chunks.push(chunk))
      request.on("end", () => {
        const body: { page_uuid: string; coordinates: { x: number } } = JSON.parse(
          Buffer.concat(chunks).toString(),
        )
        const arrival = { page: body.page_uuid, row: Math.round(body.coordinates.x * 1e6) }
        this.arrivals.push(arrival)
        if (this.pagesInFlight.has(arrival.page)) this.overlaps.push(`${arrival.page} row ${arrival.row}`)
        this.pagesInFlight.add(arrival.page)
        this.inFlight++
        this.maxInFlight = Math.max(this.maxInFlight, this.inFlight)
        setTimeout(() => {
          this.pagesInFlight.delete(arrival.page)
          this.inFlight--
          response.writeHead(this.statusFor(arrival), { "content-type": "application/json" })
          response.end('{"cluster_idx":0,"is_new":false}')
        }, Math.random() * 4)
      })
    })
    const server = this.server
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
    const address = server.address()
    this.url = `http://127.0.0.1:${typeof address === "object" && address !== null ? address.port : 0}`
  }

  async stop(): Promise<void> {
    await new Promise((resolve) => this.server?.close(resolve))
  }

  /** Rows of each page in the order they arrived. */
  orderByPage(): Map<string, Array<number>> {
    const byPage = new Map<string, Array<number>>()
    for (const a of this.arrivals) byPage.set(a.page, [...(byPage.get(a.page) ?? []), a.row])
    return byPage
  }
}

const dir = mkdtempSync(join(tmpdir(), "replay-test-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

/** Writes a click file; `x` carries the row number so that arrivals can be traced back to rows. */
const clickFile = (
  name: string,
  pages: ReadonlyArray<string>,
  header: boolean,
  extraLines: Array<string> = [],
) => {
  const lines = header ? ["page_uuid,x,y,timestamp"] : []
  for (const [row, page] of pages.entries())
    lines.push(`${page},${row / 1e6},0.5,2026-01-01T00:00:${String(row % 60).padStart(2, "0")}Z`)
  lines.push(...extraLines)
  const path = join(dir, name)
  writeFileSync(path, `${lines.join("\n")}\n`)
  return path
}

const replay = (path: string, url: string, concurrency: number, readAhead: number) =>
  Effect.gen(function* () {
    const file = yield* openClickFile(path)
    const replayer = new ClickReplayer({
      url,
      endpoint: "/save_click_and_predict_cluster",
      concurrency,
      readAhead,
      timeout: "10 seconds",
    })
    return yield* replayer.run(file.rows)
  })

/** The rows of each page in file order. */
const fileOrder = (pages: ReadonlyArray<string>) => {
  const byPage = new Map<string, Array<number>>()
  for (const [row, page] of pages.entries()) byPage.set(page, [...(byPage.get(page) ?? []), row])
  return byPage
}

describe("replay", () => {
  // 12 pages, 40 clicks each, interleaved in a shuffled but fixed order.
  const pages = Array.from({ length: 480 }, (_, i) => `site/${(i * 7 + Math.floor(i / 5)) % 12}`)
  const failing = (a: Arrival) => (a.row % 50 === 7 ? 503 : 200)
  const stub = new RecordingStub(failing)

  beforeAll(() => stub.start())
  afterAll(() => stub.stop())

  it.live("keeps each page's file order with many requests in flight across pages", () =>
    Effect.gen(function* () {
      const path = clickFile("interleaved.csv", pages, true)
      const report: ReplayReport = yield* replay(path, stub.url, 8, 32)
      expect(stub.overlaps).toEqual([])
      expect(stub.orderByPage()).toEqual(fileOrder(pages))
      expect(stub.maxInFlight).toBeGreaterThan(1)
      expect(stub.maxInFlight).toBeLessThanOrEqual(8)
      const failed = pages.filter((_, row) => row % 50 === 7).length
      expect(report).toMatchObject({
        rows: 480,
        skipped: 0,
        sent: 480,
        ok: 480 - failed,
        errors: failed,
        errorsByStatus: { "503": failed },
      })
      const endpoint = report.endpoints["/save_click_and_predict_cluster"]
      expect(endpoint?.latencyMs.count).toBe(480)
      expect(endpoint?.latencyMs.p50).toBeGreaterThan(0)
      expect(endpoint?.latencyMs.max).toBeGreaterThanOrEqual(endpoint?.latencyMs.p99 ?? Infinity)
    }),
  )

  it.live(
    "reads a file without a header, skips records that are not clicks, and finishes a one-page file",
    () =>
      Effect.gen(function* () {
        const before = stub.arrivals.length
        const onePage = Array.from({ length: 60 }, () => "only/page")
        const path = clickFile("one-page.csv", onePage, false, [
          "only/page,not-a-number,0.5",
          "",
          "only/page",
        ])
        // A read-ahead far below the page's run of clicks: the reader waits for answers instead of buffering.
        const report = yield* replay(path, stub.url, 4, 5)
        expect(report.rows).toBe(62)
        expect(report.skipped).toBe(2)
        expect(report.skippedExamples.map((e) => e.record)).toEqual([61, 62])
        expect(stub.arrivals.slice(before).map((a) => a.row)).toEqual(onePage.map((_, row) => row))
        expect(stub.overlaps).toEqual([])
      }),
  )

  it.live("counts requests that get no answer by reason", () =>
    Effect.gen(function* () {
      const closed = `http://127.0.0.1:${yield* Effect.promise(freePort)}`
      const path = clickFile("refused.csv", ["a/1", "a/2", "a/1"], true)
      const report = yield* replay(path, closed, 2, 10)
      expect(report).toMatchObject({
        sent: 3,
        ok: 0,
        errors: 3,
        errorsByStatus: { "network: ECONNREFUSED": 3 },
      })
    }),
  )

  it.live("fails on a header without coordinates", () =>
    Effect.gen(function* () {
      const path = join(dir, "bad-header.csv")
      writeFileSync(path, "page_uuid,when\na/1,2026\n")
      const error = yield* Effect.flip(replay(path, stub.url, 2, 10))
      expect(error._tag).toBe("ClickFileError")
    }),
  )
})
