import { HttpApi, HttpApiEndpoint, HttpApiGroup, HttpApiSchema, OpenApi } from "@effect/platform"
import { Predicate, Schema } from "effect"
import packageJson from "../../package.json" with { type: "json" }
import { PageBusy, PageNotFound, RateLimited } from "../actors/PageErrors.ts"
import { IdempotencyConflict, StorageUnavailable } from "../persistence/StorageErrors.ts"
import { AdminAuth } from "./AdminAuth.ts"
import { ExportFormat } from "./ExportFormat.ts"
import {
  DeliveriesQuery,
  DeliveryIdParam,
  DeliveryPage,
  ExportJob,
  ExportJobNotFound,
  ExportNotReady,
  Webhook,
  Delivery as WebhookDelivery,
  WebhookEventType,
  WebhookNotFound,
  WebhookWithSecret,
} from "./WebhookSchemas.ts"

/** A relative position on the page: a finite number in [0, 1]. */
const Coordinate = Schema.Number.pipe(Schema.finite(), Schema.between(0, 1))

/** A lone UTF-16 surrogate (not half of a pair): in Unicode mode a well-formed pair is one code point, not Cs. */
const loneSurrogate = /\p{Cs}/u

/**
 * A page id, checked once here for every route that takes one (bodies, query, path). Postgres text holds neither
 * NUL nor lone surrogates (they became U+FFFD, so distinct pages in memory shared one stored page).
 */
export const PageUuid = Schema.String.pipe(
  Schema.minLength(1, { message: () => "page_uuid must not be empty" }),
  Schema.maxLength(512, { message: () => "page_uuid must be at most 512 characters" }),
  Schema.filter((s) => !loneSurrogate.test(s) && !s.includes("\u0000"), {
    message: () => "page_uuid must be well-formed Unicode without NUL (no lone surrogates, no \\u0000)",
    title: "PageUuid",
    description:
      "An opaque page id: 1 to 512 characters (UTF-16 code units) of well-formed Unicode without NUL (no lone surrogates, no \\u0000).",
    jsonSchema: {},
  }),
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

/** A body that is not JSON at all (or not UTF-8, or could not be read), or a URL that is not percent-encoded UTF-8. */
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

/** A body sent as a media type the endpoint does not read (form encoding, multipart, octet-stream, none...). */
export class UnsupportedMediaType extends Schema.TaggedError<UnsupportedMediaType>()(
  "UnsupportedMediaType",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 415 }),
) {}

/** No such route. */
export class RouteNotFound extends Schema.TaggedError<RouteNotFound>()(
  "RouteNotFound",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 404 }),
) {}

/**
 * A request the service failed to serve through a fault of its own (a bug; logged with its cause). Every path
 * answers a defect with this error, the HttpApi and the fast lane alike.
 */
export class InternalError extends Schema.TaggedError<InternalError>()(
  "InternalError",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 500 }),
) {}

/** One click's refusal inside a batch's answer: what the same click sent alone would be answered. */
export const BatchRefusal = Schema.Struct({
  _tag: Schema.String,
  status: Schema.Int,
  message: Schema.String,
}).annotations({
  description:
    "The click's refusal, as the same click saved alone would be answered: 422 InvalidRequest, 409 IdempotencyConflict, 429 RateLimited (its page), 503 StorageUnavailable or PageBusy (not stored; retry it)",
})

/** One click's outcome in a batch: its cluster, or its refusal. */
export const BatchAnswer = Schema.Union(SaveResult, Schema.Struct({ error: BatchRefusal }))
export type BatchAnswer = typeof BatchAnswer.Type

/**
 * A batch's clicks, each decoded on its own by the handler (as SaveClick), so that a bad click is its own 422 entry
 * rather than the whole batch's; the document shows the save's body here (asServed).
 */
const BatchClicks = Schema.Array(Schema.Unknown)

const save = <const Name extends string>(name: Name, path: `/${string}`) =>
  HttpApiEndpoint.post(name, path)
    .setPayload(SaveClick)
    .setHeaders(IdempotencyHeaders)
    .addSuccess(SaveResult)
    .addError(IdempotencyConflict)
    .addError(PageBusy)
    .addError(StorageUnavailable)
    .addError(RateLimited)
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

