import { HttpApiSchema } from "@effect/platform"
import { Schema } from "effect"
import { ExportFormat } from "./ExportFormat.ts"

/** The events a subscription may ask for (README, Webhooks). */
export const WebhookEventType = Schema.Literal(
  "cluster.created",
  "cluster.threshold_reached",
  "page.best_cluster_changed",
  "export.completed",
  "export.failed",
).annotations({
  message: () => ({
    message:
      "must be one of cluster.created, cluster.threshold_reached, page.best_cluster_changed, export.completed, export.failed",
    override: true,
  }),
})

export const Webhook = Schema.Struct({
  id: Schema.UUID,
  url: Schema.String,
  events: Schema.Array(Schema.String),
  pages: Schema.NullOr(Schema.Array(Schema.String)),
  thresholds: Schema.Array(Schema.Int),
  created_at: Schema.String,
})

/** A subscription with its signing secret: answered when it is made, and when the secret is rotated. */
export const WebhookWithSecret = Schema.Struct({
  ...Webhook.fields,
  secret: Schema.String.annotations({
    description: "The Standard Webhooks signing secret (whsec_…): keep it; it is shown only here",
  }),
})

export const DeliveryState = Schema.Literal("pending", "delivered", "dead")

export const Delivery = Schema.Struct({
  id: Schema.Int,
  event_id: Schema.String,
  event_type: Schema.String,
  page_uuid: Schema.NullOr(Schema.String),
  state: DeliveryState,
  attempts: Schema.Int,
  next_attempt_at: Schema.NullOr(Schema.String),
  delivered_at: Schema.NullOr(Schema.String),
  last_status: Schema.NullOr(Schema.Int),
  last_error: Schema.NullOr(Schema.String),
  attempt_log: Schema.Array(
    Schema.Struct({
      at: Schema.String,
      status: Schema.NullOr(Schema.Int),
      latency_ms: Schema.Number,
      error: Schema.NullOr(Schema.String),
    }),
  ),
})

export const DeliveryPage = Schema.Struct({
  deliveries: Schema.Array(Delivery),
  next_after: Schema.NullOr(Schema.Int).annotations({
    description: "Pass as `after` for the next page; null on the last page",
  }),
})

/** A delivery id in a path or query: decimal digits. */
export const DeliveryIdParam = Schema.NumberFromString.pipe(
  Schema.int(),
  Schema.between(0, Number.MAX_SAFE_INTEGER),
)

export const DeliveriesQuery = Schema.Struct({
  state: Schema.optionalWith(DeliveryState, { exact: true }),
  after: Schema.optionalWith(DeliveryIdParam, { exact: true }),
  limit: Schema.optionalWith(Schema.NumberFromString.pipe(Schema.int(), Schema.between(1, 500)), {
    exact: true,
  }),
})

/** No webhook subscription with this id. */
export class WebhookNotFound extends Schema.TaggedError<WebhookNotFound>()(
  "WebhookNotFound",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 404 }),
) {}

export const ExportJob = Schema.Struct({
  id: Schema.UUID,
  format: ExportFormat,
  page: Schema.NullOr(Schema.String),
  state: Schema.Literal("queued", "running", "completed", "failed"),
  pages_total: Schema.NullOr(Schema.Int),
  pages_done: Schema.Int,
  row_count: Schema.Int,
  byte_count: Schema.Int,
  error: Schema.NullOr(Schema.String),
  created_at: Schema.String,
  finished_at: Schema.NullOr(Schema.String),
  expires_at: Schema.NullOr(Schema.String),
  download: Schema.NullOr(Schema.String).annotations({ description: "The download's path, once completed" }),
})

/** No export job with this id (or its result has expired and was removed). */
export class ExportJobNotFound extends Schema.TaggedError<ExportJobNotFound>()(
  "ExportJobNotFound",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 404 }),
) {}

/** The export job has not completed (yet, or it failed): nothing to download. */
export class ExportNotReady extends Schema.TaggedError<ExportNotReady>()(
  "ExportNotReady",
  { message: Schema.String, state: Schema.String },
  HttpApiSchema.annotations({ status: 409 }),
) {}
