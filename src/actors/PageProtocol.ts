import { Entity } from "@effect/cluster"
import { Rpc } from "@effect/rpc"
import { Schema } from "effect"
import { IdempotencyConflict, StorageUnavailable } from "../persistence/StorageErrors.ts"
import { PageBusy, RateLimited } from "./PageErrors.ts"

/**
 * The page actor's protocol: every message a page serves, with its payload, its answer and its errors, declared
 * once as schemas in the shape of an `@effect/cluster` entity, so the same declaration can be hosted in this
 * process (PageActorHost) or sharded over runners. Messages are plain data: where a reply goes is the host's
 * business, never the message's.
 *
 * The ordering rule, stated once: a page serves its messages one at a time, in the order they reached it. A
 * message is decided (its click assigned and numbered, its read answered) before the next one is looked at; a save
 * is acknowledged only once its click is committed, and its commit never waits for a later message.
 *
 * Every message may also fail with PageBusy before the page looks at it (its mailbox is full, the service is
 * shutting down), so a message forwarded to another runner answers the same 503 as a local one; a save, with
 * RateLimited when the page's allowance (RATE_LIMIT_PER_PAGE) is spent, taken by whichever runner serves the page.
 */

/** A coordinate of the unit square. */
const Unit = Schema.Number.pipe(Schema.finite(), Schema.between(0, 1))

/** A cluster's position in its page: 0, 1, 2, … in order of foundation. */
const ClusterIndex = Schema.NonNegativeInt

/** What a stored click was given. */
export const SavedClick = Schema.Struct({ clusterIdx: ClusterIndex, isNew: Schema.Boolean })
export type SavedClick = typeof SavedClick.Type

/** One cluster of a page; times are epoch milliseconds. */
export const ClusterSummary = Schema.Struct({
  clusterIdx: ClusterIndex,
  centroidX: Unit,
  centroidY: Unit,
  count: Schema.Int,
  firstAt: Schema.Number,
  lastAt: Schema.Number,
})

/** Why one click was not stored: the database failed, or its request id belongs to another click. */
export const ClickError = Schema.Union(StorageUnavailable, IdempotencyConflict)
export type ClickError = typeof ClickError.Type

/**
 * Stores a click and answers the cluster it joined or founded. A request id (a client's idempotency key) already
 * stored for the same click answers the first answer again; for another click, IdempotencyConflict.
 */
export const Save = Rpc.make("Save", {
  payload: { x: Unit, y: Unit, requestId: Schema.NullOr(Schema.String) },
  success: SavedClick,
  error: Schema.Union(ClickError, PageBusy, RateLimited),
})

/**
 * Stores several clicks of the page, in their order, as if each were sent as a Save right after the one before;
 * each click gets its own answer or its own refusal.
 */
export const SaveMany = Rpc.make("SaveMany", {
  payload: { clicks: Schema.Array(Save.payloadSchema) },
  success: Schema.Array(Schema.Either({ right: SavedClick, left: ClickError })),
  error: Schema.Union(StorageUnavailable, PageBusy, RateLimited),
})

/** The cluster a click would join (null: it would found one); changes nothing. */
export const Predict = Rpc.make("Predict", {
  payload: { x: Unit, y: Unit },
  success: Schema.NullOr(ClusterIndex),
  error: Schema.Union(StorageUnavailable, PageBusy),
})

/** The index of the cluster with the most clicks (ties → lower index); none for a page without clicks. */
export const Largest = Rpc.make("Largest", {
  success: Schema.Option(ClusterIndex),
  error: Schema.Union(StorageUnavailable, PageBusy),
})

/** Every cluster of the page, by index. */
export const Clusters = Rpc.make("Clusters", {
  success: Schema.Array(ClusterSummary),
  error: Schema.Union(StorageUnavailable, PageBusy),
})

/** The page entity: its messages, addressed by page id. */
export const Page = Entity.make("Page", [Save, SaveMany, Predict, Largest, Clusters])

/** Whether a message changes the page: it must be served on a state recovered from the database, never a stale one. */
export const changesState = (tag: PageTag) => tag === Save._tag || tag === SaveMany._tag

/** Any of the page's messages (an Rpc declaration). */
export type PageRpc = typeof Save | typeof SaveMany | typeof Predict | typeof Largest | typeof Clusters
export type PageTag = Rpc.Tag<PageRpc>
/** The declaration of the message with tag `T`. */
export type PageRpcOf<T extends PageTag> = Rpc.ExtractTag<PageRpc, T>
export type PayloadOf<T extends PageTag> = Rpc.Payload<PageRpcOf<T>>
export type SuccessOf<T extends PageTag> = Rpc.Success<PageRpcOf<T>>
export type ErrorOf<T extends PageTag> = Rpc.Error<PageRpcOf<T>>
