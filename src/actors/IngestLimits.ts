import { RateLimiter } from "@effect/experimental"
import { Duration, Effect, Option, Schedule } from "effect"
import { AppConfig } from "../Config.ts"
import { makeExpiringStore } from "./ExpiringRateLimiterStore.ts"
import { RateLimited } from "./PageErrors.ts"

/** Whether any ingestion rate limit is configured (the fast lane is then off). */
export const rateLimitsConfigured = (config: {
  readonly rateLimitPerIp: Option.Option<number>
  readonly rateLimitPerPage: Option.Option<number>
}) => Option.isSome(config.rateLimitPerIp) || Option.isSome(config.rateLimitPerPage)

/**
 * Ingestion rate limits (RATE_LIMIT_PER_IP, RATE_LIMIT_PER_PAGE clicks per RATE_LIMIT_WINDOW, each off unless set):
 * a save costs one click, a batch as many as it holds, from its client's allowance and from each page's. Fixed
 * windows counted in memory by @effect/experimental's RateLimiter (ExpiringRateLimiterStore.ts, which forgets a
 * key once its count ran out).
 *
 * A page's allowance is taken where the page is served (PageRouter here, PageEntityOnHost for messages other
 * runners forward), so in cluster mode it is the page's, whichever runner its clicks reach. A client's is taken by
 * the runner it connects to (http/RateLimit.ts): one process's count.
 */
export class IngestLimits extends Effect.Service<IngestLimits>()("actors/IngestLimits", {
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
      Option.map(
        limit,
        (limit) => (key: string, clicks: number) =>
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
      )

    const page = allowance("page", "RATE_LIMIT_PER_PAGE", config.rateLimitPerPage)

    return {
      enabled: rateLimitsConfigured(config),
      /** Takes `clicks` from a client IP's allowance, or fails RateLimited; none when RATE_LIMIT_PER_IP is unset. */
      client: allowance("client", "RATE_LIMIT_PER_IP", config.rateLimitPerIp),
      /**
       * `serve` (`clicks` of the page's) once they are taken from the page's allowance, else RateLimited: how the
       * page's server takes a save. `serve` itself when RATE_LIMIT_PER_PAGE is unset.
       */
      pageFirst: Option.match(page, {
        onNone:
          () =>
          <A, E, R>(
            _page: string,
            _clicks: number,
            serve: Effect.Effect<A, E, R>,
          ): Effect.Effect<A, E | RateLimited, R> =>
            serve,
        onSome:
          (allowance) =>
          <A, E, R>(
            page: string,
            clicks: number,
            serve: Effect.Effect<A, E, R>,
          ): Effect.Effect<A, E | RateLimited, R> =>
            Effect.zipRight(allowance(page, clicks), serve),
      }),
    } as const
  }),
}) {}
