import { HttpApiSchema } from "@effect/platform"
import { Schema } from "effect"
import { PageBusy } from "../actors/PageErrors.ts"
import { MalformedRequest, PayloadTooLarge } from "./Api.ts"
import { errorAnswers } from "./ErrorAnswer.ts"

/** The request's headers (or all of it) did not arrive within HTTP_HEADERS_TIMEOUT (HTTP_REQUEST_TIMEOUT). */
export class RequestTimeout extends Schema.TaggedError<RequestTimeout>()(
  "RequestTimeout",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 408 }),
) {}

/** The request's headers are larger than Node accepts (16 KiB). */
export class HeadersTooLarge extends Schema.TaggedError<HeadersTooLarge>()(
  "HeadersTooLarge",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 431 }),
) {}

/** An `Expect` header other than `100-continue`. */
export class ExpectationFailed extends Schema.TaggedError<ExpectationFailed>()(
  "ExpectationFailed",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 417 }),
) {}

/**
 * What the server answers itself, before (or instead of) either lane: requests Node could not parse or that did
 * not arrive in time, and requests that arrive while the server drains for shutdown. Each answer is the status its
 * schema declares and the JSON body, as the HttpApi would encode the error.
 */
export const connectionErrorAnswer = errorAnswers(
  MalformedRequest,
  PayloadTooLarge,
  RequestTimeout,
  HeadersTooLarge,
  ExpectationFailed,
  PageBusy,
)
export type ConnectionError = Parameters<typeof connectionErrorAnswer>[0]

/** The answer to a request that arrives while the server drains: 503, retry (against another instance). */
export const shuttingDown = () => new PageBusy({ message: "the service is shutting down; retry" })

/** The answer to a request that arrives before the app is served (or after): 503, retry. */
export const notServing = () =>
  new PageBusy({ message: "the service is not serving requests right now; retry" })

/** Node's error for a request it could not read, as our answer; undefined when the client is gone (no answer). */
export const clientErrorOf = (error: NodeJS.ErrnoException): ConnectionError | undefined => {
  switch (error.code) {
    case "ECONNRESET":
    case "EPIPE":
      return undefined
    case "ERR_HTTP_REQUEST_TIMEOUT":
      return new RequestTimeout({
        message:
          "the request did not arrive in time (headers within HTTP_HEADERS_TIMEOUT, all of it within HTTP_REQUEST_TIMEOUT)",
      })
    case "HPE_HEADER_OVERFLOW":
      return new HeadersTooLarge({ message: "the request headers are larger than 16 KiB" })
    case "HPE_CHUNK_EXTENSIONS_OVERFLOW":
      return new PayloadTooLarge({ message: "the request's chunk extensions are too large" })
    default: {
      const reason = "reason" in error && typeof error.reason === "string" ? error.reason : error.message
      return new MalformedRequest({
        message: `the request is not valid HTTP/1.1 (${error.code ?? "parse error"}: ${reason})`,
      })
    }
  }
}
