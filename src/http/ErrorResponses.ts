import { HttpApiBuilder, HttpApiError, HttpServerError } from "@effect/platform"
import { Cause, Effect, Option } from "effect"
import { Api, InvalidRequest, MalformedRequest, RouteNotFound } from "./Api.ts"

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

/** A body that could not be read as JSON, as the 400 answer; `reason` is what the reader said. */
export const malformedJson = (reason: string) =>
  new MalformedRequest({ message: `the request body could not be read as JSON (${reason})` })

/**
 * The framework's own failures as our API's errors, so every client mistake gets its status and a JSON body:
 * schema decode failures → 422 naming each field path, unreadable bodies → 400, unknown routes → 404.
 */
const toApiError = (error: unknown): Option.Option<InvalidRequest | MalformedRequest | RouteNotFound> => {
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

export const ErrorResponsesLive = HttpApiBuilder.middleware(Api, (app) =>
  Effect.catchAllCause(app, (cause) =>
    // The framework turns an unreadable body into a defect (`orDie`), so look at defects too.
    Cause.failureOption(cause).pipe(
      Option.orElse(() => Cause.dieOption(cause)),
      Option.flatMap(toApiError),
      Option.match({ onNone: () => Effect.failCause(cause), onSome: Effect.fail }),
    ),
  ),
)