/** The trackers' hot POST routes (CONTRACT.md); exported so the fast lane can name the ones it serves. */
export const TrackerEndpoints = {
  saveClick: save("saveClick", "/save_click_and_predict_cluster").annotate(
    OpenApi.Summary,
    "Save a click, answer its cluster",
  ),
  newClick: save("newClick", "/new_click").annotate(OpenApi.Summary, "Save a click (alias)"),
  predictCluster: predict("predictCluster", "/predict_cluster").annotate(
    OpenApi.Summary,
    "The cluster a click would join",
  ),
  predictClick: predict("predictClick", "/predict_click").annotate(
    OpenApi.Summary,
    "The cluster a click would join (alias)",
  ),
  saveClicks: HttpApiEndpoint.post("saveClicks", "/clicks")
    .setPayload(BatchClicks)
    .addSuccess(Schema.Array(BatchAnswer))
    .addError(RateLimited)
    .annotate(OpenApi.Summary, "Save a batch of clicks, answer each one's cluster")
    .annotate(
      OpenApi.Description,
      "Stores up to MAX_BATCH_CLICKS clicks (default 1,000; body up to MAX_BATCH_BYTES, default 1 MiB), each exactly like the save's body, as a JSON array, as NDJSON (`application/x-ndjson`, one click per line) or as `text/plain` holding either (what `navigator.sendBeacon` sends). Answers one entry per click in the batch's order: `{cluster_idx, is_new}`, or `{error: {_tag, status, message}}` for a click refused on its own (422 invalid, 409 request_id reused for another click, 429 its page over its rate limit, 503 not stored). Each page's clicks are decided in the batch's order, as consecutive saves; every click answered with a cluster is durable before the answer. A `request_id` per click makes resending the batch safe. 413 for a batch over either limit; 429 (with Retry-After) when the client is over its rate limit.",
    ),
} as const

/**
 * The trackers' contract (CONTRACT.md): paths, bodies and answers are fixed. Its POST routes are also served by the
 * HTTP fast lane (TrackerFastLane.ts), which is generated from these declarations.
 */
export class TrackerApi extends HttpApiGroup.make("tracker")
  .add(TrackerEndpoints.saveClick)
  .add(TrackerEndpoints.newClick)
  .add(TrackerEndpoints.predictCluster)
  .add(TrackerEndpoints.predictClick)
  .add(TrackerEndpoints.saveClicks)
  .add(
    HttpApiEndpoint.get("bestCluster", "/get_best_cluster")
      .setUrlParams(Schema.Struct({ page_uuid: PageUuid }))
      .addSuccess(BestCluster)
      .addError(PageNotFound)
      .addError(PageBusy)
      .addError(StorageUnavailable)
      .annotate(OpenApi.Summary, "A page's biggest cluster")
      .annotate(OpenApi.Description, "The page's cluster with the most clicks, with every click in it."),
  )
  .add(
    HttpApiEndpoint.get("version", "/")
      .addSuccess(Schema.Struct({ version: Schema.Literal(0) }))
      .annotate(OpenApi.Summary, "The contract's version")
      .annotate(
        OpenApi.Description,
        'Always `{"version": 0}`: the trackers\' contract this service implements.',
      ),
  ) {}

const PageParam = HttpApiSchema.param("page_uuid", PageUuid)

/**
 * The instants an activity series may span: four-digit years, 0001 to 9999 in UTC. The database holds no year 0 and
 * `toISOString` writes years past 9999 with a sign that it cannot read, so anything outside is refused up front.
 */
const InstantRange = {
  earliest: "0001-01-01T00:00:00.000Z",
  latest: "9999-12-31T23:59:59.999Z",
} as const

const instantFormat =
  "an RFC 3339 date-time with a zone such as 2026-11-25T00:00:00Z or 2026-11-25T01:00:00+01:00 (a + in a URL is sent as %2B), or a date such as 2026-11-25 (UTC midnight)"

/**
 * An instant as RFC 3339 writes it (or a bare date, read as UTC midnight), not whatever `Date.parse` makes of a
 * string: it reads "1" as 2001 in local time and rolls 2026-02-30 over to March.
 */
