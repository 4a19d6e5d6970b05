import { randomUUID } from "node:crypto"
import { describe, expect, it } from "@effect/vitest"
import { servedStorage } from "../support/ServedStorage.ts"
import { storageModes } from "../support/StorageModes.ts"

const save = (url: string, page: string, x: number, y: number, headers: Record<string, string> = {}) =>
  fetch(`${url}/save_click_and_predict_cluster`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify({ page_uuid: page, coordinates: { x, y } }),
  })

/** The value of one sample line of the exposition, e.g. `clicks_saved_total`. */
const sample = (exposition: string, line: string) => {
  const found = exposition.split("\n").find((l) => l.startsWith(`${line} `))
  return found === undefined ? undefined : Number(found.slice(line.length + 1))
}

describe.each(storageModes())("operations, $name storage", ({ make }) => {
  const served = servedStorage(make, { LOG_LEVEL: "debug" })

  it("answers the probes", async () => {
    expect(await (await fetch(`${served.url}/healthz`)).json()).toEqual({ status: "ok" })
    const ready = await fetch(`${served.url}/readyz`)
    expect(ready.status).toBe(200)
    expect(await ready.json()).toEqual({ status: "ready" })
  })

  it("counts requests, clicks, clusters, predictions and batches in the Prometheus exposition", async () => {
    const page = `ops-${randomUUID()}`
    for (const [x, y] of [
      [0.1, 0.1],
      [0.11, 0.1],
      [0.8, 0.8],
    ] as const) {
      expect((await save(served.url, page, x!, y!)).status).toBe(200)
    }
    await fetch(`${served.url}/predict_cluster`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ page_uuid: page, coordinates: { x: 0.1, y: 0.1 } }),
    })
    await fetch(`${served.url}/no_such_route`)
    const response = await fetch(`${served.url}/metrics`)
    expect(response.headers.get("content-type")).toMatch(/^text\/plain/)
    const text = await response.text()
    expect(sample(text, "clicks_saved_total")).toBeGreaterThanOrEqual(3)
    expect(sample(text, "clusters_created_total")).toBeGreaterThanOrEqual(2)
    expect(sample(text, "predictions_total")).toBeGreaterThanOrEqual(1)
    expect(sample(text, "page_actors_active")).toBeGreaterThanOrEqual(1)
    expect(sample(text, "page_mailbox_depth")).toBe(0)
    expect(sample(text, "click_log_batch_size_count")).toBeGreaterThanOrEqual(1)
    expect(sample(text, "click_log_commit_duration_seconds_count")).toBeGreaterThanOrEqual(1)
    expect(sample(text, "page_recovery_duration_seconds_count")).toBeGreaterThanOrEqual(1)
    expect(
      sample(text, 'http_requests_total{route="/save_click_and_predict_cluster",method="POST",status="200"}'),
    ).toBeGreaterThanOrEqual(3)
    expect(
      sample(text, 'http_requests_total{route="unmatched",method="GET",status="404"}'),
    ).toBeGreaterThanOrEqual(1)
    expect(text).toContain(
      'http_request_duration_seconds_bucket{le="0.005",route="/save_click_and_predict_cluster"',
    )
    for (const name of ["snapshots_written_total", "snapshot_duration_seconds", "database_errors_total"]) {
      expect(text).toContain(`# TYPE ${name}`)
    }
  })

  it("echoes a client's x-request-id, makes one otherwise, and logs each request as one JSON line", async () => {
    const page = `ops-log-${randomUUID()}`
    const given = await save(served.url, page, 0.5, 0.5, { "x-request-id": "tracker-42" })
    expect(given.headers.get("x-request-id")).toBe("tracker-42")
    const made = await fetch(`${served.url}/nope`)
    expect(made.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/)
    await new Promise((r) => setTimeout(r, 200))
    const lines = served.server.logs
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map(
        (l) => JSON.parse(l) as { message: string; logLevel: string; annotations: Record<string, unknown> },
      )
    const logged = lines.find((l) => l.message === "request" && l.annotations.request_id === "tracker-42")
    expect(logged?.logLevel).toBe("DEBUG")
    expect(logged?.annotations).toMatchObject({
      route: "/save_click_and_predict_cluster",
      method: "POST",
      page,
      status: 200,
    })
    expect(typeof logged?.annotations.latency_ms).toBe("number")
    expect(lines.some((l) => typeof l.message === "string" && l.message.startsWith("storage: "))).toBe(true)
  })
})
