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
