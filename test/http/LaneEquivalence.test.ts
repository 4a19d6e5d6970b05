import { createServer } from "node:http"
import { HttpApiBuilder, HttpServer } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Effect, Layer, Logger, LogLevel } from "effect"
import fc from "fast-check"
import { AppConfig } from "../../src/Config.ts"
import { AdminAuthLive } from "../../src/http/AdminAuthLive.ts"
import { Api, TrackerEndpoints } from "../../src/http/Api.ts"
import { ErrorResponsesLive } from "../../src/http/ErrorResponses.ts"
import { makeFastLane, Now, route } from "../../src/http/FastLane.ts"
import { observeRequests, RequestObserver } from "../../src/http/RequestObservability.ts"
import { Metrics } from "../../src/Metrics.ts"
import { InProcessServer, type RunningServer } from "../support/InProcessServer.ts"
import { externalStorage, type StorageMode } from "../support/StorageModes.ts"
import { TcpProxy } from "../support/TcpProxy.ts"
import { type Answer, click, post, refusedSaves } from "./Lanes.ts"

/**
 * The fast lane against the HttpApi: the same random sequences of tracker requests, valid and invalid, sent to a
 * server with HTTP_FAST_LANE=true and to one with HTTP_FAST_LANE=false, each on a fresh database of its own behind
 * a TCP proxy (the outages that end in 503 are played on the proxy). Every request is one the lane takes (a body
 * with a content length), and each answer must be byte-identical in status and body, with the same request id
 * handling. Each run works on pages of its own, so every run starts from fresh pages on both servers.
 */

const MAX_BODY_BYTES = 2048
const savePaths = ["/save_click_and_predict_cluster", "/new_click"] as const
const predictPaths = ["/predict_cluster", "/predict_click"] as const
const paths = [...savePaths, ...predictPaths] as const

interface Served {
  readonly name: string
  readonly storage: StorageMode
  readonly proxy: TcpProxy
  readonly server: RunningServer
}

const start = async (fastLane: boolean): Promise<Served> => {
  const storage = await externalStorage()
  const target = new URL(storage.env.DATABASE_URL ?? "")
  const proxy = await TcpProxy.start(target.hostname, Number(target.port || 5432))
  const viaProxy = new URL(target)
  viaProxy.host = `127.0.0.1:${proxy.port}`
  const server = await InProcessServer.run({
    DATABASE_URL: viaProxy.toString(),
    HTTP_FAST_LANE: String(fastLane),
    MAX_BODY_BYTES: String(MAX_BODY_BYTES),
    // One waiting message per page: a third concurrent request to a page held up answers PageBusy.
    MAILBOX_SIZE: "1",
    // Outages are ended by the test (a cut), never by a timeout, and no background snapshot runs meanwhile.
    DB_TIMEOUT: "60 seconds",
    SNAPSHOT_INTERVAL: "1 hour",
  })
  return { name: fastLane ? "fast lane" : "HttpApi only", storage, proxy, server }
}

const metricsOf = async (url: string) => (await fetch(`${url}/metrics`)).text()
/** The lines of a scrape counting requests whose client hung up before the answer (status 499). */
const metricsOf499 = (text: string) =>
  text
    .split("\n")
    .filter((l) => l.includes('status="499"'))
    .join("\n")
const sample = (text: string, prefix: string) =>
  text
    .split("\n")
    .filter((l) => l.startsWith(prefix))
    .reduce((n, l) => n + Number(l.split(" ").at(-1)), 0)

/** Polls until `check` holds; a scenario waits for the server's state, never for time. */
const until = async (what: string, check: () => Promise<boolean>) => {
  for (let i = 0; i < 2000; i++) {
    if (await check()) return
    await new Promise((r) => setTimeout(r, 5))
  }
  throw new Error(`timed out waiting for ${what}`)
}

const ready = (served: Served) =>
  until(`${served.name} ready`, async () => (await fetch(`${served.server.url}/readyz`)).status === 200)

// ---- the requests ----

interface Request {
  readonly path: string
  readonly body: string | Buffer
  readonly headers: Record<string, string>
}

type Op =
  | {
      readonly _tag: "request"
      readonly request: (run: string) => Request
      /** How fast-check prints the op in a counterexample: the request as sent, for a run called "<run>". */
      readonly [fc.toStringMethod]: () => string
    }
  | { readonly _tag: "busy"; readonly page: number }
  | { readonly _tag: "commitFailure"; readonly page: number; readonly x: number; readonly y: number }

