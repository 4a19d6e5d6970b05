import { SqlClient } from "@effect/sql"
import { Duration, Effect, Schedule } from "effect"

/** What the subscriptions watching one page want of its clicks. */
export interface PageInterest {
  readonly created: boolean
  readonly bestChanged: boolean
  /** Click counts at which some subscription wants cluster.threshold_reached. */
  readonly thresholds: ReadonlySet<number>
}

interface SubscriptionFilter {
  readonly events: ReadonlyArray<string>
  readonly pages: ReadonlyArray<string> | null
  readonly thresholds: ReadonlyArray<number>
}

/** How often the filters are read again, to see subscriptions made or deleted by another process. */
const REFRESH_EVERY = Duration.seconds(5)

const interestOf = (filters: ReadonlyArray<SubscriptionFilter>): PageInterest | undefined => {
  let created = false
  let bestChanged = false
  const thresholds = new Set<number>()
  for (const f of filters) {
    if (f.events.includes("cluster.created")) created = true
    if (f.events.includes("page.best_cluster_changed")) bestChanged = true
    if (f.events.includes("cluster.threshold_reached")) for (const t of f.thresholds) thresholds.add(t)
  }
  return created || bestChanged || thresholds.size > 0 ? { created, bestChanged, thresholds } : undefined
}

/**
 * The click events the webhook subscriptions want, held in memory so a page's actor decides a click's events
 * synchronously, and at no cost when there is no subscription (the usual case). Which subscriptions receive an
 * event is decided again in the database when it is committed (Outbox.ts), so this only has to be a superset:
 * an event nobody wants is stored without deliveries. Read at start, after every change made by this process,
 * and every few seconds for changes made by another one.
 */
export class WebhookInterest extends Effect.Service<WebhookInterest>()("persistence/WebhookInterest", {
  scoped: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    let everyPage: ReadonlyArray<SubscriptionFilter> = []
    let byPage = new Map<string, ReadonlyArray<SubscriptionFilter>>()
    let cache = new Map<string, PageInterest | undefined>()
    let none = true

    const refresh = sql<SubscriptionFilter>`
      SELECT events, pages, thresholds FROM webhook_subscriptions
    `.pipe(
      Effect.tap((rows) => {
        const all: Array<SubscriptionFilter> = []
        const pages = new Map<string, Array<SubscriptionFilter>>()
        for (const row of rows) {
          if (row.pages === null) all.push(row)
          else for (const page of row.pages) pages.set(page, [...(pages.get(page) ?? []), row])
        }
        everyPage = all
        byPage = pages
        cache = new Map()
        none = rows.length === 0
      }),
      Effect.asVoid,
      Effect.withSpan("WebhookInterest.refresh"),
    )

    yield* refresh
    yield* Effect.forkScoped(
      refresh.pipe(
        Effect.catchAll((error) => Effect.logWarning("webhook subscriptions not re-read", error)),
        Effect.repeat(Schedule.spaced(REFRESH_EVERY)),
      ),
    )

    return {
      refresh,
      /** What the subscriptions want of a page's clicks; undefined when nothing (synchronous, cached per page). */
      forPage: (page: string): PageInterest | undefined => {
        if (none) return undefined
        if (cache.has(page)) return cache.get(page)
        const own = byPage.get(page)
        const interest = interestOf(own === undefined ? everyPage : [...everyPage, ...own])
        // Bounded: a service with many pages and a subscription for every page keeps one entry per active page.
        if (cache.size >= 100_000) cache.clear()
        cache.set(page, interest)
        return interest
      },
    }
  }),
}) {}
