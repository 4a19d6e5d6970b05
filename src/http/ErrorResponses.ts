import { HttpApiBuilder, HttpApiError, HttpServerError } from "@effect/platform"
import { Cause, Effect, Option } from "effect"
import { AppConfig } from "../Config.ts"
import {
  Api,
  InternalError,
  InvalidRequest,
  type MalformedRequest,
  type PayloadTooLarge,
  RouteNotFound,
  type UnsupportedMediaType,
} from "./Api.ts"
import { gateBodies } from "./BodyGate.ts"
import { malformedJson } from "./RequestBody.ts"

const formatPath = (path: ReadonlyArray<PropertyKey>) =>
  path.length === 0 ? "(body)" : path.map(String).join(".")

/** A schema decode failure as the 422 answer: every problem with its field path, and all of them in one message. */
export const invalidRequest = (
  issues: ReadonlyArray<{ readonly path: ReadonlyArray<PropertyKey>; readonly message: string }>,
  fallbackMessage: string,
) =>
  new InvalidRequest({
    message: issues.map((i) => `${formatPath(i.path)}: ${i.message}`).join("; ") || fallbackMessage,
    issues: issues.map((i) => ({ path: formatPath(i.path), message: i.message })),
  })

/**
 * The framework's own failures as our API's errors, so every client mistake gets its status and a JSON body:
 * schema decode failures → 422 naming each field path, unreadable bodies → 400, unknown routes → 404.
 */
export const toApiError = (
  error: unknown,
): Option.Option<InvalidRequest | MalformedRequest | RouteNotFound> => {
  if (error instanceof HttpApiError.HttpApiDecodeError) {
    return Option.some(invalidRequest(error.issues, error.message))
  }
  if (HttpServerError.isServerError(error)) {
    if (error._tag === "RouteNotFound") {
      return Option.some(
        new RouteNotFound({ message: `no route ${error.request.method} ${error.request.url}` }),
      )
    }
    if (error._tag === "RequestError") {
      return Option.some(malformedJson(error.reason))
    }
  }
  return Option.none()
}

/** The answer to a request that failed by a defect (a bug, not the client's doing), in every path: 500. */
export const internalError = () =>
  new InternalError({ message: "the request could not be served (an internal error, logged); retry" })

/** How a defect is logged, in every path. */
export const logDefect = (cause: Cause.Cause<unknown>) =>
  Effect.logError("a request failed unexpectedly", cause)

type Refusal =
  | InvalidRequest
  | MalformedRequest
  | PayloadTooLarge
  | UnsupportedMediaType
  | RouteNotFound
  | InternalError

/**
 * The body gate (BodyGate.ts) in front of the API, the framework's failures as the API's errors, and any other
 * defect as InternalError (logged), as the fast lane answers one.
 */
export const ErrorResponsesLive = HttpApiBuilder.middleware(
  Api,
  Effect.map(AppConfig, (config) => {
    const gate = gateBodies(config.maxBodyBytes, config.maxBatchBytes)
    return (app) =>
      Effect.catchAllCause(gate(app), (cause): Effect.Effect<never, Refusal> => {
        // The framework turns an unreadable body into a defect (`orDie`), so look at defects too.
        const error = Cause.failureOption(cause).pipe(
          Option.orElse(() => Cause.dieOption(cause)),
          Option.flatMap(toApiError),
        )
        if (Option.isSome(error)) return Effect.fail(error.value)
        // A typed failure is the API's to encode; an interruption (no defect) is the server's to answer.
        if (Option.isSome(Cause.failureOption(cause)) || !Cause.isDie(cause)) return Effect.failCause(cause)
        return Effect.zipRight(logDefect(cause), Effect.fail(internalError()))
      })
  }),
)