const Instant = Schema.String.pipe(
  Schema.pattern(
    /^\d{4}-\d{2}-\d{2}(T([01]\d|2[0-3]):[0-5]\d(:[0-5]\d(\.\d{1,9})?)?(Z|[+-]([01]\d|2[0-3]):[0-5]\d))?$/,
    {
      message: () => `must be ${instantFormat}`,
      description: `${instantFormat}; between ${InstantRange.earliest} and ${InstantRange.latest} (UTC)`,
    },
  ),
  Schema.filter((s) => {
    const date = s.slice(0, 10)
    const midnight = Date.parse(`${date}T00:00:00Z`)
    return (
      (!Number.isNaN(midnight) && new Date(midnight).toISOString().startsWith(date)) ||
      `${date} is not a calendar date`
    )
  }),
  Schema.filter((s) => {
    const t = Date.parse(s)
    return (
      (t >= Date.parse(InstantRange.earliest) && t <= Date.parse(InstantRange.latest)) ||
      `must be between ${InstantRange.earliest} and ${InstantRange.latest} (UTC)`
    )
  }),
)

const clusterIdxFormat = "a cluster index: decimal digits, 0 to 2147483647"

/**
 * A cluster index in a query: decimal digits only, within the database's int. `Number` would also read "1e3",
 * " 5" and "0x10", and anything past 2^31 - 1 failed in SQL as a 503.
 */
const ClusterIdxParam = Schema.compose(
  Schema.String.pipe(
    Schema.pattern(/^\d{1,10}$/, {
      message: () => `must be ${clusterIdxFormat}`,
      description: clusterIdxFormat,
    }),
  ),
  Schema.NumberFromString,
).pipe(Schema.lessThanOrEqualTo(2_147_483_647, { message: () => `must be ${clusterIdxFormat}` }))

export const ClusterInfo = Schema.Struct({
  cluster_idx: Schema.Int,
  centroid: Schema.Struct({ x: Schema.Number, y: Schema.Number }),
  count: Schema.Int,
  first_click_at: Schema.String,
  last_click_at: Schema.String,
})

export const Granularity = Schema.Literal("hour", "day", "week", "month").annotations({
  // override: one issue naming the choices, not one per literal.
  message: () => ({ message: "must be one of hour, day, week, month", override: true }),
})

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
      .annotate(OpenApi.Summary, "A page's clusters")
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
          // exact: a query has no undefined values, and a bad index is then one issue, not two.
          cluster_idx: Schema.optionalWith(ClusterIdxParam, { exact: true }),
        }),
      )
      .addSuccess(Activity)
      .addError(StorageUnavailable)
      .annotate(OpenApi.Summary, "A page's clicks per period")
      .annotate(
        OpenApi.Description,
        `Clicks per period (UTC), zero-filled, over [from, to); at most 10,000 periods. Optionally of one cluster. from and to lie between ${InstantRange.earliest} and ${InstantRange.latest}.`,
      ),
  ) {}

