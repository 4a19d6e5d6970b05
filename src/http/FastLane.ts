import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from "node:http"
import { type HttpApiEndpoint, HttpApiError } from "@effect/platform"
import { Cause, Effect, Either, Exit, type Fiber, FiberId, FiberSet, Option, ParseResult } from "effect"
import { Metrics } from "../Metrics.ts"
import { type Answer, apiErrorAnswers, successAnswers } from "./Answers.ts"
import { internalError, logDefect, toApiError } from "./ErrorResponses.ts"
import { decodePlainFirst } from "./PlainSchema.ts"
import {
  bodyText,
  malformedJson,
  mediaTypeProblem,
  payloadTooLarge,
  textProblem,
  urlProblem,
} from "./RequestBody.ts"
import { currentRequestFacts, type RequestFacts, RequestObserver } from "./RequestObservability.ts"
import { type DeclaredEndpoint, type DeclaredGroup, endpointsOf } from "./Routes.ts"
import { securityHeaders } from "./ServerConnections.ts"

const securityHeaderList = Object.entries(securityHeaders).flat()

/**
 * A value an implementation answers at once, without a fiber, for `page` (the request log's page); `settled`, when
 * given, holds the answer back until it reports (a save's commit): without an error the value is answered, with one
 * the error is.
 */
export class Now<A, E> {
  constructor(
    readonly value: A,
    readonly page: string,
    readonly settled?: (listener: (error: E | undefined) => void) => void,
  ) {}
}

/** What one endpoint's implementation returns: an effect, run on a fiber of the lane, or a value now. */
export type LaneResult<A, E> = Effect.Effect<A, E> | Now<A, E>

/** How a route hands its outcome back to the lane (one per request). */
interface Reply {
  answer(answer: Answer, page: string | undefined): void
  fail(error: unknown, page: string | undefined): void
  decodeFailed(error: ParseResult.ParseError): void
  died(cause: Cause.Cause<unknown>, page: string | undefined): void
  /** The request was refused before its implementation ran (counted as such). */
  refused(): void
  /** The implementation answered without a fiber. */
  now(): void
  run<A, E>(effect: Effect.Effect<A, E>): Fiber.RuntimeFiber<A, E>
}

/** An endpoint the lane serves, with its implementation; its types end here (see `route`). */
export interface LaneRoute {
  readonly endpoint: DeclaredEndpoint
  readonly serve: (body: unknown, headers: IncomingHttpHeaders, reply: Reply) => void
}

/**
 * An endpoint of the Api (with a JSON payload and no path or query parameters) and what the lane does for it, like
 * `HttpApiBuilder.group`'s `.handle`: the request is decoded with the endpoint's own payload and headers schemas (in
 * the HttpApi's order: payload, then headers), the success encoded with its success schema, as the HttpApi does.
 * `headers` is undefined when the endpoint declares none.
 */
export const route = <Name extends string, Payload, Headers, Success, Error, ApiError>(
  endpoint: HttpApiEndpoint.HttpApiEndpoint<Name, "POST", never, never, Payload, Headers, Success, Error>,
  implementation: (payload: Payload, headers: Headers | undefined) => LaneResult<Success, Error | ApiError>,
): LaneRoute => {
  if (Option.isSome(endpoint.pathSchema) || Option.isSome(endpoint.urlParamsSchema))
    throw new globalThis.Error(`the fast lane takes no path or query parameters (${endpoint.name})`)
  const payloadSchema = Option.getOrThrowWith(
    endpoint.payloadSchema,
    () => new globalThis.Error(`the fast lane serves endpoints with a payload (${endpoint.name})`),
  )
  const decodePayload = decodePlainFirst(payloadSchema)
  const decodeHeaders = Option.map(endpoint.headersSchema, decodePlainFirst)
  const encodeSuccess = successAnswers(endpoint)
  const answerValue = (reply: Reply, value: Success, page: string | undefined) => {
    const answer = encodeSuccess(value)
    if (Either.isRight(answer)) reply.answer(answer.right, page)
    // As the HttpApi does: its handler's route turns every ParseError, an encoding one too, into a decode error.
    else reply.decodeFailed(answer.left)
  }

  const serve = (body: unknown, headers: IncomingHttpHeaders, reply: Reply) => {
    const payload = decodePayload(body)
    if (Either.isLeft(payload)) {
      reply.refused()
      return reply.decodeFailed(payload.left)
    }
    let decodedHeaders: Headers | undefined
    if (Option.isSome(decodeHeaders)) {
      const decoded = decodeHeaders.value(headers)
      if (Either.isLeft(decoded)) {
        reply.refused()
        return reply.decodeFailed(decoded.left)
      }
      decodedHeaders = decoded.right
    }
    const result = implementation(payload.right, decodedHeaders)
    if (result instanceof Now) {
      reply.now()
      const { value, page, settled } = result
      if (settled === undefined) return answerValue(reply, value, page)
      return settled((error) =>
        error === undefined ? answerValue(reply, value, page) : reply.fail(error, page),
      )
    }
    const facts: RequestFacts = { page: undefined }
    reply.run(Effect.locally(result, currentRequestFacts, facts)).addObserver((exit) => {
      if (Exit.isSuccess(exit)) return answerValue(reply, exit.value, facts.page)
      const failure = Cause.failureOption(exit.cause)
      if (Option.isSome(failure)) reply.fail(failure.value, facts.page)
      else reply.died(exit.cause, facts.page)
    })
  }
  return { endpoint, serve }
}

