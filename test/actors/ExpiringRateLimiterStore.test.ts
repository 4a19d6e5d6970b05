import { RateLimiter } from "@effect/experimental"
import { describe, expect, it } from "@effect/vitest"
import { Context, Duration, Effect, Layer, TestClock } from "effect"
import fc from "fast-check"
import { makeExpiringStore } from "../../src/actors/ExpiringRateLimiterStore.ts"

const refillRate = Duration.millis(100)

/** One step: take `tokens` for `key` (limit 5 per 500 ms), then let `advance` ms pass; sweep first when told. */
const step = fc.record({
  key: fc.constantFrom("a", "b", "c", "d"),
  tokens: fc.integer({ min: 1, max: 6 }),
  advance: fc.integer({ min: 0, max: 700 }),
  sweep: fc.boolean(),
})

describe("ExpiringRateLimiterStore", () => {
  it.effect("answers every take exactly as @effect/experimental's memory store, with sweeps anywhere", () =>
    Effect.gen(function* () {
      const steps = fc.sample(fc.array(step, { minLength: 1, maxLength: 60 }), { numRuns: 100, seed: 11 })
      for (const run of steps) {
        const ours = yield* makeExpiringStore
        const theirs = Context.get(
          yield* Layer.build(RateLimiter.layerStoreMemory).pipe(Effect.scoped),
          RateLimiter.RateLimiterStore,
        )
        const options = (key: string, tokens: number) => ({
          key: `${run.length}:${key}`,
          tokens,
          refillRate,
          limit: 5,
        })
        for (const { key, tokens, advance, sweep } of run) {
          if (sweep) yield* ours.sweep
          expect(yield* ours.store.fixedWindow(options(key, tokens))).toEqual(
            yield* theirs.fixedWindow(options(key, tokens)),
          )
          yield* TestClock.adjust(Duration.millis(advance))
        }
      }
    }),
  )

  it.effect("forgets a key once its count has run out, and only then", () =>
    Effect.gen(function* () {
      const { store, sweep, size } = yield* makeExpiringStore
      for (let i = 0; i < 1000; i++)
        yield* store.fixedWindow({ key: `client-${i}`, tokens: 1 + (i % 3), refillRate, limit: 10 })
      expect(size()).toBe(1000)
      // The keys holding one token run out after 100 ms, two after 200, three after 300.
      yield* TestClock.adjust(Duration.millis(150))
      yield* sweep
      expect(size()).toBe(666)
      yield* TestClock.adjust(Duration.millis(150))
      yield* sweep
      expect(size()).toBe(0)
    }),
  )
})
