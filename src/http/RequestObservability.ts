import { randomUUID } from "node:crypto"
import {
  HttpApp,
  HttpIncomingMessage,
  HttpMiddleware,
  HttpServerRequest,
  HttpServerResponse,
} from "@effect/platform"
import { Effect, Exit, FiberRef, LogLevel, Option } from "effect"
import { AppConfig } from "../Config.ts"
import { Metrics, secondsSince } from "../Metrics.ts"

/** What a handler learns about its request that the request log should carry (the page, from the body). */
export interface RequestFacts {
  page: string | undefined
}

/** The facts of the request the current fiber serves; handlers fill them in. */
export const currentRequestFacts = FiberRef.unsafeMake<RequestFacts>({ page: undefined })

/** Records the page a request concerns, for its log line. */
export const notePage = (page: string) =>
  Effect.map(FiberRef.get(currentRequestFacts), (facts) => {
    facts.page = page
  })

const fixedRoutes = new Set([
  "/",
  "/save_click_and_predict_cluster",
  "/new_click",
  "/predict_cluster",
  "/predict_click",
  "/get_best_cluster",
  "/healthz",
  "/readyz",
  "/metrics",
  "/openapi.json",
  "/docs",
  "/snapshots/export",
])

/** The route label of a path: fixed routes as they are, page routes with their parameter, anything else one label. */
export const routeOf = (url: string) => {
  const q = url.indexOf("?")
  const path = q === -1 ? url : url.slice(0, q)
  if (fixedRoutes.has(path)) return path
  if (path.startsWith("/pages/")) {
    if (path.endsWith("/clusters")) return "/pages/{page_uuid}/clusters"
    if (path.endsWith("/activity")) return "/pages/{page_uuid}/activity"
  }
  return "unmatched"
}

export const requestIdPattern = /^[\w.:-]{1,128}$/

/**
 * Around every request: the body size limit for the framework's readers (the body gate in front of the API,
 * BodyGate.ts, refuses what is over it), an `x-request-id` on the response (the client's own when it sent a sane one), the HTTP
 * metrics by route and status, and at debug level one log line with route, page, status, latency and request id.
 */
export const observeRequests = HttpMiddleware.make((app) =>
  Effect.gen(function* () {
    const metrics = yield* Metrics
    const config = yield* AppConfig
    const request = yield* HttpServerRequest.HttpServerRequest
    const start = performance.now()
    const given = request.headers["x-request-id"]
    const requestId = given !== undefined && requestIdPattern.test(given) ? given : randomUUID()
    const facts: RequestFacts = { page: undefined }
    // The response is written before this middleware sees it, so the header goes in through a pre-response handler.
    yield* HttpApp.appendPreResponseHandler((_, response) =>
      Effect.succeed(HttpServerResponse.setHeader(response, "x-request-id", requestId)),
    )
    const exit = yield* app.pipe(
      Effect.locally(currentRequestFacts, facts),
      HttpIncomingMessage.withMaxBodySize(Option.some(config.maxBodyBytes)),
      Effect.exit,
    )
    const status = Exit.isSuccess(exit) ? exit.value.status : 500
    const route = routeOf(request.url)
    const seconds = secondsSince(start)
    metrics.httpRequests.inc({ route, method: request.method, status })
    metrics.httpDuration.observe({ route, method: request.method }, seconds)
    if (LogLevel.lessThanEqual(config.logLevel, LogLevel.Debug)) {
      yield* Effect.logDebug("request").pipe(
        Effect.annotateLogs({
          route,
          method: request.method,
          page: facts.page ?? null,
          status,
          latency_ms: Math.round(seconds * 1e6) / 1e3,
          request_id: requestId,
        }),
      )
    }
    return yield* exit
  }),
)
