import { createServer, type IncomingMessage, type Server } from "node:http"
import { Webhook } from "standardwebhooks"

/** One request a receiver got: its headers, body, and whether its signature verified with the secret it held. */
export interface Received {
  readonly id: string
  readonly timestamp: string
  readonly signature: string
  readonly body: string
  readonly payload: {
    readonly id: string
    readonly type: string
    readonly timestamp: string
    readonly data: Record<string, unknown>
  }
  readonly verified: boolean
  readonly status: number
}

/**
 * A webhook receiver on loopback (node:http): answers each request as `answer` says (given how many came before
 * and the event: a status, or "hang" to never answer), and verifies its signature with the standardwebhooks package, as a real receiver would.
 */
export class WebhookReceiver {
  readonly received: Array<Received> = []
  secret = ""
  private constructor(
    private readonly server: Server,
    readonly url: string,
  ) {}

  /** Subscribes this receiver to `events` on the service at `service` and keeps the secret to verify with. */
  async subscribe(service: string, events: ReadonlyArray<string>): Promise<{ readonly id: string }> {
    const made = (await fetch(`${service}/webhooks`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ url: this.url, events }),
    }).then((r) => r.json())) as { id: string; secret: string }
    this.secret = made.secret
    return made
  }

  static start(
    answer: (n: number, payload: Received["payload"]) => number | "hang",
    port = 0,
  ): Promise<WebhookReceiver> {
    let self: WebhookReceiver | undefined
    const server = createServer((request: IncomingMessage, response) => {
      const parts: Array<Buffer> = []
      request.on("data", (part: Buffer) => parts.push(part))
      request.on("end", () => {
        const receiver = self!
        const body = Buffer.concat(parts).toString("utf8")
        const headers = {
          "webhook-id": String(request.headers["webhook-id"]),
          "webhook-timestamp": String(request.headers["webhook-timestamp"]),
          "webhook-signature": String(request.headers["webhook-signature"]),
        }
        let verified = false
        try {
          new Webhook(receiver.secret).verify(body, headers)
          verified = true
        } catch {
          verified = false
        }
        const payload = JSON.parse(body) as Received["payload"]
        const status = answer(receiver.received.length, payload)
        receiver.received.push({
          id: headers["webhook-id"],
          timestamp: headers["webhook-timestamp"],
          signature: headers["webhook-signature"],
          body,
          payload,
          verified,
          status: status === "hang" ? 0 : status,
        })
        if (status === "hang") return
        response.writeHead(status, { "content-type": "text/plain" }).end(status < 300 ? "ok" : "not now")
      })
    })
    return new Promise((resolve, reject) => {
      server.once("error", reject)
      server.listen(port, "127.0.0.1", () => {
        const address = server.address()
        const bound = typeof address === "object" && address !== null ? address.port : 0
        self = new WebhookReceiver(server, `http://127.0.0.1:${bound}/hook`)
        resolve(self)
      })
    })
  }

  /** The requests answered with a 2xx. */
  delivered(): ReadonlyArray<Received> {
    return this.received.filter((r) => r.status >= 200 && r.status < 300)
  }

  close(): Promise<void> {
    this.server.closeAllConnections()
    return new Promise((resolve) => this.server.close(() => resolve()))
  }
}

/** Polls `check` every 50 ms until it holds; fails after `ms` (real time: nothing here runs on a TestClock). */
export const eventually = async (
  check: () => boolean | Promise<boolean>,
  ms = 20_000,
  what = "condition",
) => {
  const deadline = Date.now() + ms
  while (Date.now() < deadline) {
    if (await check()) return
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error(`${what} not met within ${ms} ms`)
}
