import { describe, expect, it } from "@effect/vitest"
import { Data, Deferred, Effect, Either, Exit, Fiber } from "effect"
import { failAfter } from "../../src/actors/FailAfter.ts"

class Late extends Data.TaggedError("Late") {}
class Own extends Data.TaggedError("Own") {}

const late = () => new Late()

describe("failAfter", () => {
  it.live("passes a success or a failure that comes in time through unchanged", () =>
    Effect.gen(function* () {
      expect(yield* Effect.succeed(7).pipe(failAfter("1 second", late))).toBe(7)
      const failed = yield* Effect.either(Effect.fail(new Own()).pipe(failAfter("1 second", late)))
      expect(Either.isLeft(failed) && failed.left._tag).toBe("Own")
    }),
  )

  it.live(
    "fails with its error once the time is up, after interrupting the effect and awaiting its finalizer",
    () =>
      Effect.gen(function* () {
        const finalized = yield* Deferred.make<void>()
        const never = Effect.never.pipe(Effect.onInterrupt(() => Deferred.succeed(finalized, undefined)))
        const result = yield* Effect.either(never.pipe(failAfter("30 millis", late)))
        expect(Either.isLeft(result) && result.left._tag).toBe("Late")
        expect(yield* Deferred.isDone(finalized)).toBe(true)
      }),
  )

  it.live("when interrupted itself, interrupts the effect instead of leaving it running", () =>
    Effect.gen(function* () {
      const started = yield* Deferred.make<void>()
      const finalized = yield* Deferred.make<void>()
      const never = Deferred.succeed(started, undefined).pipe(
        Effect.zipRight(Effect.never),
        Effect.onInterrupt(() => Deferred.succeed(finalized, undefined)),
      )
      const fiber = yield* Effect.fork(never.pipe(failAfter("10 seconds", late)))
      yield* Deferred.await(started)
      const exit = yield* Fiber.interrupt(fiber)
      expect(Exit.isInterrupted(exit)).toBe(true)
      expect(yield* Deferred.isDone(finalized)).toBe(true)
    }),
  )
})
