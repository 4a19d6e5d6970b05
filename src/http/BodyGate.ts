import type { IncomingMessage } from "node:http"
import {
  type Headers,
  HttpApp,
  HttpIncomingMessage,
  HttpServerError,
  HttpServerRequest,
  HttpServerResponse,
  UrlParams,
} from "@effect/platform"
import { NodeHttpServerRequest } from "@effect/platform-node"
import { Effect, Inspectable, Stream } from "effect"
import type { MalformedRequest, PayloadTooLarge } from "./Api.ts"
import { batchJsonText, batchMediaTypeProblem, batchTooLarge, isBatchPost } from "./BatchBody.ts"
import {
  bodyText,
  isMultipart,
  isTrackerPost,
  malformedJson,
  mediaTypeProblem,
  pathOf,
  payloadTooLarge,
  textProblem,
  unsupportedMediaType,
  urlProblem,
} from "./RequestBody.ts"

/**
 * A request whose body the gate has read: the HttpApi decodes this text as JSON (whatever JSON media type it came
 * as). Everything else is the original request's.
 */
class ReadRequest extends Inspectable.Class implements HttpServerRequest.HttpServerRequest {
  readonly [HttpServerRequest.TypeId]: HttpServerRequest.TypeId = HttpServerRequest.TypeId
  readonly [HttpIncomingMessage.TypeId]: HttpIncomingMessage.TypeId = HttpIncomingMessage.TypeId
  readonly headers: Headers.Headers

  constructor(
    private readonly request: HttpServerRequest.HttpServerRequest,
    private readonly body: string,
    headers?: Headers.Headers,
  ) {
    super()
    this.headers = headers ?? { ...request.headers, "content-type": "application/json" }
  }
  get source() {
    return this.request.source
  }
  get url() {
    return this.request.url
  }
  get originalUrl() {
    return this.request.originalUrl
  }
  get method() {
    return this.request.method
  }
  get cookies() {
    return this.request.cookies
  }
  get multipart() {
    return this.request.multipart
  }
  get multipartStream() {
    return this.request.multipartStream
  }
  get upgrade() {
    return this.request.upgrade
  }
  get remoteAddress() {
    return this.request.remoteAddress
  }
  modify(options: Parameters<HttpServerRequest.HttpServerRequest["modify"]>[0]) {
    return new ReadRequest(this.request.modify(options), this.body, options.headers ?? this.headers)
  }
  get text() {
    return Effect.succeed(this.body)
  }
  get json(): Effect.Effect<unknown, HttpServerError.RequestError> {
    return Effect.try({
      try: (): unknown => JSON.parse(this.body),
      catch: (cause) => new HttpServerError.RequestError({ request: this, reason: "Decode", cause }),
    })
  }
  get urlParamsBody() {
    return Effect.sync(() => UrlParams.fromInput(new URLSearchParams(this.body)))
  }
  get arrayBuffer() {
    return Effect.sync(() => {
      const bytes = Buffer.from(this.body, "utf8")
      return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength)
    })
  }
  get stream() {
    return Stream.succeed(new Uint8Array(Buffer.from(this.body, "utf8")))
  }
  override toJSON(): unknown {
    return HttpIncomingMessage.inspect(this, {
      _id: "@effect/platform/HttpServerRequest",
      method: this.method,
      url: this.originalUrl,
    })
  }
}

/** 413, and the connection is closed after it: the rest of an oversized body is not worth reading. */
const tooLarge = (error: PayloadTooLarge) =>
  HttpApp.appendPreResponseHandler((_, response) =>
    Effect.succeed(HttpServerResponse.setHeader(response, "connection", "close")),
  ).pipe(Effect.zipRight(Effect.fail(error)))

/**
 * Reads a body up to `limit` bytes; undefined past the limit, where it stops collecting and lets the rest drain
 * unread (the framework's own reader destroys the socket there, so a chunked body over the limit got no answer).
 */
const readBody = (source: IncomingMessage, limit: number) =>
  Effect.async<Buffer | undefined, MalformedRequest>((resume) => {
    const chunks: Array<Buffer> = []
    let bytes = 0
    const cleanup = () => {
      source.off("data", onData)
      source.off("end", onEnd)
      source.off("error", onError)
    }
    const onData = (chunk: Buffer) => {
      bytes += chunk.length
      if (bytes <= limit) return void chunks.push(chunk)
      cleanup()
      source.resume()
      resume(Effect.succeed(undefined))
    }
    const onEnd = () => {
      cleanup()
      resume(Effect.succeed(Buffer.concat(chunks)))
    }
    const onError = (error: Error) => {
      cleanup()
      resume(Effect.fail(malformedJson(`the body could not be read: ${error.message}`)))
    }
    source.on("data", onData)
    source.on("end", onEnd)
    source.on("error", onError)
    return Effect.sync(cleanup)
  })

/**
 * The HttpApi's front door for bodies (the fast lane applies the same rules, RequestBody.ts): a URL that is not
 * percent-encoded UTF-8 → 400, a body announced over MAX_BODY_BYTES → 413, a multipart body anywhere → 415 (the
 * framework's parser failed on some with a 500), and on the tracker POST routes: a media type that is not JSON →
 * 415, a chunked body over the limit → 413, not UTF-8 → 400, blank or nested too deep → 422. The body is read
 * here, within the limit, and the API decodes the text read. The batch route (POST /clicks) has its own limit
 * (`batchLimit`, MAX_BATCH_BYTES) and also reads NDJSON, handed to the API as one JSON array (BatchBody.ts).
 */
export const gateBodies =
  (limit: number, batchLimit: number) =>
  <E, R>(app: HttpApp.Default<E, R>) =>
    Effect.gen(function* () {
      const request = yield* HttpServerRequest.HttpServerRequest
      const badUrl = urlProblem(request.url)
      if (badUrl !== undefined) return yield* Effect.fail(badUrl)
      const path = pathOf(request.url)
      const batch = isBatchPost(request.method, path)
      const max = batch ? batchLimit : limit
      const overLimit = () => tooLarge(batch ? batchTooLarge() : payloadTooLarge())
      if (Number(request.headers["content-length"] ?? 0) > max) return yield* overLimit()
      const contentType = request.headers["content-type"]
      if (!isTrackerPost(request.method, path)) {
        if (isMultipart(contentType)) return yield* Effect.fail(unsupportedMediaType(contentType))
        return yield* app
      }
      const unsupported = batch ? batchMediaTypeProblem(contentType) : mediaTypeProblem(contentType)
      if (unsupported !== undefined) return yield* Effect.fail(unsupported)
      const bytes = yield* readBody(NodeHttpServerRequest.toIncomingMessage(request), max)
      if (bytes === undefined) return yield* overLimit()
      const text = bodyText(bytes)
      if (typeof text !== "string") return yield* Effect.fail(text)
      const problem = textProblem(text)
      if (problem !== undefined) return yield* Effect.fail(problem)
      const json = batch ? batchJsonText(text, contentType) : text
      if (typeof json !== "string") return yield* Effect.fail(json)
      return yield* Effect.provideService(
        app,
        HttpServerRequest.HttpServerRequest,
        new ReadRequest(request, json),
      )
    })
