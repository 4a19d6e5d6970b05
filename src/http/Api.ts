import { HttpApi, HttpApiEndpoint, HttpApiGroup, HttpApiSchema, OpenApi } from "@effect/platform"
import { Schema } from "effect"
import { IdempotencyConflict, PageBusy, PageNotFound, StorageUnavailable } from "../actors/PageErrors.ts"
import { ExportFormat } from "../persistence/ExportFormat.ts"
import { AdminAuth } from "./AdminAuth.ts"

/** A relative position on the page: a finite number in [0, 1]. */
const Coordinate = Schema.Number.pipe(Schema.finite(), Schema.between(0, 1))

export const PageUuid = Schema.String.pipe(
  Schema.minLength(1, { message: () => "page_uuid must not be empty" }),
  Schema.maxLength(512, { message: () => "page_uuid must be at most 512 characters" }),
)

/** A tracker's click; unknown fields are ignored. */
export const Click = Schema.Struct({
  page_uuid: PageUuid,
  coordinates: Schema.Struct({ x: Coordinate, y: Coordinate }),
})

/** A save may carry an idempotency key: a repeated key answers the first answer and stores nothing new. */
export const SaveClick = Schema.Struct({
  ...Click.fields,
  request_id: Schema.optional(Schema.UUID),
})

export const IdempotencyHeaders = Schema.Struct({ "idempotency-key": Schema.optional(Schema.UUID) })

export const SaveResult = Schema.Struct({ cluster_idx: Schema.Int, is_new: Schema.Boolean })
export const PredictResult = Schema.Struct({ cluster_idx: Schema.NullOr(Schema.Int) })
export const BestCluster = Schema.Struct({
  cluster: Schema.Struct({
    cluster_idx: Schema.Int,
    all_coordinates: Schema.Array(Schema.Struct({ x: Schema.Number, y: Schema.Number })),
  }),
})

/** A request whose body, query or headers do not fit the endpoint; names each problem's path. */
export class InvalidRequest extends Schema.TaggedError<InvalidRequest>()(
  "InvalidRequest",
  {
    message: Schema.String,
    issues: Schema.Array(Schema.Struct({ path: Schema.String, message: Schema.String })),
  },
  HttpApiSchema.annotations({ status: 422 }),
) {}

/** A body that is not JSON at all (or could not be read). */
export class MalformedRequest extends Schema.TaggedError<MalformedRequest>()(
  "MalformedRequest",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 400 }),
) {}

/** A request body above the configured limit (MAX_BODY_BYTES). */
export class PayloadTooLarge extends Schema.TaggedError<PayloadTooLarge>()(
  "PayloadTooLarge",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 413 }),
) {}

/** No such route. */
export class RouteNotFound extends Schema.TaggedError<RouteNotFound>()(
  "RouteNotFound",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 404 }),
) {}

/** The trackers' POST routes (CONTRACT.md), declared below and also served by the HTTP fast lane. */
export const TrackerPostPaths = {
  saveClick: "/save_click_and_predict_cluster",
  newClick: "/new_click",
  predictCluster: "/predict_cluster",
  predictClick: "/predict_click",
} as const

const save = <const Name extends string>(name: Name, path: `/${string}`) =>
  HttpApiEndpoint.post(name, path)
    .setPayload(SaveClick)
    .setHeaders(IdempotencyHeaders)
    .addSuccess(SaveResult)
    .addError(IdempotencyConflict)
    .addError(PageBusy)
    .addError(StorageUnavailable)
    .annotate(
      OpenApi.Description,
      "Stores a click durably and answers the cluster it joined or founded. An optional `request_id` (UUID) in the body or an `Idempotency-Key` header makes a retry safe: the same key answers the first answer; the same key with a different click answers 409.",
    )

const predict = <const Name extends string>(name: Name, path: `/${string}`) =>
  HttpApiEndpoint.post(name, path)
    .setPayload(Click)
    .addSuccess(PredictResult)
    .addError(PageBusy)
    .addError(StorageUnavailable)
    .annotate(OpenApi.Description, "The cluster a click would join; stores nothing.")

/** The trackers' contract (CONTRACT.md): paths, bodies and answers are fixed. */
export class TrackerApi extends HttpApiGroup.make("tracker")
  .add(save("saveClick", TrackerPostPaths.saveClick))
  .add(save("newClick", TrackerPostPaths.newClick))
  .add(predict("predictCluster", TrackerPostPaths.predictCluster))
  .add(predict("predictClick", TrackerPostPaths.predictClick))
  .add(
    HttpApiEndpoint.get("bestCluster", "/get_best_cluster")
      .setUrlParams(Schema.Struct({ page_uuid: PageUuid }))
      .addSuccess(BestCluster)
      .addError(PageNotFound)
      .addError(PageBusy)
      .addError(StorageUnavailable)
      .annotate(OpenApi.Description, "The page's cluster with the most clicks, with every click in it."),
  )
  .add(HttpApiEndpoint.get("version", "/").addSuccess(Schema.Struct({ version: Schema.Literal(0) }))) {}

