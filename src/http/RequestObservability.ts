import { randomUUID } from "node:crypto"
import {
  HttpApp,
  HttpIncomingMessage,
  HttpMiddleware,
  HttpServerRequest,
  HttpServerResponse,
} from "@effect/platform"
import { Effect, Exit, FiberRef, FiberSet, LogLevel, Option } from "effect"
import { AppConfig } from "../Config.ts"
import { Metrics, secondsSince } from "../Metrics.ts"
import type { TallyCell } from "../MetricTally.ts"
import { routeOf } from "./Routes.ts"

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

const requestIdPattern = /^[\w.:-]{1,128}$/

/** A request once answered, as its metrics and log line describe it. */
export interface AnsweredRequest {
  readonly route: string
  readonly method: string
  readonly status: number
  /** `performance.now()` when the request arrived. */
  readonly started: number
  readonly requestId: string
  readonly page: string | undefined
}

/**
 * The one account of a request, for every path that answers one (the HttpApi's middleware below and the fast lane,
 * FastLane.ts): its `x-request-id` (the client's own when it sent a sane one), the HTTP metrics by route (labels
 * from the Api's declared routes, Routes.ts), method and status, and at debug level one log line with route, page,
 * status, latency and request id. Synchronous, so the lane can call it without a fiber.
 */
export class RequestObserver extends Effect.Service<RequestObserver>()("http/RequestObserver", {
  scoped: Effect.gen(function* () {
    const metrics = yield* Metrics
    const config = yield* AppConfig
    const run = yield* FiberSet.makeRuntime<never>()
    const logRequests = LogLevel.lessThanEqual(config.logLevel, LogLevel.Debug)

    // prom-client hashes a label set on every call: requests are tallied per label set (folded in when scraped), and
    // the histogram's labelled children in use are kept.
    const counters = new Map<string, TallyCell>()
    const durations = new Map<string, ReturnType<typeof metrics.httpDuration.labels>>()
    const counterOf = (route: string, method: string, status: number) => {
      const key = `${status} ${method} ${route}`
      let counter = counters.get(key)
      if (counter === undefined) {
        counter = metrics.httpRequestsTally.cell({ route, method, status })
        counters.set(key, counter)
      }
      return counter
    }
    const durationOf = (route: string, method: string) => {
      const key = `${method} ${route}`
      let duration = durations.get(key)
      if (duration === undefined) {
        duration = metrics.httpDuration.labels({ route, method })
        durations.set(key, duration)
      }
      return duration
    }

    /**
     * New request ids: UUID-shaped, a random prefix per process and a counter in the last 48 bits (unique without
     * asking the system for randomness per request, which costs more than the rest of the id's work).
     */
    const prefix = randomUUID().slice(0, 24)
    let issued = 0
    const newRequestId = () => {
      issued = (issued + 1) % 0x1000000000000
      return prefix + issued.toString(16).padStart(12, "0")
    }

    /** The request id to answer with: the client's `x-request-id` when it is sane, a new one otherwise. */
    const requestIdOf = (given: string | ReadonlyArray<string> | undefined) =>
      typeof given === "string" && requestIdPattern.test(given) ? given : newRequestId()

    /** Counts and times an answered request, and logs it at debug level. */
    const answered = (request: AnsweredRequest) => {
      const seconds = secondsSince(request.started)
      counterOf(request.route, request.method, request.status).count++
      durationOf(request.route, request.method).observe(seconds)
      if (logRequests)
        run(
          Effect.logDebug("request").pipe(
            Effect.annotateLogs({
              route: request.route,
              method: request.method,
              page: request.page ?? null,
              status: request.status,
              latency_ms: Math.round(seconds * 1e6) / 1e3,
              request_id: request.requestId,
            }),
          ),
        )
    }

    return { requestIdOf, answered, routeOf } as const
  }),
}) {}

/**
 * Around every request of the HttpApi: the body size limit for the framework's readers (the body gate in front of
 * the API, BodyGate.ts, refuses what is over it), and the request's account (RequestObserver): its `x-request-id`
 * on the response, its metrics and log line.
 */
export const observeRequests = HttpMiddleware.make((app) =>
  Effect.gen(function* () {
    const observer = yield* RequestObserver
    const config = yield* AppConfig
    const request = yield* HttpServerRequest.HttpServerRequest
    const started = performance.now()
    const requestId = observer.requestIdOf(request.headers["x-request-id"])
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
    observer.answered({
      route: observer.routeOf(request.url),
      method: request.method,
      status: Exit.isSuccess(exit) ? exit.value.status : 500,
      started,
      requestId,
      page: facts.page,
    })
    return yield* exit
  }),
)
