import { randomUUID } from "node:crypto"
import type { IncomingMessage, ServerResponse } from "node:http"
import { Cause, Effect, Either, Exit, FiberSet, LogLevel, Option, ParseResult, Schema } from "effect"
import { PageActorHost } from "../actors/PageActorHost.ts"
import { PageBusy } from "../actors/PageErrors.ts"
import type { SaveReply } from "../actors/PageProtocol.ts"
import { AppConfig } from "../Config.ts"
import { Metrics } from "../Metrics.ts"
import { IdempotencyConflict, StorageUnavailable } from "../persistence/StorageErrors.ts"
import {
  Click,
  InvalidRequest,
  MalformedRequest,
  SaveClick,
  TrackerPostPaths,
  UnsupportedMediaType,
} from "./Api.ts"
import { errorAnswers } from "./ErrorAnswer.ts"
import { invalidRequest } from "./ErrorResponses.ts"
import { bodyText, malformedJson, mediaTypeProblem, textProblem, urlProblem } from "./RequestBody.ts"
import { currentRequestFacts, type RequestFacts, requestIdPattern } from "./RequestObservability.ts"
import { makeTrackerHandlers } from "./TrackerHandlers.ts"

/** What a request that failed by a defect (a bug, not the client's doing) answers: 503, retry. */
const notServed = () => new StorageUnavailable({ message: "the request could not be served; retry" })

/** The errors the fast lane can answer, encoded exactly as the HttpApi encodes them. */
const fastLaneErrorAnswer = errorAnswers(
  InvalidRequest,
  MalformedRequest,
  UnsupportedMediaType,
  PageBusy,
  StorageUnavailable,
  IdempotencyConflict,
)
type FastLaneError = Parameters<typeof fastLaneErrorAnswer>[0]

const decodeSave = Schema.decodeUnknownEither(SaveClick)
const decodePredict = Schema.decodeUnknownEither(Click)

const asInvalidRequest = (error: ParseResult.ParseError) =>
  invalidRequest(
    ParseResult.ArrayFormatter.formatErrorSync(error),
    ParseResult.TreeFormatter.formatErrorSync(error),
  )

type Kind = "save" | "predict"
const routes = new Map<string, Kind>([
  [TrackerPostPaths.saveClick, "save"],
  [TrackerPostPaths.newClick, "save"],
  [TrackerPostPaths.predictCluster, "predict"],
  [TrackerPostPaths.predictClick, "predict"],
])

/**
 * The trackers' two hot POST routes (and their aliases), answered straight from `node:http` in front of the
 * HttpApi: per request the framework costs several times what the work does (docs/benchmarks.md). The lane takes
 * only plain requests, decided from the headers before the body is read: a body with a content length within
 * MAX_BODY_BYTES and no Idempotency-Key header; anything else goes to the HttpApi untouched. It checks the body by
 * the HttpApi's gate's rules (RequestBody.ts), decodes with the API's own schemas and answers the API's own
 * errors, records the same metrics, request id and log line, and
 * serves an idle page's actor synchronously (PageActorHost.saveNow / predictNow); a busy or cold page, or a save
 * with a request id, goes through the same handlers as the HttpApi, on a fiber.
 */