const PageParam = HttpApiSchema.param("page_uuid", PageUuid)

/** An ISO-8601 instant, e.g. 2026-11-25T00:00:00Z. */
const Instant = Schema.String.pipe(
  Schema.filter(
    (s) => !Number.isNaN(Date.parse(s)) || "must be an ISO-8601 date-time such as 2026-11-25T00:00:00Z",
  ),
)

export const ClusterInfo = Schema.Struct({
  cluster_idx: Schema.Int,
  centroid: Schema.Struct({ x: Schema.Number, y: Schema.Number }),
  count: Schema.Int,
  first_click_at: Schema.String,
  last_click_at: Schema.String,
})

export const Granularity = Schema.Literal("hour", "day", "week", "month")

export const Activity = Schema.Struct({
  page_uuid: Schema.String,
  granularity: Granularity,
  from: Schema.String,
  to: Schema.String,
  cluster_idx: Schema.NullOr(Schema.Int),
  series: Schema.Array(Schema.Struct({ period_start: Schema.String, clicks: Schema.Int })),
})

/** The analysts' read API. */
export class PagesApi extends HttpApiGroup.make("pages")
  .add(
    HttpApiEndpoint.get("clusters")`/pages/${PageParam}/clusters`
      .addSuccess(Schema.Struct({ page_uuid: Schema.String, clusters: Schema.Array(ClusterInfo) }))
      .addError(PageNotFound)
      .addError(PageBusy)
      .addError(StorageUnavailable)
      .annotate(
        OpenApi.Description,
        "Every cluster of a page: index, centroid, click count, first and last click time. A page_uuid with a slash is sent URL-encoded (%2F).",
      ),
  )
  .add(
    HttpApiEndpoint.get("activity")`/pages/${PageParam}/activity`
      .setUrlParams(
        Schema.Struct({
          granularity: Granularity,
          from: Instant,
          to: Instant,
          cluster_idx: Schema.optional(Schema.NumberFromString.pipe(Schema.int(), Schema.nonNegative())),
        }),
      )
      .addSuccess(Activity)
      .addError(StorageUnavailable)
      .annotate(
        OpenApi.Description,
        "Clicks per period (UTC), zero-filled, over [from, to); at most 10,000 periods. Optionally of one cluster.",
      ),
  ) {}

/** The service cannot serve saves: database unreachable or schema not migrated. */
export class NotReady extends Schema.TaggedError<NotReady>()(
  "NotReady",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 503 }),
) {}

/** Probes and metrics for operators. */
export class OpsApi extends HttpApiGroup.make("ops")
  .add(
    HttpApiEndpoint.get("health", "/healthz")
      .addSuccess(Schema.Struct({ status: Schema.Literal("ok") }))
      .annotate(OpenApi.Description, "Liveness: the process serves HTTP."),
  )
  .add(
    HttpApiEndpoint.get("ready", "/readyz")
      .addSuccess(Schema.Struct({ status: Schema.Literal("ready") }))
      .addError(NotReady)
      .annotate(
        OpenApi.Description,
        "Readiness: the database answers and its schema is migrated; 503 with the reason otherwise.",
      ),
  )
  .add(
    HttpApiEndpoint.get("metrics", "/metrics")
      .addSuccess(HttpApiSchema.Text({ contentType: "text/plain; version=0.0.4; charset=utf-8" }))
      .annotate(OpenApi.Description, "Prometheus text exposition."),
  ) {}

/** Operators' and analysts' bulk endpoints, behind the admin token when one is configured. */
export class AdminApi extends HttpApiGroup.make("admin")
  .add(
    HttpApiEndpoint.get("exportSnapshots", "/snapshots/export")
      .setUrlParams(Schema.Struct({ format: ExportFormat, page_uuid: Schema.optional(PageUuid) }))
      .addSuccess(HttpApiSchema.Text({ contentType: "application/x-ndjson" }))
      .addError(StorageUnavailable)
      .annotate(
        OpenApi.Description,
        "Streams one row per cluster of every page (or one page's) as of the request: page_uuid, cluster_idx, centroid_x, centroid_y, click_count, first_click_at, last_click_at, seq. Each page is rebuilt from its latest snapshot and the clicks stored after it, so every click acknowledged before the request is included; seq is the page's last click the row includes. format=ndjson answers application/x-ndjson, format=csv answers text/csv with a header line.",
      ),
  )
  .middleware(AdminAuth) {}

export class Api extends HttpApi.make("click-clusters")
  .add(TrackerApi)
  .add(PagesApi)
  .add(OpsApi)
  .add(AdminApi)
  .addError(InvalidRequest)
  .addError(MalformedRequest)
  .addError(PayloadTooLarge)
  .addError(RouteNotFound)
  .annotate(OpenApi.Title, "Click clusters")
  .annotate(
    OpenApi.Description,
    "Online clustering of page clicks, one actor per page, every click durable.",
  ) {}