/** A request op, printed as the request it sends. */
const requestOp = (request: (run: string) => Request): Op => ({
  _tag: "request",
  request,
  [fc.toStringMethod]: () => {
    const { path, body, headers } = request("<run>")
    return JSON.stringify({ path, headers, body: typeof body === "string" ? body : body.toString("latin1") })
  },
})

/** A UUID of the run: request ids are reused within a run (409 on a different click), never across runs. */
const uuidOf = (run: string, i: number) =>
  `${run.padStart(8, "0")}-0000-4000-8000-${String(i).padStart(12, "0")}`

const pageOf = (run: string, i: number) => `lanes-${run}/p${i}`

const coordinate = fc.integer({ min: 0, max: 10 }).map((n) => n / 10)

const requestIdHeader = fc.constantFrom<Record<string, string>>(
  {},
  { "x-request-id": "trace-1" },
  { "x-request-id": "not sane" },
)

const contentType = fc.oneof(
  { weight: 8, arbitrary: fc.constant("application/json") },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      "text/plain;charset=UTF-8",
      "application/vnd.api+json",
      "application/x-www-form-urlencoded",
      "multipart/form-data; boundary=x",
      "application/octet-stream",
    ),
  },
)

const validClick = fc
  .record({
    path: fc.constantFrom(...paths),
    page: fc.integer({ min: 0, max: 2 }),
    x: coordinate,
    y: coordinate,
    // Saves only: an idempotency key in the body or as a header, from two per run.
    key: fc.option(fc.record({ id: fc.integer({ min: 0, max: 1 }), inHeader: fc.boolean() }), {
      freq: 3,
    }),
    type: contentType,
    id: requestIdHeader,
  })
  .map(
    ({ path, page, x, y, key, type, id }): Op =>
      requestOp((run) => {
        const isSave = path === savePaths[0] || path === savePaths[1]
        const k = isSave && key !== null ? uuidOf(run, key.id) : undefined
        const body = click(
          pageOf(run, page),
          x,
          y,
          k !== undefined && key?.inHeader === false ? { request_id: k } : {},
        )
        const headers: Record<string, string> = { ...id, "content-type": type }
        if (k !== undefined && key?.inHeader === true) headers["idempotency-key"] = k
        return { path, body, headers }
      }),
  )

/** Bodies no endpoint accepts (the lanes' shared list), and two more malformed ones. */
const badBody = fc.constantFrom(
  ...refusedSaves,
  '{"page_uuid":"p","coordinates":{"x":0.5,"y":0.5}',
  `{"page_uuid":${"[".repeat(40)}1${"]".repeat(40)}}`,
)

const invalid = fc
  .record({
    path: fc.constantFrom(...paths),
    body: badBody,
    type: contentType,
    id: requestIdHeader,
    how: fc.constantFrom("body", "body", "body", "notUtf8", "badUrl", "tooLarge", "badHeader"),
  })
  .map(
    ({ path, body, type, id, how }): Op =>
      requestOp((run) => {
        const headers: Record<string, string> = { ...id, "content-type": type }
        const valid = click(pageOf(run, 0), 0.5, 0.5)
        switch (how) {
          case "notUtf8":
            return {
              path,
              body: Buffer.concat([Buffer.from('{"page_uuid":"x'), Buffer.from([0xff]), Buffer.from('"}')]),
              headers,
            }
          case "badUrl":
            return { path: `${path}?x=%ED%A0%80`, body: valid, headers }
          case "tooLarge":
            return {
              path,
              body: click(pageOf(run, 0), 0.5, 0.5, { pad: "x".repeat(MAX_BODY_BYTES) }),
              headers,
            }
          case "badHeader":
            return { path, body: valid, headers: { ...headers, "idempotency-key": "not-a-uuid" } }
          default:
            return { path, body, headers }
        }
      }),
  )

const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 10, arbitrary: validClick },
  { weight: 6, arbitrary: invalid },
  {
    weight: 1,
    arbitrary: fc.record({ _tag: fc.constant("busy" as const), page: fc.integer({ min: 3, max: 5 }) }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      _tag: fc.constant("commitFailure" as const),
      page: fc.integer({ min: 0, max: 2 }),
      x: coordinate,
      y: coordinate,
    }),
  },
)

// ---- playing an op on one server ----

