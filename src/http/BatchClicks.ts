import { Effect, Either, ParseResult, Schema } from "effect"
import type { PageBusy } from "../actors/PageErrors.ts"
import { PageRouter } from "../actors/PageRouter.ts"
import { AppConfig } from "../Config.ts"
import type { IdempotencyConflict, StorageUnavailable } from "../persistence/StorageErrors.ts"
import { type BatchAnswer, PayloadTooLarge, type RateLimited, SaveClick } from "./Api.ts"
import { invalidRequest } from "./ErrorResponses.ts"
import { IngestLimits } from "./RateLimit.ts"
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

const decodeClick = Schema.decodeUnknownEither(SaveClick, { errors: "all" })

interface PageClicks {
  /** Where each click stands in the batch. */
  readonly at: Array<number>
  readonly clicks: Array<{ readonly x: number; readonly y: number; readonly requestId: string | null }>
}

/**
 * POST /clicks: each click decoded on its own (a bad one is its own 422 entry), the clicks grouped by page in their
 * order, one SaveMany message per page, the pages concurrently; the answer lists each click's outcome in the
 * batch's order once every click it acknowledges is committed (SaveMany answers only then).
 */
export const makeBatchClicks = Effect.gen(function* () {
  const router = yield* PageRouter
  const config = yield* AppConfig
  const limits = yield* IngestLimits

  return Effect.fnUntraced(function* (batch: ReadonlyArray<unknown>, client: string) {
    if (batch.length > config.maxBatchClicks)
      return yield* new PayloadTooLarge({
        message: `a batch holds at most ${config.maxBatchClicks} clicks (MAX_BATCH_CLICKS); this one has ${batch.length}`,
      })
    yield* limits.client(client, batch.length)
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
    yield* Effect.forEach(
      pages,
      ([page, { at, clicks }]) =>
        limits.page(page, clicks.length).pipe(
          Effect.zipRight(router.saveMany(page, clicks)),
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
    return answers
  })
})