/** What the lane reads of the Api: its groups' declared endpoints and every error it may answer. */
export interface DeclaredApi {
  readonly errorSchema: { readonly ast: DeclaredEndpoint["errorSchema"]["ast"] }
  readonly groups: { readonly [name: string]: DeclaredGroup }
}

/**
 * A raw `node:http` path in front of the HttpApi for the given routes of `api`, generated from their declarations:
 * method and path, payload and headers decoding, success encoding, errors and their statuses (every error the Api
 * declares, encoded as the HttpApi encodes it: Answers.ts), and the request's account (RequestObserver), so nothing
 * about a route is stated here. It takes a request when it is one of the routes and its body has a content length
 * (a body over `maxBodyBytes` is answered 413 unread); anything else (a chunked body) is left to the HttpApi. It
 * checks the body by the HttpApi's gate's rules (RequestBody.ts), then decodes and serves as the HttpApi does. A defect answers
 * InternalError, as ErrorResponsesLive does. `fast_lane_requests_total` counts what it served: "now" (answered
 * without a fiber), "message" (on a fiber) and "refused" (before the implementation).
 */
export const makeFastLane = Effect.fnUntraced(function* (
  api: DeclaredApi,
  routes: ReadonlyArray<LaneRoute>,
  maxBodyBytes: number,
) {
  const observer = yield* RequestObserver
  const metrics = yield* Metrics
  const run = yield* FiberSet.makeRuntime<never>()
  const encodeError = apiErrorAnswers(api)
  const internal = Either.getOrThrow(encodeError(internalError()))
  const served = {
    now: metrics.fastLaneTally.cell({ served: "now" }),
    message: metrics.fastLaneTally.cell({ served: "message" }),
    refused: metrics.fastLaneTally.cell({ served: "refused" }),
  }

  const declared = new Set<string>()
  for (const group of Object.values(api.groups))
    for (const endpoint of endpointsOf(group))
      declared.add(`${endpoint.name} ${endpoint.method} ${endpoint.path}`)
  const byRoute = new Map<string, LaneRoute>()
  for (const r of routes) {
    const { name, method, path } = r.endpoint
    if (!declared.has(`${name} ${method} ${path}`))
      throw new globalThis.Error(`the fast lane serves only the Api's endpoints (${name} ${method} ${path})`)
    byRoute.set(`${method} ${path}`, r)
  }

  /** One request taken by the lane, until it is answered (a class: no closures made per request). */
  class Exchange implements Reply {
    private answered = false
    constructor(
      private readonly response: ServerResponse,
      private readonly route: string,
      private readonly method: string,
      private readonly started: number,
      private readonly requestId: string,
    ) {}
    answer(answer: Answer, page: string | undefined) {
      if (this.answered) return
      this.answered = true
      // One flat list: Node writes it without building a header map (unless one was set before, e.g. connection).
      const headers: Array<string | number> = [
        "content-length",
        Buffer.byteLength(answer.body),
        "x-request-id",
        this.requestId,
        ...securityHeaderList,
      ]
      if (answer.contentType !== undefined) headers.push("content-type", answer.contentType)
      this.response.writeHead(answer.status, headers)
      this.response.end(answer.body)
      observer.answered({
        route: this.route,
        method: this.method,
        status: answer.status,
        started: this.started,
        requestId: this.requestId,
        page,
      })
    }
    died(cause: Cause.Cause<unknown>, page: string | undefined) {
      // Answered already, or taken back by a client that hung up (its fiber interrupted): nothing to tell.
      if (this.answered) return
      run(logDefect(cause))
      this.answer(internal, page)
    }
    fail(error: unknown, page: string | undefined) {
      const answer = encodeError(error)
      if (Either.isRight(answer)) this.answer(answer.right, page)
      else this.died(Cause.die(error), page)
    }
    decodeFailed(error: ParseResult.ParseError) {
      const issues = ParseResult.ArrayFormatter.formatErrorSync(error)
      const message = ParseResult.TreeFormatter.formatErrorSync(error)
      // The same mapping as the HttpApi's decode failures get (ErrorResponses.ts).
      const refusal = toApiError(new HttpApiError.HttpApiDecodeError({ issues, message }))
      if (Option.isSome(refusal)) this.fail(refusal.value, undefined)
      else this.died(Cause.die(error), undefined)
    }
    refused() {
      served.refused.count++
    }
    now() {
      served.now.count++
    }
    run<A, E>(effect: Effect.Effect<A, E>) {
      served.message.count++
      const fiber = run(effect)
      // A client that hangs up before its answer takes its request back, as with the HttpApi's server: the fiber
      // is interrupted, so a message still waiting for its page is never served.
      // Counted as 499 (nginx's "client closed request").
      this.response.once("close", () => {
        if (this.answered) return
        this.answered = true
        fiber.unsafeInterruptAsFork(FiberId.none)
        observer.answered({
          route: this.route,
          method: this.method,
          status: 499,
          started: this.started,
          requestId: this.requestId,
          page: undefined,
        })
      })
      return fiber
    }
  }

  /** Serves a body read in full: the gate's checks, JSON, then the route. */
  const serveBody = (r: LaneRoute, bytes: Buffer, headers: IncomingHttpHeaders, reply: Reply) => {
    const text = bodyText(bytes)
    const problem = typeof text === "string" ? textProblem(text) : text
    if (problem !== undefined || typeof text !== "string") {
      served.refused.count++
      return reply.fail(problem, undefined)
    }
    let body: unknown
    try {
      body = JSON.parse(text)
    } catch {
      served.refused.count++
      // "Decode": what the HttpApi's body reader says of the same body.
      return reply.fail(malformedJson("Decode"), undefined)
    }
    r.serve(body, headers, reply)
  }

  /** Takes the request when it is one of the lane's; false leaves it (body unread) to the HttpApi. */
  const handle = (request: IncomingMessage, response: ServerResponse): boolean => {
    const method = request.method ?? ""
    const url = request.url ?? ""
    const q = url.indexOf("?")
    const path = q === -1 ? url : url.slice(0, q)
    const r = byRoute.get(`${method} ${path}`)
    if (r === undefined) return false
    const headers = request.headers
    const length = headers["content-length"]
    if (length === undefined) return false

    const started = performance.now()
    const reply = new Exchange(response, path, method, started, observer.requestIdOf(headers["x-request-id"]))
    // Refused before the body is read, in the order of the HttpApi's gate (BodyGate.ts); Node drains the unread
    // body, except past the limit, where the connection is closed after the answer, as the gate does.
    const refusal =
      (q === -1 ? undefined : urlProblem(url)) ??
      (Number(length) <= maxBodyBytes ? mediaTypeProblem(headers["content-type"]) : payloadTooLarge())
    if (refusal !== undefined) {
      if (refusal._tag === "PayloadTooLarge") response.setHeader("connection", "close")
      served.refused.count++
      reply.fail(refusal, undefined)
      return true
    }
    const chunks: Array<Buffer> = []
    request.on("data", (chunk: Buffer) => {
      chunks.push(chunk)
    })
    request.on("end", () => {
      try {
        serveBody(
          r,
          chunks.length === 1 && chunks[0] !== undefined ? chunks[0] : Buffer.concat(chunks),
          headers,
          reply,
        )
      } catch (defect) {
        reply.died(Cause.die(defect), undefined)
      }
    })
    return true
  }

  return { handle } as const
})