/** What must be identical: status and body, and the request id handling (echoed when sane, a UUID otherwise). */
const observed = (answer: Answer, request: Request) => ({
  status: answer.status,
  body: answer.body,
  requestId:
    request.headers["x-request-id"] === "trace-1"
      ? answer.requestId
      : /^[0-9a-f-]{36}$/.test(answer.requestId ?? "")
        ? "generated"
        : answer.requestId,
})

const send = (served: Served, request: Request) =>
  post(served.server.url, request.path, request.body, "fast", request.headers).then((a) =>
    observed(a, request),
  )

/**
 * PageBusy, deterministically: with the database stalled, a first request to a cold page holds its actor in
 * recovery, a second one waits in its mailbox (MAILBOX_SIZE=1), so a third finds it full. The stall then ends in a
 * cut: the recovery fails, and the two held requests are answered 503 too.
 */
const busy = async (served: Served, run: string, page: number) => {
  const url = served.server.url
  const p = pageOf(run, page)
  const before = sample(await metricsOf(url), "page_actors_active")
  served.proxy.stall()
  const first = send(served, { path: "/predict_cluster", body: click(p, 0.5, 0.5), headers: {} })
  await until(
    "the first request's actor",
    async () => sample(await metricsOf(url), "page_actors_active") > before,
  )
  const second = send(served, { path: "/new_click", body: click(p, 0.5, 0.5), headers: {} })
  await until(
    "the second request in the mailbox",
    async () => sample(await metricsOf(url), "page_mailbox_depth") === 1,
  )
  const third = await send(served, {
    path: "/save_click_and_predict_cluster",
    body: click(p, 0.1, 0.1),
    headers: {},
  })
  served.proxy.cut()
  const answers = [await first, await second, third]
  served.proxy.restore()
  await ready(served)
  return answers
}

/** A commit failure: the database cut while a save is made (a warm page's click fails to commit). */
const commitFailure = async (served: Served, run: string, page: number, x: number, y: number) => {
  served.proxy.cut()
  const answer = await send(served, {
    path: "/save_click_and_predict_cluster",
    body: click(pageOf(run, page), x, y),
    headers: {},
  })
  served.proxy.restore()
  await ready(served)
  return [answer]
}

const play = async (served: Served, run: string, o: Op) => {
  if (o._tag === "busy") return busy(served, run, o.page)
  if (o._tag === "commitFailure") return commitFailure(served, run, o.page, o.x, o.y)
  return [await send(served, o.request(run))]
}

/** How many requests an op sends. */
const requestsOf = (o: Op) => (o._tag === "busy" ? 3 : 1)

