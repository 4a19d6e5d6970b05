import { RateLimiter } from "@effect/experimental"
import { HttpApp, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Duration, Effect, Option, Schedule } from "effect"
import { AppConfig } from "../Config.ts"
import { RateLimited } from "./Api.ts"
import { makeExpiringStore } from "./ExpiringRateLimiterStore.ts"

/** Whether any ingestion rate limit is configured (the fast lane is then off). */
export const rateLimitsConfigured = (config: {
  readonly rateLimitPerIp: Option.Option<number>
  readonly rateLimitPerPage: Option.Option<number>
}) => Option.isSome(config.rateLimitPerIp) || Option.isSome(config.rateLimitPerPage)

/**
 * Ingestion rate limits (RATE_LIMIT_PER_IP, RATE_LIMIT_PER_PAGE clicks per RATE_LIMIT_WINDOW, each off unless set):
 * a save costs one click, a batch as many as it holds, from its client's allowance and from each page's. Fixed
 * windows counted in memory by @effect/experimental's RateLimiter (ExpiringRateLimiterStore.ts, which forgets a
 * key once its count ran out): one process's counts, not a cluster's. The fast
 * lane does not apply them: with a limit configured the lane is off and every save goes through the HttpApi.
 */
export class IngestLimits extends Effect.Service<IngestLimits>()("http/IngestLimits", {
  scoped: Effect.gen(function* () {
    const config = yield* AppConfig
    const window = config.rateLimitWindow
    const counts = yield* makeExpiringStore
    // A key's count runs out at most a window after its last click: sweeping once a window bounds the keys held
    // by the clients and pages seen in the last two windows.
    if (rateLimitsConfigured(config))
      yield* Effect.forkScoped(Effect.repeat(counts.sweep, Schedule.spaced(window)))
    const limiter = yield* Effect.provideService(RateLimiter.make, RateLimiter.RateLimiterStore, counts.store)

    const allowance = (scope: "client" | "page", setting: string, limit: Option.Option<number>) =>
      Option.match(limit, {
        onNone: () => (_key: string, _clicks: number) => Effect.void,
        onSome: (limit) => (key: string, clicks: number) =>
          limiter
            .consume({
              algorithm: "fixed-window",
              onExceeded: "fail",
              window,
              limit,
              key: `${scope}:${key}`,
              tokens: clicks,
            })
            .pipe(
              Effect.asVoid,
              Effect.catchTag("RateLimiterError", (error) => {
                if (error.reason !== "Exceeded") return Effect.die(error)
                const seconds = Math.max(1, Math.ceil(Duration.toSeconds(error.retryAfter)))
                return Effect.fail(
                  new RateLimited({
                    message: `more than ${limit} clicks per ${Duration.format(window)} for this ${scope} (${setting}); retry in ${seconds} s`,
                    retry_after_seconds: seconds,
                  }),
                )
              }),
            ),
      })

    return {
      enabled: rateLimitsConfigured(config),
      /** Takes `clicks` from a client IP's allowance, or fails RateLimited. */
      client: allowance("client", "RATE_LIMIT_PER_IP", config.rateLimitPerIp),
      /** Takes `clicks` from a page's allowance, or fails RateLimited. */
      page: allowance("page", "RATE_LIMIT_PER_PAGE", config.rateLimitPerPage),
    } as const
  }),
}) {}

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
