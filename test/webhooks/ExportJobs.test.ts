import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { runId } from "../support/Cases.ts"
import { InProcessServer } from "../support/InProcessServer.ts"
import { type StorageMode, storageModes } from "../support/StorageModes.ts"
import { eventually, WebhookReceiver } from "./WebhookReceiver.ts"

const env = { WEBHOOK_ALLOW_PRIVATE: "true", WEBHOOK_POLL_INTERVAL: "50 millis" }

interface Job {
  readonly id: string
  readonly state: string
  readonly row_count: number
  readonly pages_total: number | null
  readonly pages_done: number
  readonly download: string | null
}

describe.each(storageModes())("export jobs, $name storage", ({ make }) => {
  let storage: StorageMode
  const run = runId()

  beforeAll(async () => {
    storage = await make()
  }, 60_000)
  afterAll(async () => {
    await storage?.dispose()
  })

  const client = (url: string) => async (method: string, path: string, body?: unknown) => {
    const response = await fetch(`${url}${path}`, {
      method,
      headers: body === undefined ? {} : { "content-type": "application/json" },
      body: body === undefined ? null : JSON.stringify(body),
    })
    return {
      status: response.status,
      type: response.headers.get("content-type"),
      text: await response.text(),
    }
  }

  it("a job answers 202 at once, completes in the background, downloads as the live export reads, and tells its subscribers", async () => {
    const server = await InProcessServer.run({ ...storage.env, ...env })
    const receiver = await WebhookReceiver.start(() => 200)
    try {
      const call = client(server.url)
      const page = `${run}/export`
      const made = await call("POST", "/webhooks", { url: receiver.url, events: ["export.completed"] })
      receiver.secret = JSON.parse(made.text).secret
      for (const [x, y] of [
        [0.1, 0.1],
        [0.11, 0.1],
        [0.8, 0.8],
      ])
        await call("POST", "/save_click_and_predict_cluster", { page_uuid: page, coordinates: { x, y } })
      const submitted = await call("POST", "/exports", { format: "csv", page })
      expect(submitted.status).toBe(202)
      const job = JSON.parse(submitted.text) as Job
      expect(["queued", "running", "completed"]).toContain(job.state)
      let done: Job = job
      await eventually(async () => {
        done = JSON.parse((await call("GET", `/exports/${job.id}`)).text)
        return done.state === "completed"
      })
      expect(done.row_count).toBe(2)
      expect(done.pages_total).toBe(1)
      expect(done.pages_done).toBe(1)
      expect(done.download).toBe(`/exports/${job.id}/download`)
      const file = await call("GET", `/exports/${job.id}/download`)
      const live = await call("GET", `/snapshots/export?format=csv&page_uuid=${encodeURIComponent(page)}`)
      expect(file.status).toBe(200)
      expect(file.type).toMatch(/^text\/csv/)
      expect(file.text).toBe(live.text)
      await eventually(() => receiver.delivered().length === 1)
      const event = receiver.delivered()[0]!
      expect(event.verified).toBe(true)
      expect(event.payload.type).toBe("export.completed")
      expect(event.payload.data).toMatchObject({ export_id: job.id, row_count: 2, download: done.download })
      expect((await call("GET", "/exports/00000000-0000-4000-8000-000000000000")).status).toBe(404)
      expect((await call("POST", "/exports", { format: "xml" })).status).toBe(422)
    } finally {
      await receiver.close()
      await server.stop()
    }
  })

  it("a job its process left running (killed) is run again after a restart, from the start, and completes", async () => {
    let server = await InProcessServer.run({ ...storage.env, ...env })
    const call = () => client(server.url)
    const page = `${run}/restart`
    await call()("POST", "/save_click_and_predict_cluster", {
      page_uuid: page,
      coordinates: { x: 0.5, y: 0.5 },
    })
    await server.stop()
    // What a killed process leaves: a running job under a lease that has run out, and a chunk of a partial file.
    const id = "11111111-1111-4111-8111-111111111111"
    await storage.query(
      `INSERT INTO export_jobs (id, format, page_uuid, state, runs, started_at, leased_until)
       VALUES ($1, 'ndjson', $2, 'running', 1, now() - interval '2 minutes', now() - interval '1 minute')`,
      [id, page],
    )
    await storage.query(`INSERT INTO export_job_chunks (job_id, n, data) VALUES ($1, 0, $2)`, [
      id,
      Buffer.from('{"partial": true}\n'),
    ])
    server = await InProcessServer.run({ ...storage.env, ...env })
    try {
      let job: Job | undefined
      await eventually(async () => {
        job = JSON.parse((await call()("GET", `/exports/${id}`)).text)
        return job?.state === "completed"
      })
      const file = await call()("GET", `/exports/${id}/download`)
      const rows = file.text
        .trim()
        .split("\n")
        .map((line) => JSON.parse(line))
      // The partial chunk of the killed run is gone: the file is the new run's whole.
      expect(rows).toHaveLength(1)
      expect(rows[0]).toMatchObject({ page_uuid: page, cluster_idx: 0, click_count: 1 })
    } finally {
      await server.stop()
    }
  })
})
