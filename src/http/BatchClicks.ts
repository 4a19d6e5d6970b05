import { Effect, Either, Option, ParseResult } from "effect"
import { IngestLimits } from "../actors/IngestLimits.ts"
import { PageActorHost } from "../actors/PageActorHost.ts"
import type { SaveDecision } from "../actors/PageBehaviour.ts"
import type { PageBusy, RateLimited } from "../actors/PageErrors.ts"
import { PageRouter } from "../actors/PageRouter.ts"
import { AppConfig } from "../Config.ts"
import type { CommitError } from "../persistence/CommitTicket.ts"
import type { IdempotencyConflict, StorageUnavailable } from "../persistence/StorageErrors.ts"
import { type BatchAnswer, PayloadTooLarge, SaveClick } from "./Api.ts"
import { invalidRequest } from "./ErrorResponses.ts"
import { decodePlainFirst } from "./PlainSchema.ts"
import { saveResult } from "./TrackerHandlers.ts"

type ClickRefusal =
  | ReturnType<typeof invalidRequest>
  | IdempotencyConflict
  | StorageUnavailable
  | PageBusy
  | RateLimited

const statusOf: Record<ClickRefusal["_tag"], number> = {
  InvalidRequest: 422,
  IdempotencyConflict: 409,
  StorageUnavailable: 503,
  PageBusy: 503,
  RateLimited: 429,
}

/** A click's refusal as its entry in the batch's answer: what the same click alone would have been answered. */
const refused = (error: ClickRefusal): BatchAnswer => ({
  error: { _tag: error._tag, status: statusOf[error._tag], message: error.message },
})

const decodeClick = decodePlainFirst(SaveClick, { errors: "all" })

interface PageClicks {
  /** Where each click stands in the batch. */
  readonly at: Array<number>
  readonly clicks: Array<{ readonly x: number; readonly y: number; readonly requestId: string | null }>
}

/** Waits until every ticket of the clicks served at once is settled, and writes each click's answer. */
const answerWhenCommitted = (
  served: ReadonlyArray<readonly [number, SaveDecision]>,
  answers: Array<BatchAnswer>,
) =>
  Effect.async<void>((resume) => {
    let left = served.length
    for (const [i, decision] of served)
      decision.committed.onSettled((error: CommitError | undefined) => {
        answers[i] = error === undefined ? saveResult(decision) : refused(error)
        if (--left === 0) resume(Effect.void)
      })
  })

/**
 * POST /clicks: each click decoded on its own (a bad one is its own 422 entry), the clicks grouped by page in their
 * order. A page whose actor is idle has its clicks served at once, as the fast lane serves a save
 * (PageActorHost.saveNow): a message per page costs far more than deciding its click, and a batch over hundreds of
 * pages would spend its time on them. The other pages (cold, busy, keyed clicks, per-page rate limits, another
 * runner's) get one SaveMany message each, concurrently, with whatever of their clicks was not served at once. The
 * answer lists each click's outcome in the batch's order once every click it acknowledges is committed.
 */
export const makeBatchClicks = Effect.gen(function* () {
  const router = yield* PageRouter
  const host = yield* PageActorHost
  const config = yield* AppConfig
  const limits = yield* IngestLimits
  // A per-page allowance is taken per page message: with one configured, every page goes through its message.
  const serveAtOnce = Option.isNone(config.rateLimitPerPage)

  /** Serves a page's leading unkeyed clicks at once while its actor stays idle; how many it served. */
  const serveNow = (page: string, group: PageClicks, served: Array<readonly [number, SaveDecision]>) => {
    let n = 0
    for (; n < group.clicks.length; n++) {
      const click = group.clicks[n]
      const at = group.at[n]
      if (click === undefined || at === undefined || click.requestId !== null) break
      const decision = host.saveNow(page, click.x, click.y)
      if (decision === undefined) break
      served.push([at, decision])
    }
    return n
  }

  return Effect.fnUntraced(function* (batch: ReadonlyArray<unknown>, client: string) {
    if (batch.length > config.maxBatchClicks)
      return yield* new PayloadTooLarge({
        message: `a batch holds at most ${config.maxBatchClicks} clicks (MAX_BATCH_CLICKS); this one has ${batch.length}`,
      })
    if (Option.isSome(limits.client)) yield* limits.client.value(client, batch.length)
    const answers = new Array<BatchAnswer>(batch.length)
    const pages = new Map<string, PageClicks>()
    for (let i = 0; i < batch.length; i++) {
      const decoded = decodeClick(batch[i])
      if (Either.isLeft(decoded)) {
        const issues = ParseResult.ArrayFormatter.formatErrorSync(decoded.left)
        answers[i] = refused(invalidRequest(issues, ParseResult.TreeFormatter.formatErrorSync(decoded.left)))
        continue
      }
      const click = decoded.right
      let page = pages.get(click.page_uuid)
      if (page === undefined) {
        page = { at: [], clicks: [] }
        pages.set(click.page_uuid, page)
      }
      page.at.push(i)
      // Lower-cased as a save's key is (TrackerHandlers.ts): Postgres prints UUIDs so.
      page.clicks.push({
        x: click.coordinates.x,
        y: click.coordinates.y,
        requestId: click.request_id?.toLowerCase() ?? null,
      })
    }
    const served: Array<readonly [number, SaveDecision]> = []
    const rest: Array<readonly [string, PageClicks]> = []
    for (const [page, group] of pages) {
      const n = serveAtOnce ? serveNow(page, group, served) : 0
      if (n === 0) rest.push([page, group])
      else if (n < group.clicks.length)
        rest.push([page, { at: group.at.slice(n), clicks: group.clicks.slice(n) }])
    }
    yield* Effect.forEach(
      rest,
      ([page, { at, clicks }]) =>
        router.saveMany(page, clicks).pipe(
          Effect.match({
            // The page refused as a whole (rate limited, busy, its recovery failed): each of its clicks says so.
            onFailure: (error) => {
              const entry = refused(error)
              for (const i of at) answers[i] = entry
            },
            onSuccess: (outcomes) =>
              outcomes.forEach((outcome, j) => {
                const i = at[j]
                if (i !== undefined)
                  answers[i] = Either.isRight(outcome) ? saveResult(outcome.right) : refused(outcome.left)
              }),
          }),
        ),
      { concurrency: "unbounded", discard: true },
    )
    if (served.length > 0) yield* answerWhenCommitted(served, answers)
    return answers
  })
})