/** What a browser loads: the embeddable tracker, and a page's live cluster map with its event stream. */
export class BrowserApi extends HttpApiGroup.make("browser")
  .add(
    HttpApiEndpoint.get("tracker", "/tracker.js")
      .addSuccess(HttpApiSchema.Text({ contentType: "text/javascript; charset=utf-8" }))
      .annotate(OpenApi.Summary, "The embeddable click tracker")
      .annotate(
        OpenApi.Description,
        'A dependency-free script for `<script src=".../tracker.js" data-page="PAGE_ID" async></script>`: records clicks as document-relative coordinates in [0, 1] and posts them in batches to POST /clicks (on a timer and when the page is hidden). Options as data- attributes: page (default location.pathname), endpoint, interval (ms), respect-dnt. Gzipped when accepted, with an ETag.',
      ),
  )
  .add(
    HttpApiEndpoint.get("map")`/pages/${PageParam}/map`
      .setUrlParams(
        Schema.Struct({
          background: Schema.optionalWith(Schema.String, { exact: true }).annotations({
            description: "An image URL drawn under the clusters (a screenshot of the tracked page)",
          }),
        }),
      )
      .addSuccess(HttpApiSchema.Text({ contentType: "text/html; charset=utf-8" }))
      .annotate(OpenApi.Summary, "A page's live cluster map (HTML)")
      .annotate(
        OpenApi.Description,
        "The page's clusters drawn over the unit square (circle area by clicks, colour by share, hover for index, clicks, centroid, first and last click) with a table, kept live by GET /pages/{page_uuid}/events. Optionally over a background image (`background`, an http(s) or same-origin URL).",
      ),
  )
  .add(
    HttpApiEndpoint.get("events")`/pages/${PageParam}/events`
      .addSuccess(HttpApiSchema.Text({ contentType: "text/event-stream" }))
      .annotate(OpenApi.Summary, "A page's cluster changes (Server-Sent Events)")
      .annotate(
        OpenApi.Description,
        "Server-Sent Events, from the request on: `cluster.created` and `cluster.updated`, each with the cluster as GET /pages/{page_uuid}/clusters lists it, told once the click is committed, at most one per cluster every 250 ms (its latest state); a comment line every 15 s while idle.",
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
      .annotate(OpenApi.Summary, "Liveness probe")
      .annotate(OpenApi.Description, "Liveness: the process serves HTTP."),
  )
  .add(
    HttpApiEndpoint.get("ready", "/readyz")
      .addSuccess(Schema.Struct({ status: Schema.Literal("ready") }))
      .addError(NotReady)
      .annotate(OpenApi.Summary, "Readiness probe")
      .annotate(
        OpenApi.Description,
        "Readiness: the database answers and its schema is migrated; 503 with the reason otherwise.",
      ),
  )
  .add(
    HttpApiEndpoint.get("metrics", "/metrics")
      .addSuccess(HttpApiSchema.Text({ contentType: "text/plain; version=0.0.4; charset=utf-8" }))
      .annotate(OpenApi.Summary, "Prometheus metrics")
      .annotate(OpenApi.Description, "Prometheus text exposition."),
  ) {}

/** Operators' and analysts' bulk endpoints, behind the admin token when one is configured. */
export class AdminApi extends HttpApiGroup.make("admin")
  .add(
    HttpApiEndpoint.get("exportSnapshots", "/snapshots/export")
      .setUrlParams(Schema.Struct({ format: ExportFormat, page_uuid: Schema.optional(PageUuid) }))
      .addSuccess(HttpApiSchema.Text({ contentType: "application/x-ndjson" }))
      .addError(StorageUnavailable)
      // The framework declares one media type per status; the export answers the one its format names.
      .annotate(OpenApi.Transform, (operation) => ({
        ...operation,
        responses: {
          ...operation.responses,
          200: {
            description: "The export, streamed as it is read, in the requested format",
            content: {
              "application/x-ndjson": {
                schema: {
                  type: "string",
                  description: "format=ndjson: one JSON object per row, one row per line",
                },
              },
              "text/csv": {
                schema: { type: "string", description: "format=csv: a header line, then one line per row" },
              },
            },
          },
        },
      }))
      .annotate(OpenApi.Summary, "Export every page's clusters (CSV or NDJSON)")
      .annotate(
        OpenApi.Description,
        "Streams one row per cluster of every page (or one page's) as of the request: page_uuid, cluster_idx, centroid_x, centroid_y, click_count, first_click_at, last_click_at, seq. Each page is rebuilt from its latest snapshot and the clicks stored after it, so every click acknowledged before the request is included; seq is the page's last click the row includes. format=ndjson answers application/x-ndjson, format=csv answers text/csv with a header line.",
      ),
  )
  .middleware(AdminAuth) {}

/** A click count a subscription wants to hear of (cluster.threshold_reached). */
const Threshold = Schema.Int.pipe(
  Schema.between(1, 2_147_483_647, { message: () => "a threshold is a click count from 1 to 2147483647" }),
)

export const NewWebhook = Schema.Struct({
  url: Schema.String.pipe(Schema.maxLength(2048, { message: () => "url must be at most 2048 characters" })),
  events: Schema.Array(WebhookEventType).pipe(
    Schema.minItems(1, { message: () => "events must name at least one event type" }),
  ),
  pages: Schema.optional(
    Schema.Array(PageUuid).pipe(
      Schema.minItems(1, {
        message: () => "pages, when given, must name at least one page (omit it for every page)",
      }),
      Schema.maxItems(1000, { message: () => "pages must name at most 1000 pages" }),
    ),
  ),
  thresholds: Schema.optional(
    Schema.Array(Threshold).pipe(Schema.maxItems(100, { message: () => "at most 100 thresholds" })),
  ),
}).pipe(
  Schema.filter(
    (w) =>
      !w.events.includes("cluster.threshold_reached") ||
      (w.thresholds !== undefined && w.thresholds.length > 0) || {
        path: ["thresholds"],
        message: "cluster.threshold_reached needs at least one threshold",
      },
  ),
)

export const NewExportJob = Schema.Struct({
  format: ExportFormat,
  page: Schema.optional(PageUuid),
})

const WebhookId = HttpApiSchema.param("id", Schema.UUID)

/** Webhook subscriptions and their deliveries (README, Webhooks); admin endpoints. */
export class WebhooksApi extends HttpApiGroup.make("webhooks")
  .add(
    HttpApiEndpoint.post("createWebhook", "/webhooks")
      .setPayload(NewWebhook)
      .addSuccess(WebhookWithSecret, { status: 201 })
      .addError(StorageUnavailable)
      .annotate(OpenApi.Summary, "Subscribe a URL to events")
      .annotate(
        OpenApi.Description,
        "Events: cluster.created, cluster.threshold_reached (a cluster's click count reaches one of `thresholds`), page.best_cluster_changed, export.completed, export.failed; optionally of some `pages` only. The URL must be http(s) and resolve to no link-local or metadata address (nor loopback or private ones unless WEBHOOK_ALLOW_PRIVATE). Answers the subscription with its Standard Webhooks signing `secret`, shown only here and on rotation.",
      ),
  )
  .add(
    HttpApiEndpoint.get("listWebhooks", "/webhooks")
      .addSuccess(Schema.Struct({ webhooks: Schema.Array(Webhook) }))
      .addError(StorageUnavailable)
      .annotate(OpenApi.Summary, "Every subscription (without secrets)"),
  )
  .add(
    HttpApiEndpoint.get("getWebhook")`/webhooks/${WebhookId}`
      .addSuccess(Webhook)
      .addError(WebhookNotFound)
      .addError(StorageUnavailable)
      .annotate(OpenApi.Summary, "One subscription (without its secret)"),
  )
  .add(
    HttpApiEndpoint.del("deleteWebhook")`/webhooks/${WebhookId}`
      .addSuccess(HttpApiSchema.NoContent)
      .addError(WebhookNotFound)
      .addError(StorageUnavailable)
      .annotate(OpenApi.Summary, "Delete a subscription and its pending deliveries"),
  )
  .add(
    HttpApiEndpoint.post("rotateWebhookSecret")`/webhooks/${WebhookId}/rotate-secret`
      .addSuccess(WebhookWithSecret)
      .addError(WebhookNotFound)
      .addError(StorageUnavailable)
      .annotate(OpenApi.Summary, "A new signing secret; later attempts are signed with it"),
  )
  .add(
    HttpApiEndpoint.get("listDeliveries")`/webhooks/${WebhookId}/deliveries`
      .setUrlParams(DeliveriesQuery)
      .addSuccess(DeliveryPage)
      .addError(WebhookNotFound)
      .addError(StorageUnavailable)
      .annotate(OpenApi.Summary, "A subscription's deliveries, with every attempt")
      .annotate(
        OpenApi.Description,
        "In delivery id order, `limit` (default 100, at most 500) after the id `after`; optionally in one `state`: pending (due at next_attempt_at), delivered, dead (attempts exhausted). Each with its attempts: time, status, latency, error.",
      ),
  )
  .add(
    HttpApiEndpoint.post(
      "retryDelivery",
    )`/webhooks/${WebhookId}/deliveries/${HttpApiSchema.param("delivery", DeliveryIdParam)}/retry`
      .addSuccess(WebhookDelivery)
      .addError(WebhookNotFound)
      .addError(StorageUnavailable)
      .annotate(OpenApi.Summary, "Send a delivery again now (a dead one gets a fresh round of attempts)"),
  )
  .middleware(AdminAuth) {}

const ExportJobId = HttpApiSchema.param("id", Schema.UUID)

/** Export jobs: an export run in the background, downloaded when done (README, Export jobs); admin endpoints. */
export class ExportJobsApi extends HttpApiGroup.make("exportJobs")
  .add(
    HttpApiEndpoint.post("createExportJob", "/exports")
      .setPayload(NewExportJob)
      .addSuccess(ExportJob, { status: 202 })
      .addError(StorageUnavailable)
      .annotate(OpenApi.Summary, "Start an export job")
      .annotate(
        OpenApi.Description,
        "Answers at once with the job (202); the export runs in the background, survives a restart (it is run again), and export.completed or export.failed is sent to the subscribers of those events. The result is kept for EXPORT_RETENTION.",
      ),
  )
  .add(
    HttpApiEndpoint.get("getExportJob")`/exports/${ExportJobId}`
      .addSuccess(ExportJob)
      .addError(ExportJobNotFound)
      .addError(StorageUnavailable)
      .annotate(OpenApi.Summary, "An export job's state, progress and row count"),
  )
  .add(
    HttpApiEndpoint.get("downloadExportJob")`/exports/${ExportJobId}/download`
      .addSuccess(HttpApiSchema.Text({ contentType: "application/x-ndjson" }))
      .addError(ExportJobNotFound)
      .addError(ExportNotReady)
      .addError(StorageUnavailable)
      .annotate(OpenApi.Summary, "A completed export job's file, streamed (CSV or NDJSON, as its format)"),
  )
  .middleware(AdminAuth) {}

/** Sets every `additionalProperties: false` inside a JSON schema free, in place. */
const openObjects = (schema: unknown): void => {
  if (!Predicate.isObject(schema)) return
  if ("additionalProperties" in schema && schema.additionalProperties === false)
    Reflect.deleteProperty(schema, "additionalProperties")
  for (const value of Object.values(schema)) openObjects(value)
}

/** The 400 every endpoint may answer. */
const malformedAnswer = {
  description: "The body is not JSON (or not UTF-8), or the URL is not percent-encoded UTF-8",
  content: { "application/json": { schema: { $ref: "#/components/schemas/MalformedRequest" } } },
}

/** The value at `keys` inside a JSON document, when each step is an object. */
const at = (value: unknown, ...keys: ReadonlyArray<string>): unknown => {
  let current = value
  for (const key of keys) current = Predicate.isRecord(current) ? current[key] : undefined
  return current
}

/** The batch's body as the save's clicks, in the three media types it is read as. */
const batchBodyAsSaves = (spec: Record<string, unknown>) => {
  const click = at(
    spec,
    "paths",
    "/save_click_and_predict_cluster",
    "post",
    "requestBody",
    "content",
    "application/json",
    "schema",
  )
  const body = at(spec, "paths", "/clicks", "post", "requestBody")
  if (click === undefined || !Predicate.isRecord(body)) return
  body.content = {
    "application/json": { schema: { type: "array", items: click } },
    "application/x-ndjson": {
      schema: { type: "string", description: "One click per line, each as the save's body" },
    },
    "text/plain": {
      schema: {
        type: "string",
        description:
          "A JSON array of clicks, or NDJSON (a body starting with `[` is an array): what navigator.sendBeacon sends",
      },
    },
  }
}

/**
 * The generated document, corrected where the framework's defaults describe something the service does not do:
 * a 400 is always MalformedRequest (a body or query that does not fit is InvalidRequest, 422; the framework's
 * HttpApiDecodeError never reaches a client), and request bodies accept unknown fields (CONTRACT.md: they are
 * ignored), so they are not `additionalProperties: false`. The framework hands the document over untyped.
 */
const asServed = (spec: Record<string, unknown>): Record<string, unknown> => {
  for (const item of Predicate.isRecord(spec.paths) ? Object.values(spec.paths) : []) {
    for (const operation of Predicate.isRecord(item) ? Object.values(item) : []) {
      if (!Predicate.isRecord(operation)) continue
      if (Predicate.isRecord(operation.responses)) operation.responses[400] = malformedAnswer
      openObjects(operation.requestBody)
    }
  }
  batchBodyAsSaves(spec)
  // The framework's decode error and the schemas only it refers to.
  const components = spec.components
  if (Predicate.isRecord(components) && Predicate.isRecord(components.schemas)) {
    for (const unused of ["HttpApiDecodeError", "Issue", "PropertyKey"]) delete components.schemas[unused]
  }
  return spec
}

export class Api extends HttpApi.make("click-clusters")
  .add(TrackerApi)
  .add(PagesApi)
  .add(BrowserApi)
  .add(OpsApi)
  .add(AdminApi)
  .add(WebhooksApi)
  .add(ExportJobsApi)
  .addError(InvalidRequest)
  .addError(MalformedRequest)
  .addError(PayloadTooLarge)
  .addError(UnsupportedMediaType)
  .addError(RouteNotFound)
  .addError(InternalError)
  .annotate(OpenApi.Title, "Click clusters")
  .annotate(OpenApi.Version, packageJson.version)
  .annotate(OpenApi.Transform, asServed)
  .annotate(
    OpenApi.Description,
    "Online clustering of page clicks, one actor per page, every click durable.",
  ) {}
