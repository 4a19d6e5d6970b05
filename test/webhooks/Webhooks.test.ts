import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Webhook } from "standardwebhooks"
import { runId } from "../support/Cases.ts"
import { InProcessServer, type RunningServer } from "../support/InProcessServer.ts"
import { freePort } from "../support/ServerProcess.ts"
import { type StorageMode, storageModes } from "../support/StorageModes.ts"
import { eventually, WebhookReceiver } from "./WebhookReceiver.ts"

/** Short retries, so a failing receiver goes through every attempt within a test. */
const env = {
  WEBHOOK_ALLOW_PRIVATE: "true",
  WEBHOOK_BACKOFF: "100 millis",
  WEBHOOK_BACKOFF_MAX: "1 second",
  WEBHOOK_TIMEOUT: "500 millis",
  WEBHOOK_MAX_ATTEMPTS: "4",
  WEBHOOK_POLL_INTERVAL: "50 millis",
}

interface Subscription {
  readonly id: string
  readonly secret: string
  readonly url: string
  readonly events: ReadonlyArray<string>
  readonly pages: ReadonlyArray<string> | null
  readonly thresholds: ReadonlyArray<number>
}

interface Delivery {
  readonly id: number
  readonly event_id: string
  readonly event_type: string
  readonly state: string
  readonly attempts: number
  readonly attempt_log: ReadonlyArray<{ at: string; status: number | null; error: string | null }>
}

