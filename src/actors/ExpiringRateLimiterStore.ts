import { RateLimiter } from "@effect/experimental"
import { Duration, Effect } from "effect"

/** A key's count: its tokens taken, and when they have all leaked away (epoch ms). */
interface Counter {
  count: number
  expiresAt: number
}

/**
 * The rate limiter's counts in memory, forgetting a key once its count has run out. @effect/experimental's own
 * memory store keeps every key it ever saw (a client IP, a page), so a service open to the internet would grow
 * by one entry per address for ever. The counting is its "fixed-window" one: each token moves the key's expiry one
 * refill interval later, and a key whose expiry has passed starts from nothing, which is exactly what a forgotten
 * key does: the sweep changes no answer. Only the fixed-window algorithm is kept (the one IngestLimits uses).
 */
export const makeExpiringStore = Effect.gen(function* () {
  const counters = new Map<string, Counter>()
  const clock = yield* Effect.clock

  const sweep = Effect.sync(() => {
    const now = clock.unsafeCurrentTimeMillis()
    for (const [key, counter] of counters) if (counter.expiresAt <= now) counters.delete(key)
  })

  const store = RateLimiter.RateLimiterStore.of({
    fixedWindow: ({ key, tokens, refillRate, limit }) =>
      Effect.sync(() => {
        const now = clock.unsafeCurrentTimeMillis()
        let counter = counters.get(key)
        if (counter === undefined || counter.expiresAt <= now) {
          counter = { count: 0, expiresAt: now }
          counters.set(key, counter)
        }
        if (limit !== undefined && counter.count + tokens > limit)
          return [counter.count + tokens, counter.expiresAt - now] as const
        counter.count += tokens
        counter.expiresAt += Duration.toMillis(refillRate) * tokens
        return [counter.count, counter.expiresAt - now] as const
      }),
    tokenBucket: () =>
      Effect.dieMessage(
        "ExpiringRateLimiterStore keeps fixed-window counts only (token buckets are not used)",
      ),
  })

  return {
    store,
    /** Drops the keys whose count has run out. */
    sweep,
    /** Keys held now (for tests and metrics). */
    size: () => counters.size,
  } as const
})
