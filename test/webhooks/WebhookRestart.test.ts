import { describe, expect, it } from "@effect/vitest"
import { InProcessServer } from "../support/InProcessServer.ts"
import { storageModes } from "../support/StorageModes.ts"
import { eventually, WebhookReceiver } from "./WebhookReceiver.ts"

/** A long attempt timeout: its lease (2 × 60 s + 1 s) would hold the delivery for two minutes. */
const env = {
  WEBHOOK_ALLOW_PRIVATE: "true",
  WEBHOOK_TIMEOUT: "60 seconds",
  WEBHOOK_POLL_INTERVAL: "50 millis",
}

describe.each(storageModes())("webhooks through a graceful restart, $name storage", ({ make }) => {
  it("a service stopped mid-attempt gives the delivery back: the restarted one sends it at once, not after its lease", async () => {
    const storage = await make()
    const receiver = await WebhookReceiver.start((n) => (n === 0 ? "hang" : 200))
    try {
      let server = await InProcessServer.run({ ...storage.env, ...env })
      await receiver.subscribe(server.url, ["cluster.created"])
      await fetch(`${server.url}/save_click_and_predict_cluster`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ page_uuid: "restart/1", coordinates: { x: 0.5, y: 0.5 } }),
      })
      await eventually(() => receiver.received.length === 1, 20_000, "the first attempt")
      await server.stop()
      server = await InProcessServer.run({ ...storage.env, ...env })
      try {
        await eventually(() => receiver.delivered().length === 1, 20_000, "the delivery after the restart")
        expect(new Set(receiver.received.map((r) => r.id)).size).toBe(1)
        expect(receiver.delivered()[0]?.verified).toBe(true)
      } finally {
        await server.stop()
      }
    } finally {
      await receiver.close()
      await storage.dispose()
    }
  }, 60_000)
})
