import { HttpApiSchema } from "@effect/platform"
import { Schema } from "effect"

/** The page's mailbox is full: the page gets more requests than it can serve right now. */
export class PageBusy extends Schema.TaggedError<PageBusy>()(
  "PageBusy",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 503 }),
) {}

/** The page has no clicks. */
export class PageNotFound extends Schema.TaggedError<PageNotFound>()(
  "PageNotFound",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 404 }),
) {}

/**
 * Too many clicks from one client IP or for one page within the window (RATE_LIMIT_PER_IP, RATE_LIMIT_PER_PAGE,
 * RATE_LIMIT_WINDOW); the answer's `Retry-After` header says the same seconds as `retry_after_seconds`.
 */
export class RateLimited extends Schema.TaggedError<RateLimited>()(
  "RateLimited",
  { message: Schema.String, retry_after_seconds: Schema.Int },
  HttpApiSchema.annotations({ status: 429 }),
) {}