describe.each(storageModes())("webhooks, $name storage", ({ make }) => {
  let storage: StorageMode
  let server: RunningServer
  const run = runId()

  beforeAll(async () => {
    storage = await make()
    server = await InProcessServer.run({ ...storage.env, ...env })
  }, 60_000)
  afterAll(async () => {
    await server?.stop()
    await storage?.dispose()
  })

  const call = async (method: string, path: string, body?: unknown) => {
    const response = await fetch(`${server.url}${path}`, {
      method,
      headers: body === undefined ? {} : { "content-type": "application/json" },
      body: body === undefined ? null : JSON.stringify(body),
    })
    const text = await response.text()
    return { status: response.status, body: text === "" ? undefined : JSON.parse(text) }
  }

  const subscribe = async (receiver: WebhookReceiver, spec: Record<string, unknown>) => {
    const answer = await call("POST", "/webhooks", { url: receiver.url, ...spec })
    expect(answer.status).toBe(201)
    const subscription = answer.body as Subscription
    receiver.secret = subscription.secret
    return subscription
  }

  const save = async (page: string, x: number, y: number) => {
    const answer = await call("POST", "/save_click_and_predict_cluster", {
      page_uuid: page,
      coordinates: { x, y },
    })
    expect(answer.status).toBe(200)
    return answer.body as { cluster_idx: number; is_new: boolean }
  }

  const deliveries = async (subscription: string, query = "") => {
    const answer = await call("GET", `/webhooks/${subscription}/deliveries${query}`)
    expect(answer.status).toBe(200)
    return (answer.body as { deliveries: ReadonlyArray<Delivery> }).deliveries
  }

  it("subscriptions: made with a whsec_ secret shown once, listed and read without it, rotated, deleted", async () => {
    const receiver = await WebhookReceiver.start(() => 200)
    try {
      const made = await subscribe(receiver, {
        events: ["cluster.created", "cluster.threshold_reached"],
        pages: [`${run}/crud`],
        thresholds: [10, 5, 5],
      })
      expect(made.secret).toMatch(/^whsec_[A-Za-z0-9+/]+=*$/)
      expect(made.thresholds).toEqual([5, 10])
      expect(made.pages).toEqual([`${run}/crud`])
      const read = await call("GET", `/webhooks/${made.id}`)
      expect(read.status).toBe(200)
      expect(read.body).not.toHaveProperty("secret")
      expect(read.body.url).toBe(receiver.url)
      const listed = await call("GET", "/webhooks")
      expect(listed.body.webhooks.map((w: Subscription) => w.id)).toContain(made.id)
      expect(listed.body.webhooks.every((w: object) => !("secret" in w))).toBe(true)
      const rotated = await call("POST", `/webhooks/${made.id}/rotate-secret`)
      expect(rotated.status).toBe(200)
      expect(rotated.body.secret).toMatch(/^whsec_/)
      expect(rotated.body.secret).not.toBe(made.secret)
      expect((await call("DELETE", `/webhooks/${made.id}`)).status).toBe(204)
      expect((await call("GET", `/webhooks/${made.id}`)).status).toBe(404)
      expect((await call("DELETE", `/webhooks/${made.id}`)).status).toBe(404)
    } finally {
      await receiver.close()
    }
  })

  it("refuses with 422 and stores nothing: a non-http URL, a metadata or link-local address, no events, a threshold event without thresholds", async () => {
    const before = (await call("GET", "/webhooks")).body.webhooks.length
    for (const body of [
      { url: "ftp://127.0.0.1/hook", events: ["cluster.created"] },
      { url: "http://169.254.169.254/latest/meta-data", events: ["cluster.created"] },
      { url: "http://[fe80::1]/hook", events: ["cluster.created"] },
      { url: "not a url", events: ["cluster.created"] },
      { url: "http://127.0.0.1/hook", events: [] },
      { url: "http://127.0.0.1/hook", events: ["cluster.exploded"] },
      { url: "http://127.0.0.1/hook", events: ["cluster.threshold_reached"] },
      { url: "http://127.0.0.1/hook", events: ["cluster.created"], thresholds: [0] },
    ]) {
      const answer = await call("POST", "/webhooks", body)
      expect(answer.status, JSON.stringify(body)).toBe(422)
      expect(typeof answer.body.message).toBe("string")
    }
    expect((await call("GET", "/webhooks")).body.webhooks.length).toBe(before)
  })

  it("a receiver failing 500 three times then answering 200 gets the event four times with one id and a valid signature each time, later each time", async () => {
    const receiver = await WebhookReceiver.start((n) => (n < 3 ? 500 : 200))
    const page = `${run}/flaky`
    try {
      const subscription = await subscribe(receiver, { events: ["cluster.created"], pages: [page] })
      const saved = await save(page, 0.3, 0.3)
      await eventually(() => receiver.delivered().length === 1, 20_000, "delivery")
      expect(receiver.received.map((r) => r.status)).toEqual([500, 500, 500, 200])
      expect(new Set(receiver.received.map((r) => r.id)).size).toBe(1)
      expect(receiver.received.every((r) => r.verified)).toBe(true)
      const event = receiver.received[0]!.payload
      expect(event.id).toBe(receiver.received[0]!.id)
      expect(event.type).toBe("cluster.created")
      expect(event.data).toEqual({
        page_uuid: page,
        cluster_idx: saved.cluster_idx,
        centroid: { x: 0.3, y: 0.3 },
        count: 1,
      })
      // A signature made with another secret does not verify: the receiver's check means something.
      const other = new Webhook(`whsec_${Buffer.alloc(32, 7).toString("base64")}`)
      const first = receiver.received[0]!
      expect(() =>
        other.verify(first.body, {
          "webhook-id": first.id,
          "webhook-timestamp": first.timestamp,
          "webhook-signature": first.signature,
        }),
      ).toThrow()
      const [delivery] = await deliveries(subscription.id)
      expect(delivery?.state).toBe("delivered")
      expect(delivery?.event_id).toBe(event.id)
      expect(delivery?.attempt_log.map((a) => a.status)).toEqual([500, 500, 500, 200])
      // Backoff: attempt k + 1 is never made before half of WEBHOOK_BACKOFF × 2^(k-1) has passed (the worker
      // only claims a delivery once its next attempt is due), so the gaps are at least 50, 100 and 200 ms.
      const times = delivery!.attempt_log.map((a) => Date.parse(a.at))
      const gaps = times.slice(1).map((t, i) => t - times[i]!)
      gaps.forEach((gap, i) => {
        expect(gap).toBeGreaterThanOrEqual(50 * 2 ** i - 1)
      })
    } finally {
      await receiver.close()
    }
  })

  it("a page's events reach a subscriber in order: the next waits while the first is being retried", async () => {
    const receiver = await WebhookReceiver.start((n) => (n < 2 ? 500 : 200))
    const page = `${run}/order`
    try {
      await subscribe(receiver, { events: ["cluster.created"], pages: [page] })
      for (const x of [0.1, 0.5, 0.9]) await save(page, x, 0.5)
      await eventually(() => receiver.delivered().length === 3, 20_000, "three deliveries")
      // The first event three times (500, 500, 200), and only then the second and the third.
      expect(receiver.received.map((r) => [r.payload.data.cluster_idx, r.status])).toEqual([
        [0, 500],
        [0, 500],
        [0, 200],
        [1, 200],
        [2, 200],
      ])
    } finally {
      await receiver.close()
    }
  })

  it("a receiver that never answers: each attempt ends at WEBHOOK_TIMEOUT and is recorded as timed out", async () => {
    const receiver = await WebhookReceiver.start(() => "hang")
    const page = `${run}/hang`
    try {
      const subscription = await subscribe(receiver, { events: ["cluster.created"], pages: [page] })
      await save(page, 0.5, 0.5)
      await eventually(
        async () => (await deliveries(subscription.id))[0]?.attempt_log.length === 2,
        20_000,
        "two attempts",
      )
      const [delivery] = await deliveries(subscription.id)
      expect(delivery?.attempt_log.every((a) => a.status === null && a.error?.includes("timed out"))).toBe(
        true,
      )
      expect(receiver.received.length).toBeGreaterThanOrEqual(2)
      await call("DELETE", `/webhooks/${subscription.id}`)
    } finally {
      await receiver.close()
    }
  })

  it("a receiver down for every attempt: the delivery is dead after WEBHOOK_MAX_ATTEMPTS; a manual retry once it is up delivers the same event", async () => {
    const port = await freePort()
    const page = `${run}/down`
    const url = `http://127.0.0.1:${port}/hook`
    const made = await call("POST", "/webhooks", { url, events: ["cluster.created"], pages: [page] })
    expect(made.status).toBe(201)
    const subscription = made.body as Subscription
    await save(page, 0.1, 0.9)
    await eventually(
      async () => (await deliveries(subscription.id, "?state=dead")).length === 1,
      20_000,
      "dead letter",
    )
    const [dead] = await deliveries(subscription.id, "?state=dead")
    expect(dead?.attempts).toBe(4)
    expect(dead?.attempt_log).toHaveLength(4)
    expect(dead?.attempt_log.every((a) => a.status === null && a.error !== null)).toBe(true)
    expect(await deliveries(subscription.id, "?state=pending")).toEqual([])

    const receiver = await WebhookReceiver.start(() => 200, port)
    receiver.secret = subscription.secret
    try {
      const retried = await call("POST", `/webhooks/${subscription.id}/deliveries/${dead!.id}/retry`)
      expect(retried.status).toBe(200)
      expect(retried.body.state).toBe("pending")
      await eventually(() => receiver.delivered().length === 1, 20_000, "delivery after retry")
      expect(receiver.received[0]?.id).toBe(dead!.event_id)
      expect(receiver.received[0]?.verified).toBe(true)
      const [delivered] = await deliveries(subscription.id)
      expect(delivered?.state).toBe("delivered")
      expect(delivered?.attempt_log).toHaveLength(5)
      const missing = await call("POST", `/webhooks/${subscription.id}/deliveries/999999999/retry`)
      expect(missing.status).toBe(404)
    } finally {
      await receiver.close()
    }
  })

  it("a dead delivery retried by hand goes out of line: the page's later events do not wait for its new attempts", async () => {
    // The receiver refuses the page's first cluster, and later leaves it hanging; it takes every other event.
    let refuse: number | "hang" = 500
    const receiver = await WebhookReceiver.start((_, event) => (event.data.cluster_idx === 0 ? refuse : 200))
    const page = `${run}/out-of-line`
    try {
      const subscription = await subscribe(receiver, { events: ["cluster.created"], pages: [page] })
      await save(page, 0.1, 0.5)
      await eventually(
        async () => (await deliveries(subscription.id, "?state=dead")).length === 1,
        20_000,
        "the first event dead",
      )
      await save(page, 0.5, 0.5)
      await eventually(
        () => receiver.delivered().length === 1,
        20_000,
        "the second event, once the first died",
      )
      // Retried by hand while its receiver still will not take it: each attempt now hangs until WEBHOOK_TIMEOUT.
      refuse = "hang"
      const [dead] = await deliveries(subscription.id, "?state=dead")
      expect((await call("POST", `/webhooks/${subscription.id}/deliveries/${dead!.id}/retry`)).status).toBe(
        200,
      )
      await save(page, 0.9, 0.5)
      await eventually(() => receiver.delivered().length === 2, 20_000, "the third event")
      // Delivered while the retried one is still in its new round of attempts.
      expect((await deliveries(subscription.id, "?state=pending")).map((d) => d.id)).toEqual([dead!.id])
      expect(receiver.delivered().map((r) => r.payload.data.cluster_idx)).toEqual([1, 2])
      await call("DELETE", `/webhooks/${subscription.id}`)
    } finally {
      await receiver.close()
    }
  })

  it("concurrent clicks on one cluster: each watched threshold is reported exactly once, the new cluster and the best cluster once", async () => {
    const receiver = await WebhookReceiver.start(() => 200)
    const page = `${run}/thresholds`
    try {
      await subscribe(receiver, {
        events: ["cluster.created", "cluster.threshold_reached", "page.best_cluster_changed"],
        pages: [page],
        thresholds: [5, 10, 25],
      })
      await Promise.all(Array.from({ length: 30 }, (_, i) => save(page, 0.6 + (i % 5) * 0.001, 0.6)))
      await eventually(() => receiver.delivered().length === 5, 20_000, "five events")
      // Give a duplicate time to show up, were there one.
      await new Promise((r) => setTimeout(r, 300))
      const events = receiver.delivered().map((r) => r.payload)
      expect(new Set(events.map((e) => e.id)).size).toBe(events.length)
      expect(events.filter((e) => e.type === "cluster.created").map((e) => e.data.count)).toEqual([1])
      expect(
        events.filter((e) => e.type === "page.best_cluster_changed").map((e) => e.data.previous_cluster_idx),
      ).toEqual([null])
      const reached = events.filter((e) => e.type === "cluster.threshold_reached")
      expect(reached.map((e) => e.data.threshold)).toEqual([5, 10, 25])
      expect(reached.map((e) => e.data.count)).toEqual([5, 10, 25])
      expect(receiver.delivered().every((r) => r.verified)).toBe(true)
    } finally {
      await receiver.close()
    }
  })

  it("a subscription hears only its pages; a page nobody watches causes no event", async () => {
    const receiver = await WebhookReceiver.start(() => 200)
    try {
      await subscribe(receiver, { events: ["cluster.created"], pages: [`${run}/watched`] })
      await save(`${run}/unwatched`, 0.2, 0.2)
      await save(`${run}/watched`, 0.2, 0.2)
      await eventually(() => receiver.delivered().length === 1, 20_000, "delivery")
      await new Promise((r) => setTimeout(r, 300))
      expect(receiver.received.map((r) => r.payload.data.page_uuid)).toEqual([`${run}/watched`])
    } finally {
      await receiver.close()
    }
  })

  it("metrics: deliveries by outcome, their latency, and the outbox's depth and age", async () => {
    const metrics = await (await fetch(`${server.url}/metrics`)).text()
    // The tests above delivered, retried and dead-lettered deliveries on this server.
    for (const outcome of ["delivered", "retry", "dead"]) {
      const line = metrics
        .split("\n")
        .find((l) => l.startsWith(`webhook_deliveries_total{outcome="${outcome}"}`))
      expect(Number(line?.split(" ")[1]), outcome).toBeGreaterThan(0)
    }
    expect(metrics).toMatch(/^webhook_delivery_duration_seconds_count \d+/m)
    expect(metrics).toMatch(/^webhook_outbox_depth \d+/m)
    expect(metrics).toMatch(/^webhook_outbox_oldest_age_seconds [\d.e+-]+/m)
  })
})
