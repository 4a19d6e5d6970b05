import { HttpApp, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Effect, Option } from "effect"
import { RateLimited } from "../actors/PageErrors.ts"

/** The client a request's allowance is kept under: its peer address (no proxy header is trusted). */
export const clientOf = Effect.map(HttpServerRequest.HttpServerRequest, (request) =>
  Option.getOrElse(request.remoteAddress, () => "unknown"),
)

/** A RateLimited answer carries `Retry-After` (seconds), as the JSON body's `retry_after_seconds` does. */
export const withRetryAfter = <A, E, R>(effect: Effect.Effect<A, E | RateLimited, R>) =>
  Effect.tapError(effect, (error) =>
    error instanceof RateLimited
      ? HttpApp.appendPreResponseHandler((_, response) =>
          Effect.succeed(
            HttpServerResponse.setHeader(response, "retry-after", String(error.retry_after_seconds)),
          ),
        )
      : Effect.void,
  )
