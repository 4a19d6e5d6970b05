import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { SnapshotStore } from "../../src/persistence/SnapshotStore.ts"
import { ServerProcess, spawnScript } from "../support/ServerProcess.ts"
import { storageLayer } from "../support/StorageLayer.ts"
import { type StorageMode, storageModes } from "../support/StorageModes.ts"

const at = Date.UTC(2026, 10, 25, 12, 0, 0)

/** Runs `npm run export -- …` as a user would (without npm's banner) and collects what it printed. */
const runExport = (env: Record<string, string>, args: ReadonlyArray<string>) =>
  new Promise<{ code: number | null; stderr: string }>((resolve, reject) => {
    // Only the test's storage (spawnScript drops an inherited DATABASE_URL, which would take the embedded mode's place).
    const child = spawnScript("src/cli/export.ts", args, env, "ignore")
    let stderr = ""
    child.stderr?.on("data", (d: Buffer) => {
      stderr += d.toString()
    })
    child.once("error", reject)
    child.once("exit", (code) => resolve({ code, stderr }))
  })

const header = "page_uuid,cluster_idx,centroid_x,centroid_y,click_count,first_click_at,last_click_at,seq"
const rowsOfA = [
  "page-a,0,0.25,0.5,2,2026-11-25T12:00:00.000Z,2026-11-25T12:00:01.000Z,3",
  "page-a,1,0.75,0.125,1,2026-11-25T12:00:02.000Z,2026-11-25T12:00:02.000Z,3",
]
const rowsOfB = ['"page-b,""x""",0,0.5,0.5,4,2026-11-25T12:00:00.000Z,2026-11-25T12:00:09.000Z,4']

describe.each(storageModes())("npm run export, $name storage", ({ name, make }) => {
  let storage: StorageMode
  const out = mkdtempSync(join(tmpdir(), "click-clusters-export-"))

  beforeAll(async () => {
    storage = await make()
    // The snapshots as page actors write them, through the service's own migrated database layer.
    await Effect.runPromise(
      Effect.gen(function* () {
        const store = yield* SnapshotStore
        yield* store.save("page-a", {
          seq: 3,
          radius: 0.04,
          clusters: {
            sumX: [0.5, 0.75],
            sumY: [1, 0.125],
            count: [2, 1],
            firstAt: [at, at + 2000],
            lastAt: [at + 1000, at + 2000],
          },
        })
        yield* store.save('page-b,"x"', {
          seq: 4,
          radius: 0.04,
          clusters: { sumX: [2], sumY: [2], count: [4], firstAt: [at], lastAt: [at + 9000] },
        })
      }).pipe(Effect.provide(SnapshotStore.Default), Effect.provide(storageLayer(storage))),
    )
  })
  afterAll(async () => {
    await storage?.dispose()
    rmSync(out, { recursive: true, force: true })
  })

  it("writes every page's clusters as CSV, with progress and a summary on stderr", async () => {
    const file = join(out, "all.csv")
    const { code, stderr } = await runExport(storage.env, ["--format", "csv", "--out", file])
    expect(code, stderr).toBe(0)
    expect(readFileSync(file, "utf8")).toBe([header, ...rowsOfA, ...rowsOfB, ""].join("\n"))
    expect(stderr).toContain(`exported 3 rows of 2 pages to ${file}`)
    expect(existsSync(`${file}.partial`)).toBe(false)
  })

  it("writes NDJSON, and only one page with --page", async () => {
    const file = join(out, "b.ndjson")
    const { code, stderr } = await runExport(storage.env, [
      "--format",
      "ndjson",
      "--out",
      file,
      "--page",
      'page-b,"x"',
    ])
    expect(code, stderr).toBe(0)
    expect(
      readFileSync(file, "utf8")
        .trimEnd()
        .split("\n")
        .map((line) => JSON.parse(line)),
    ).toEqual([
      {
        page_uuid: 'page-b,"x"',
        cluster_idx: 0,
        centroid_x: 0.5,
        centroid_y: 0.5,
        click_count: 4,
        first_click_at: "2026-11-25T12:00:00.000Z",
        last_click_at: "2026-11-25T12:00:09.000Z",
        seq: 4,
      },
    ])
  })

  it("refuses an unknown format without writing anything", async () => {
    const file = join(out, "bad.xml")
    const { code, stderr } = await runExport(storage.env, ["--format", "xml", "--out", file])
    expect(code).not.toBe(0)
    expect(stderr).toMatch(/ndjson, csv/)
    expect(existsSync(file)).toBe(false)
  })

  it("writes the same rows as the HTTP export, right after saves that no snapshot covers yet", async () => {
    const server = await ServerProcess.start({
      ...storage.env,
      SNAPSHOT_EVERY: "1000",
      SNAPSHOT_INTERVAL: "1 hour",
    })
    let served: string
    try {
      for (const [page, x, y] of [
        ["saved/one", 0.1, 0.1],
        ["saved/two", 0.5, 0.5],
        ["saved/one", 0.11, 0.12],
        ["saved/one", 0.9, 0.9],
      ] as const) {
        const response = await fetch(`${server.url}/save_click_and_predict_cluster`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ page_uuid: page, coordinates: { x, y } }),
        })
        expect(response.status).toBe(200)
      }
      const response = await fetch(`${server.url}/snapshots/export?format=csv`)
      expect(response.status).toBe(200)
      served = await response.text()
    } finally {
      // Killed, so no snapshot is written at shutdown: the command too rebuilds the new pages from clicks alone.
      await server.stop("SIGKILL")
    }
    const saved = served.split("\n").filter((line) => line.startsWith("saved/"))
    expect(
      saved.map((line) => line.split(",").slice(0, 5).concat(line.split(",").slice(7)).join(",")),
    ).toEqual([
      "saved/one,0,0.10500000000000001,0.11,2,3",
      "saved/one,1,0.9,0.9,1,3",
      "saved/two,0,0.5,0.5,1,1",
    ])

    const file = join(out, "same.csv")
    const { code, stderr } = await runExport(storage.env, ["--format", "csv", "--out", file])
    expect(code, stderr).toBe(0)
    expect(readFileSync(file, "utf8")).toBe(served)
  })

  // Registered in the storage mode it concerns only (rather than reported as skipped in the other).
  if (name === "embedded")
    it("names the missing embedded database instead of creating an empty one", async () => {
      const empty = mkdtempSync(join(tmpdir(), "click-clusters-none-"))
      const { code, stderr } = await runExport({ DATA_DIR: empty }, [
        "--format",
        "csv",
        "--out",
        join(out, "x.csv"),
      ])
      expect(code).toBe(1)
      expect(stderr).toContain(`export failed: no embedded database in ${empty}`)
      expect(existsSync(join(empty, "PG_VERSION"))).toBe(false)
      rmSync(empty, { recursive: true, force: true })
    })

  if (name === "postgres")
    it("fails with the database's reason on one line", async () => {
      const url = new URL(storage.env.DATABASE_URL ?? "")
      url.pathname = "/click_clusters_no_such_database"
      const { code, stderr } = await runExport({ DATABASE_URL: url.toString(), DB_TIMEOUT: "2 seconds" }, [
        "--format",
        "csv",
        "--out",
        join(out, "x.csv"),
      ])
      expect(code).toBe(1)
      expect(stderr).toMatch(/^export failed: .*click_clusters_no_such_database/m)
      expect(existsSync(join(out, "x.csv"))).toBe(false)
    })
})
