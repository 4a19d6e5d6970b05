import { HttpApiSchema } from "@effect/platform"
import { Effect, Schema } from "effect"

/** The click log (or a read of the database) failed or timed out; nothing was acknowledged. */
export class StorageUnavailable extends Schema.TaggedError<StorageUnavailable>()(
  "StorageUnavailable",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 503 }),
) {}

/** An idempotency key already used for a different click. */
export class IdempotencyConflict extends Schema.TaggedError<IdempotencyConflict>()(
  "IdempotencyConflict",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 409 }),
) {}

/** A failed or timed-out database read, logged with its cause and answered as 503. */
export const storageUnavailable = (what: string) => (cause: unknown) =>
  Effect.logWarning(`${what} failed`, cause).pipe(
    Effect.zipRight(new StorageUnavailable({ message: `${what} failed; retry` })),
  )
