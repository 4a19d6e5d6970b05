import { describe, expect, it } from "@effect/vitest"
import { serverProcesses } from "../support/ServerProcess.ts"
import { type StorageMode, storageModes } from "../support/StorageModes.ts"
import { eventually, WebhookReceiver } from "./WebhookReceiver.ts"

const env = {
  WEBHOOK_ALLOW_PRIVATE: "true",
  WEBHOOK_BACKOFF: "100 millis",
  WEBHOOK_BACKOFF_MAX: "300 millis",
  WEBHOOK_MAX_ATTEMPTS: "1000",
  WEBHOOK_POLL_INTERVAL: "50 millis",
  // A killed process's claimed deliveries wait out their lease (2 × the timeout + 1 s) before another attempt.
  WEBHOOK_TIMEOUT: "1 second",
}
const PAGES = 8
const CLIENTS = 8

/** A small seeded generator: the clicks' places (the interleaving still depends on timing). */
const random = (seed: number) => () => {
  seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31
  return seed / 2 ** 31
}

/**
 * SIGKILL with events in the outbox: the receiver refuses everything while clients save clicks (so every event
 * waits in the outbox, retried), the service is killed mid-load, restarted, and the receiver then accepts. Every
 * cluster the stored clicks founded must be reported, once per event id, and no other: none lost, none for a click
 * that is not stored (an unacknowledged click is either stored, and reported, or not, and not reported).
 */
describe.each(storageModes())("webhooks through a SIGKILL, $name storage", ({ make }) => {
  const servers = serverProcesses()

  it("every event of a stored click is delivered after the restart, none lost, none invented", async () => {
    const storage: StorageMode = await make()
    let accepting = false
    const receiver = await WebhookReceiver.start(() => (accepting ? 200 : 503))
    try {
      let server = await servers.start({ ...storage.env, ...env })
      const made = await receiver.subscribe(server.url, ["cluster.created"])

      const acknowledged = new Set<string>()
      let unacknowledged = 0
      let stop = false
      const next = random(13)
      const client = async () => {
        while (!stop) {
          const page = `crash/${Math.floor(next() * PAGES)}`
          const body = { page_uuid: page, coordinates: { x: next(), y: next() } }
          try {
            const response = await fetch(`${server.url}/save_click_and_predict_cluster`, {
              method: "POST",
              headers: { "content-type": "application/json" },
              body: JSON.stringify(body),
            })
            const answer = (await response.json()) as { cluster_idx?: number; is_new?: boolean }
            if (response.status === 200 && answer.is_new === true)
              acknowledged.add(`${page}#${answer.cluster_idx}`)
            else if (response.status !== 200) unacknowledged++
          } catch {
            unacknowledged++
            await new Promise((r) => setTimeout(r, 20))
          }
        }
      }
      const load = Array.from({ length: CLIENTS }, client)
      await eventually(() => acknowledged.size >= 100, 30_000, "100 clusters acknowledged")
      // Events are waiting: the receiver has refused every one so far.
      expect(receiver.delivered()).toEqual([])
      await server.stop("SIGKILL")
      stop = true
      await Promise.all(load)

      accepting = true
      server = await servers.start({ ...storage.env, ...env })
      const count = async (state: string) => {
        const page = await fetch(`${server.url}/webhooks/${made.id}/deliveries?state=${state}`)
        return ((await page.json()) as { deliveries: ReadonlyArray<unknown> }).deliveries.length
      }
      await eventually(async () => (await count("pending")) === 0, 60_000, "every delivery settled")
      const dead = await count("dead")
      await server.stop("SIGTERM")

      const stored = await storage.query<{ page_uuid: string; cluster_idx: number }>(
        "SELECT DISTINCT page_uuid, cluster_idx FROM clicks",
      )
      const storedClusters = new Set(stored.map((r) => `${r.page_uuid}#${r.cluster_idx}`))
      const delivered = receiver.delivered()
      const byEvent = new Map(delivered.map((r) => [r.id, r.payload]))
      const reported = [...byEvent.values()].map((p) => `${p.data.page_uuid}#${p.data.cluster_idx}`)
      const figures = {
        acknowledgedClusters: acknowledged.size,
        unacknowledgedSaves: unacknowledged,
        storedClusters: storedClusters.size,
        events: byEvent.size,
        requests: receiver.received.length,
        refused: receiver.received.filter((r) => r.status !== 200).length,
        duplicateDeliveries: delivered.length - byEvent.size,
        dead,
      }
      console.log(`webhooks through a SIGKILL (${storage.name}):`, JSON.stringify(figures))
      expect(dead).toBe(0)
      expect(delivered.every((r) => r.verified)).toBe(true)
      // One event per cluster: no two event ids for the same founding click.
      expect(new Set(reported).size).toBe(reported.length)
      // None lost: every acknowledged new cluster is reported; none invented: every report is of a stored cluster.
      for (const cluster of acknowledged) expect(reported).toContain(cluster)
      expect(new Set(reported)).toEqual(storedClusters)
    } finally {
      await receiver.close()
      await storage.dispose()
    }
  }, 120_000)
})