describe("the fast lane and the HttpApi answer alike", () => {
  let fast: Served | undefined
  let api: Served | undefined
  beforeAll(async () => {
    fast = await start(true)
    api = await start(false)
  }, 120_000)
  afterAll(async () => {
    for (const s of [fast, api]) {
      await s?.server.stop()
      await s?.proxy.close()
      await s?.storage.dispose()
    }
  })

  it("takes back a save whose client hung up while it waited for its page: it is never stored", async () => {
    if (fast === undefined) throw new Error("servers not started")
    const served = fast
    const url = served.server.url
    const page = pageOf("hangup", 0)
    const hungUp = async () => sample(metricsOf499(await metricsOf(url)), "http_requests_total")
    const before = { actors: sample(await metricsOf(url), "page_actors_active"), hungUp: await hungUp() }
    // The database stalled: a predict holds the cold page's actor in recovery, and a save waits in its mailbox.
    served.proxy.stall()
    const first = send(served, { path: "/predict_cluster", body: click(page, 0.5, 0.5), headers: {} })
    await until(
      "the predict's actor",
      async () => sample(await metricsOf(url), "page_actors_active") > before.actors,
    )
    const abort = new AbortController()
    const save = fetch(`${url}/new_click`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: click(page, 0.25, 0.25),
      signal: abort.signal,
    }).then(
      () => "answered",
      () => "hung up",
    )
    await until(
      "the save in the mailbox",
      async () => sample(await metricsOf(url), "page_mailbox_depth") === 1,
    )
    abort.abort()
    expect(await save).toBe("hung up")
    await until("the server to see the hang-up", async () => (await hungUp()) > before.hungUp)
    served.proxy.restore()
    expect((await first).status).toBe(200)
    // A later save of the page is served after whatever the mailbox held: then only it is stored.
    const later = await send(served, { path: "/new_click", body: click(page, 0.75, 0.75), headers: {} })
    expect(later.status).toBe(200)
    const stored = await served.storage.query<{ x: number }>("SELECT x FROM clicks WHERE page_uuid = $1", [
      page,
    ])
    expect(stored.map((r) => r.x)).toEqual([0.75])
  })

  it("answers random sequences of valid and invalid tracker requests byte for byte alike", async () => {
    if (fast === undefined || api === undefined) throw new Error("servers not started")
    const servers = { fast, api }
    const laneBefore = sample(await metricsOf(fast.server.url), "http_fast_lane_requests_total")
    let runs = 0
    let sent = 0
    const seen = new Map<number, Set<string>>()
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 5, maxLength: 40, size: "medium" }), async (ops) => {
        const run = (++runs).toString(16)
        for (const [i, o] of ops.entries()) {
          const fromLane = await play(servers.fast, run, o)
          const fromApi = await play(servers.api, run, o)
          sent += requestsOf(o)
          expect({ op: i, tag: o._tag, answers: fromLane }).toEqual({ op: i, tag: o._tag, answers: fromApi })
          for (const a of fromLane) {
            const tag = a.status === 200 ? "ok" : (JSON.parse(a.body) as { _tag: string })._tag
            seen.set(a.status, (seen.get(a.status) ?? new Set()).add(tag))
          }
        }
      }),
      {
        numRuns: 20,
        // No shrinking: the servers keep their state, so a shrunk sequence would not replay the failing one.
        endOnFailure: true,
        // One sequence with each scenario, so every run of the test compares them at least once.
        examples: [
          [
            [
              { _tag: "busy", page: 3 },
              { _tag: "commitFailure", page: 0, x: 0.5, y: 0.5 },
              requestOp((run) => ({
                path: "/new_click",
                body: click(pageOf(run, 0), 0.5, 0.5),
                headers: {},
              })),
              { _tag: "commitFailure", page: 0, x: 0.5, y: 0.5 },
            ],
          ],
        ],
      },
    )
    // The lane served every request sent to the fast server, the other server's lane none.
    const fastMetrics = await metricsOf(fast.server.url)
    expect(sample(fastMetrics, "http_fast_lane_requests_total") - laneBefore).toBe(sent)
    expect(sample(await metricsOf(api.server.url), "http_fast_lane_requests_total")).toBe(0)
    console.log(
      JSON.stringify({ sent, runs, tags: Object.fromEntries([...seen].map(([s, t]) => [s, [...t]])) }),
    )
    // Every kind of answer the issue names was compared at least once.
    const tags = Object.fromEntries([...seen].map(([status, t]) => [status, [...t].sort()]))
    expect(tags).toMatchObject({
      200: ["ok"],
      400: ["MalformedRequest"],
      409: ["IdempotencyConflict"],
      413: ["PayloadTooLarge"],
      415: ["UnsupportedMediaType"],
      422: ["InvalidRequest"],
    })
    expect(tags[503]).toEqual(expect.arrayContaining(["PageBusy", "StorageUnavailable"]))
  }, 600_000)
})

/**
 * A defect (a bug, not the client's doing) answers the same in both paths: the HttpApi, with handlers that die, and
 * the lane generated for the same endpoints, with implementations that die or throw. Both are built from the
 * service's own pieces (the Api, its error mapping, the request account); only the implementations are the test's.
 */
