/**
 * Saves on Postgres with and without webhooks (issue 13): the same workload as `npm run bench` (d), against a
 * fresh database each, in four variants: no subscription; "watching" (a subscription on every page whose threshold
 * no cluster reaches: the deciding alone); "outbox" (every click event of every page, to a receiver that is down, so
 * few attempts: the outbox's cost); "events" (the same, to a loopback receiver answering 204: outbox and delivery).
 *
 *   npx tsx bench/webhookSaves.ts [seconds per run, default 5] [rounds, default 2]
 *
 * Prints one JSON line per run. Needs the local Postgres (postgres://postgres@127.0.0.1:5432/postgres).
 */
import { createServer } from "node:http"
import { NodeContext, NodeRuntime } from "@effect/platform-node"
import { Console, Effect } from "effect"
import { runLoad } from "./Load.ts"
import { buildService, startService } from "./Processes.ts"
import { postgresStorage } from "./Storage.ts"
import { pagesPool, pagesTouchPool } from "./Workload.ts"

const SAVE = "/save_click_and_predict_cluster"
const seconds = Number(process.argv[2] ?? 5)
const rounds = Number(process.argv[3] ?? 2)
const connections = [32, 64]
const variants = [undefined, "watching", "outbox", "events"] as const
type Variant = (typeof variants)[number]

let received = 0
const receiver = createServer((request, response) => {
  request.resume()
  request.on("end", () => {
    received++
    response.writeHead(204).end()
  })
})

const subscription = (variant: Exclude<Variant, undefined>, port: number) =>
  variant === "watching"
    ? { url: `http://127.0.0.1:${port}/hook`, events: ["cluster.threshold_reached"], thresholds: [1_000_000] }
    : {
        // Port 9 (discard): nothing listens, every attempt is refused at once and retried after its backoff.
        url: `http://127.0.0.1:${variant === "outbox" ? 9 : port}/hook`,
        events: ["cluster.created", "cluster.threshold_reached", "page.best_cluster_changed"],
        thresholds: [10, 100, 1000],
      }

const run = (variant: Variant, port: number) =>
  Effect.scoped(
    Effect.gen(function* () {
      const storage = yield* postgresStorage("postgres://postgres@127.0.0.1:5432/postgres")
      const server = yield* startService({ ...storage.env, WEBHOOK_ALLOW_PRIVATE: "true" })
      if (variant !== undefined) {
        const answer = yield* Effect.promise(() =>
          fetch(`${server.url}/webhooks`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify(subscription(variant, port)),
          }),
        )
        if (answer.status !== 201)
          return yield* Effect.die(new Error(`subscribing answered ${answer.status}`))
      }
      const pool = pagesPool(7)
      yield* runLoad({
        url: server.url,
        path: "/predict_cluster",
        bodies: pagesTouchPool(7),
        connections: 32,
        amount: 1000,
      })
      yield* runLoad({ url: server.url, path: SAVE, bodies: pool, connections: 32, seconds: 3 })
      for (const c of connections) {
        const m = yield* runLoad({ url: server.url, path: SAVE, bodies: pool, connections: c, seconds })
        const { p50, p99 } = m.latencyMs
        yield* Console.log(
          JSON.stringify({
            variant: variant ?? "none",
            connections: c,
            rps: Math.round(m.rps),
            p50,
            p99,
            non2xx: m.non2xx,
            load: m.loadAverage,
          }),
        )
      }
      const events = yield* storage.count("SELECT count(*) FROM webhook_events")
      yield* Console.log(
        JSON.stringify({ variant: variant ?? "none", eventsStored: events, receivedSoFar: received }),
      )
    }),
  )

Effect.gen(function* () {
  yield* Effect.acquireRelease(
    Effect.promise(() => new Promise<void>((resolve) => receiver.listen(0, "127.0.0.1", () => resolve()))),
    () => Effect.sync(() => receiver.close()),
  )
  const address = receiver.address()
  const port = typeof address === "object" && address !== null ? address.port : 0
  yield* buildService
  for (let round = 0; round < rounds; round++) for (const variant of variants) yield* run(variant, port)
}).pipe(Effect.scoped, Effect.provide(NodeContext.layer), NodeRuntime.runMain)
