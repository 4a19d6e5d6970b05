import { HttpApiSchema } from "@effect/platform"
import { Schema } from "effect"

/** The page's mailbox is full: the page gets more requests than it can serve right now. */
export class PageBusy extends Schema.TaggedError<PageBusy>()(
  "PageBusy",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 503 }),
) {}

/** The click log (or the page's recovery from it) failed or timed out; nothing was acknowledged. */
export class StorageUnavailable extends Schema.TaggedError<StorageUnavailable>()(
  "StorageUnavailable",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 503 }),
) {}

/** The page has no clicks. */
export class PageNotFound extends Schema.TaggedError<PageNotFound>()(
  "PageNotFound",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 404 }),
) {}

/** An idempotency key already used for a different click. */
export class IdempotencyConflict extends Schema.TaggedError<IdempotencyConflict>()(
  "IdempotencyConflict",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 409 }),
) {}