describe("a defect answers alike in every path", () => {
  const die = (where: string) => () => Effect.die(new Error(`a bug in ${where}`))
  const groups = Layer.mergeAll(
    HttpApiBuilder.group(Api, "tracker", (h) =>
      h
        .handle("saveClick", die("saveClick"))
        .handle("newClick", die("newClick"))
        .handle("predictCluster", die("predictCluster"))
        // A success its schema cannot encode (not an integer).
        .handle("predictClick", () => Effect.succeed({ cluster_idx: 0.5 }))
        .handle("saveClicks", die("saveClicks"))
        .handle("bestCluster", die("bestCluster"))
        .handle("version", die("version")),
    ),
    HttpApiBuilder.group(Api, "pages", (h) =>
      h.handle("clusters", die("clusters")).handle("activity", die("activity")),
    ),
    HttpApiBuilder.group(Api, "browser", (h) =>
      h.handle("tracker", die("tracker")).handle("map", die("map")).handle("events", die("events")),
    ),
    HttpApiBuilder.group(Api, "ops", (h) =>
      h.handle("health", die("health")).handle("ready", die("ready")).handle("metrics", die("metrics")),
    ),
    HttpApiBuilder.group(Api, "admin", (h) => h.handle("exportSnapshots", die("exportSnapshots"))).pipe(
      Layer.provide(AdminAuthLive),
    ),
    HttpApiBuilder.group(Api, "webhooks", (h) =>
      h
        .handle("createWebhook", die("createWebhook"))
        .handle("listWebhooks", die("listWebhooks"))
        .handle("getWebhook", die("getWebhook"))
        .handle("deleteWebhook", die("deleteWebhook"))
        .handle("rotateWebhookSecret", die("rotateWebhookSecret"))
        .handle("listDeliveries", die("listDeliveries"))
        .handle("retryDelivery", die("retryDelivery")),
    ).pipe(Layer.provide(AdminAuthLive)),
    HttpApiBuilder.group(Api, "exportJobs", (h) =>
      h
        .handle("createExportJob", die("createExportJob"))
        .handle("getExportJob", die("getExportJob"))
        .handle("downloadExportJob", die("downloadExportJob")),
    ).pipe(Layer.provide(AdminAuthLive)),
  )
  const config = AppConfig.Default.pipe(
    Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(new Map([["LOG_LEVEL", "error"]])))),
  )
  const services = Layer.mergeAll(RequestObserver.Default, Metrics.Default).pipe(
    Layer.provideMerge(Metrics.Default),
    Layer.provideMerge(config),
    // The defects are logged; the test does not need to see them.
    Layer.provideMerge(Logger.minimumLogLevel(LogLevel.None)),
  )
  const apiServer = HttpApiBuilder.serve(observeRequests).pipe(
    Layer.provide(HttpApiBuilder.api(Api).pipe(Layer.provide([groups, ErrorResponsesLive]))),
    Layer.provideMerge(NodeHttpServer.layer(createServer, { port: 0, host: "127.0.0.1" })),
    Layer.provide(services),
  )

  /** The lane for the tracker's POST routes, every implementation a bug, on a bare `node:http` server. */
  const laneServer = Effect.gen(function* () {
    const lane = yield* makeFastLane(
      Api,
      [
        route(TrackerEndpoints.saveClick, die("saveClick")),
        route(TrackerEndpoints.newClick, () => {
          throw new Error("a bug in newClick, thrown")
        }),
        route(TrackerEndpoints.predictCluster, die("predictCluster")),
        route(TrackerEndpoints.predictClick, () => new Now({ cluster_idx: 0.5 }, "p")),
      ],
      MAX_BODY_BYTES,
    )
    const server = createServer((request, response) => {
      if (!lane.handle(request, response)) response.writeHead(599).end()
    })
    yield* Effect.acquireRelease(
      Effect.async<void>((resume) => void server.listen(0, "127.0.0.1", () => resume(Effect.void))),
      () => Effect.async<void>((resume) => void server.close(() => resume(Effect.void))),
    )
    const address = server.address()
    return `http://127.0.0.1:${typeof address === "object" && address !== null ? address.port : 0}`
  }).pipe(Effect.provide(services))

  it.scoped("answers the same bytes from the HttpApi and from the lane: 500 InternalError for a defect", () =>
    Effect.gen(function* () {
      const apiUrl = yield* HttpServer.addressWith((address) =>
        Effect.succeed(address._tag === "TcpAddress" ? `http://127.0.0.1:${address.port}` : ""),
      ).pipe(Effect.provide(yield* Layer.build(apiServer)))
      const laneUrl = yield* laneServer
      const body = click("p", 0.5, 0.5)
      for (const path of paths) {
        const [fromApi, fromLane] = yield* Effect.promise(() =>
          Promise.all([post(apiUrl, path, body, "fast"), post(laneUrl, path, body, "fast")]),
        )
        expect({ path, status: fromLane.status, body: fromLane.body }).toEqual({
          path,
          status: fromApi.status,
          body: fromApi.body,
        })
        // A success its schema cannot encode is reported by the framework as a decode failure (422): the lane
        // answers the same; every other defect is InternalError.
        const expected = path === "/predict_click" ? [422, "InvalidRequest"] : [500, "InternalError"]
        expect([fromLane.status, JSON.parse(fromLane.body)._tag]).toEqual(expected)
      }
    }),
  )
})