export class TrackerFastLane extends Effect.Service<TrackerFastLane>()("http/TrackerFastLane", {
  scoped: Effect.gen(function* () {
    const host = yield* PageActorHost
    const metrics = yield* Metrics
    const config = yield* AppConfig
    const tracker = yield* makeTrackerHandlers
    const run = yield* FiberSet.makeRuntime<never>()
    const logRequests = LogLevel.lessThanEqual(config.logLevel, LogLevel.Debug)

    // prom-client hashes a label set on every call: the lane keeps the labelled children it uses instead.
    const requestCounters = new Map<string, ReturnType<typeof metrics.httpRequests.labels>>()
    const routeMetrics = (route: string, status: number) => {
      const key = `${route} ${status}`
      let counter = requestCounters.get(key)
      if (counter === undefined) {
        counter = metrics.httpRequests.labels({ route, method: "POST", status })
        requestCounters.set(key, counter)
      }
      return counter
    }
    const durations = new Map(
      Array.from(routes.keys(), (route) => [route, metrics.httpDuration.labels({ route, method: "POST" })]),
    )
    const durationOf = (route: string) =>
      durations.get(route) ?? metrics.httpDuration.labels({ route, method: "POST" })

    const finish = (
      response: ServerResponse,
      route: string,
      started: number,
      requestId: string,
      page: string | undefined,
      status: number,
      body: string,
    ) => {
      response.writeHead(status, {
        "content-type": "application/json",
        "content-length": Buffer.byteLength(body),
        "x-request-id": requestId,
      })
      response.end(body)
      const seconds = (performance.now() - started) / 1000
      routeMetrics(route, status).inc()
      durationOf(route).observe(seconds)
      if (logRequests) {
        run(
          Effect.logDebug("request").pipe(
            Effect.annotateLogs({
              route,
              method: "POST",
              page: page ?? null,
              status,
              latency_ms: Math.round(seconds * 1e6) / 1e3,
              request_id: requestId,
            }),
          ),
        )
      }
    }

    type Answer = (status: number, body: string, page?: string) => void
    /** Answers an error with the status its schema declares. */
    const answerError = (answer: Answer, error: FastLaneError, page?: string) => {
      const { status, body } = fastLaneErrorAnswer(error)
      answer(status, body, page)
    }

    /** The answer of an effect run on a fiber: its value, its typed error, or 503 for a defect (already logged). */
    const runHandler = <A>(
      effect: Effect.Effect<A, FastLaneError>,
      encode: (a: A) => string,
      reply: Answer,
    ) => {
      const facts: RequestFacts = { page: undefined }
      const fiber = run(
        effect.pipe(
          Effect.tapDefect((cause) => Effect.logError("a tracker request failed unexpectedly", cause)),
          Effect.locally(currentRequestFacts, facts),
        ),
      )
      fiber.addObserver((exit) => {
        if (Exit.isSuccess(exit)) return reply(200, encode(exit.value), facts.page)
        const failure = Cause.failureOption(exit.cause)
        const error = Option.isSome(failure) ? failure.value : notServed()
        answerError(reply, error, facts.page)
      })
    }

    const saveAnswer = (clusterIdx: number, isNew: boolean) =>
      `{"cluster_idx":${clusterIdx},"is_new":${isNew}}`
    const predictAnswer = (clusterIdx: number | null) => `{"cluster_idx":${clusterIdx}}`

    const served = {
      now: metrics.fastLaneRequests.labels("now"),
      message: metrics.fastLaneRequests.labels("message"),
      refused: metrics.fastLaneRequests.labels("refused"),
    }

    /** Answers one request of the lane: refused (400/422), served by an idle actor now, or sent as a message. */
    const serve = (kind: Kind, bytes: Buffer, answer: Answer) => {
      const text = bodyText(bytes)
      if (typeof text !== "string") {
        served.refused.inc()
        return answerError(answer, text)
      }
      const problem = textProblem(text)
      if (problem !== undefined) {
        served.refused.inc()
        return answerError(answer, problem)
      }
      let body: unknown
      try {
        body = JSON.parse(text)
      } catch {
        served.refused.inc()
        // "Decode": what the HttpApi's body reader says of the same body.
        return answerError(answer, malformedJson("Decode"))
      }
      if (kind === "save") {
        const decoded = decodeSave(body)
        if (Either.isLeft(decoded)) {
          served.refused.inc()
          return answerError(answer, asInvalidRequest(decoded.left))
        }
        const click = decoded.right
        const page = click.page_uuid
        const reply: SaveReply | undefined =
          click.request_id === undefined
            ? host.saveNow(page, click.coordinates.x, click.coordinates.y)
            : undefined
        if (reply === undefined) {
          served.message.inc()
          return runHandler(
            tracker.save(click, undefined),
            (r) => saveAnswer(r.cluster_idx, r.is_new),
            answer,
          )
        }
        served.now.inc()
        const ok = saveAnswer(reply.clusterIdx, reply.isNew)
        reply.committed.onSettled((error) =>
          error === undefined ? answer(200, ok, page) : answerError(answer, error, page),
        )
        return
      }
      const decoded = decodePredict(body)
      if (Either.isLeft(decoded)) {
        served.refused.inc()
        return answerError(answer, asInvalidRequest(decoded.left))
      }
      const click = decoded.right
      const clusterIdx = host.predictNow(click.page_uuid, click.coordinates.x, click.coordinates.y)
      if (clusterIdx === undefined) {
        served.message.inc()
        return runHandler(tracker.predict(click), (r) => predictAnswer(r.cluster_idx), answer)
      }
      served.now.inc()
      answer(200, predictAnswer(clusterIdx), click.page_uuid)
    }

    /** Takes the request when it is one of the lane's; false leaves it (body unread) to the HttpApi. */
    const handle = (request: IncomingMessage, response: ServerResponse): boolean => {
      if (request.method !== "POST") return false
      const url = request.url ?? ""
      const route = url.indexOf("?") === -1 ? url : url.slice(0, url.indexOf("?"))
      const kind = routes.get(route)
      if (kind === undefined) return false
      const headers = request.headers
      const length = headers["content-length"]
      if (
        length === undefined ||
        !(Number(length) <= config.maxBodyBytes) ||
        headers["idempotency-key"] !== undefined
      )
        return false

      const started = performance.now()
      const given = headers["x-request-id"]
      const requestId = typeof given === "string" && requestIdPattern.test(given) ? given : randomUUID()
      const answer: Answer = (status, body, page) =>
        finish(response, route, started, requestId, page, status, body)
      // Refused before the body is read, as the HttpApi's gate does; Node drains the unread body.
      const refusal =
        (route === url ? undefined : urlProblem(url)) ?? mediaTypeProblem(headers["content-type"])
      if (refusal !== undefined) {
        served.refused.inc()
        answerError(answer, refusal)
        return true
      }
      const chunks: Array<Buffer> = []
      request.on("data", (chunk: Buffer) => {
        chunks.push(chunk)
      })
      request.on("end", () => {
        try {
          serve(
            kind,
            chunks.length === 1 && chunks[0] !== undefined ? chunks[0] : Buffer.concat(chunks),
            answer,
          )
        } catch (defect) {
          // A bug, not the client's doing: logged, answered 503 like a failed page message.
          run(Effect.logError("a tracker request failed unexpectedly", Cause.die(defect)))
          answerError(answer, notServed())
        }
      })
      return true
    }

    return { handle } as const
  }),
}) {}
