import { randomUUID } from "node:crypto"
import { describe, expect, it } from "@effect/vitest"
import { servedStorage } from "../support/ServedStorage.ts"
import { externalStorage } from "../support/StorageModes.ts"

/** The value of one sample line of the exposition (0 when absent). */
const sample = (text: string, name: string) => {
  const line = text.split("\n").find((l) => l.startsWith(`${name} `))
  return line === undefined ? 0 : Number(line.slice(name.length + 1))
}

// External Postgres: the test renames the snapshot table under the running server to make snapshots fail.
describe("snapshot metrics move", () => {
  const served = servedStorage(externalStorage, { SNAPSHOT_EVERY: "2" })

  const metrics = async () => (await fetch(`${served.url}/metrics`)).text()
  const save = async (page: string, x: number) => {
    const response = await fetch(`${served.url}/save_click_and_predict_cluster`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ page_uuid: page, coordinates: { x, y: 0.5 } }),
    })
    expect(response.status).toBe(200)
  }
  /** Polls the exposition until `ready` holds (snapshots are written off the request path). */
  const eventually = async (ready: (text: string) => boolean) => {
    for (let i = 0; i < 100; i++) {
      const text = await metrics()
      if (ready(text)) return text
      await new Promise((r) => setTimeout(r, 100))
    }
    return metrics()
  }

  it("counts stored snapshots with their duration, and failed ones as database errors", async () => {
    const before = await metrics()
    const written = sample(before, "snapshots_written_total")
    const timed = sample(before, "snapshot_duration_seconds_count")
    const page = `metrics-${randomUUID()}`
    for (const x of [0.1, 0.2, 0.3, 0.4]) await save(page, x)
    const after = await eventually((t) => sample(t, "snapshots_written_total") >= written + 2)
    expect(sample(after, "snapshots_written_total")).toBeGreaterThanOrEqual(written + 2)
    expect(sample(after, "snapshot_duration_seconds_count")).toBeGreaterThanOrEqual(timed + 2)

    const failing = 'database_errors_total{operation="snapshot"}'
    const errorsBefore = sample(after, failing)
    await served.storage.query("ALTER TABLE page_snapshots RENAME TO page_snapshots_away")
    try {
      for (const x of [0.5, 0.6]) await save(page, x)
      const failed = await eventually((t) => sample(t, failing) > errorsBefore)
      expect(sample(failed, failing)).toBe(errorsBefore + 1)
      expect(sample(failed, "snapshots_written_total")).toBe(sample(after, "snapshots_written_total"))
    } finally {
      await served.storage.query("ALTER TABLE page_snapshots_away RENAME TO page_snapshots")
    }
  })
})
