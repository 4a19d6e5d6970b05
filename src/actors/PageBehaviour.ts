import { Duration, Effect, Either, FiberSet, Option } from "effect"
import { AppConfig } from "../Config.ts"
import { type ClusterSummary, PageClusters, type PageClustersSnapshot } from "../domain/PageClusters.ts"
import { PageReplay } from "../domain/PageReplay.ts"
import { Metrics, secondsSince } from "../Metrics.ts"
import { ClickChain, ClickLog } from "../persistence/ClickLog.ts"
import { ClickRepository, type KeyedClick } from "../persistence/ClickRepository.ts"
import { CommitTicket } from "../persistence/CommitTicket.ts"
import { withDeadline } from "../persistence/DatabaseDeadline.ts"
import type { ClickEvent } from "../persistence/Outbox.ts"
import { PageHistory } from "../persistence/PageHistory.ts"
import { SnapshotStore } from "../persistence/SnapshotStore.ts"
import { IdempotencyConflict, StorageUnavailable, storageUnavailable } from "../persistence/StorageErrors.ts"
import { type PageInterest, WebhookInterest } from "../persistence/WebhookInterest.ts"
import { PageEvents } from "./PageEvents.ts"
import type { ClickError, ErrorOf, PageTag, PayloadOf, SavedClick, SuccessOf } from "./PageProtocol.ts"

/** The answer to a save, decided at once: acknowledged to the client once `committed` settles without error. */
export interface SaveDecision {
  readonly clusterIdx: number
  readonly isNew: boolean
  readonly committed: CommitTicket
}

/**
 * How a page serves the message tagged `T`: decided in the page's order (the outer effect, which may fail at once),
 * completed outside it (the effect it returns: a save's commit).
 */
export type PageHandler<T extends PageTag> = (
  state: PageState,
  payload: PayloadOf<T>,
  /** `performance.now()` by which the message must be answered: its arrival + DB_TIMEOUT. */
  deadline: number,
) => Effect.Effect<Effect.Effect<SuccessOf<T>, ErrorOf<T>>, ErrorOf<T>>

/** One handler per message of the protocol (PageProtocol.ts). */
export type PageHandlers = { readonly [T in PageTag]: PageHandler<T> }

/** What a page actor holds between messages. */
export interface PageState {
  readonly page: string
  readonly clusters: PageClusters
  readonly chain: ClickChain
  /** Number of the page's last click (0 before the first). */
  seq: number
  /** The commit of the last click handed to the log: a snapshot waits for it. */
  lastCommit: CommitTicket
  /** The last click covered by the latest snapshot, and when it was taken. */
  snapshotSeq: number
  snapshotAt: number
  /** Answers given to recent saves that carried a request id, so a duplicate gets the first answer at once. */
  answered: Map<string, { readonly x: number; readonly y: number; readonly reply: SaveDecision }> | undefined
  /** The largest cluster, kept while a webhook subscription watches it; undefined: not known (computed on need). */
  best: number | undefined
}

/** How many recent request ids a page remembers; older ones are found in the database. */
const ANSWERED_CAPACITY = 1024

/**
 * The page actor's behaviour, apart from how it is hosted: how a page's state is recovered, how each message is
 * answered (every decision is the domain's), and how the state is snapshotted.
 */
export class PageBehaviour extends Effect.Service<PageBehaviour>()("actors/PageBehaviour", {
  scoped: Effect.gen(function* () {
    const config = yield* AppConfig
    /** Read synchronously on the fast path; a TestClock in tests. */
    const clock = yield* Effect.clock
    /** Background snapshots, interrupted when the service closes (the page's clicks are in the log regardless). */
    const runInBackground = yield* FiberSet.makeRuntime<never>()
    const clickLog = yield* ClickLog
    const clicks = yield* ClickRepository
    const snapshots = yield* SnapshotStore
    const history = yield* PageHistory
    const metrics = yield* Metrics
    const events = yield* PageEvents
    /** What webhook subscriptions want of the clicks; a host without webhooks (some tests) decides no events. */
    const webhooks = Option.getOrUndefined(yield* Effect.serviceOption(WebhookInterest))
    const radius = config.clusterRadius
    const snapshotIntervalMs = Duration.toMillis(config.snapshotInterval)

    /** A page's state as replayed from the database: a new chain whose clicks are all committed. */
    const stateOf = (page: string, replay: PageReplay): PageState => {
      replay.clusters.compact()
      return {
        page,
        clusters: replay.clusters,
        chain: new ClickChain(),
        seq: replay.seq,
        lastCommit: CommitTicket.committed,
        snapshotSeq: replay.snapshotSeq,
        snapshotAt: clock.unsafeCurrentTimeMillis(),
        answered: undefined, // made on the first save with a request id: most pages never need it
        best: undefined,
      }
    }

    /**
     * Latest snapshot (when it was taken with this radius) + the clicks after it, in order; bounded by DB_TIMEOUT,
     * or by the deadline of the save that waits for it.
     */
    const recover = Effect.fn("PageBehaviour.recover")(
      function* (page: string, _deadline?: number) {
        yield* Effect.annotateCurrentSpan("page", page)
        const start = performance.now()
        // A statement of the page that outlived its deadline could still commit after the read below.
        yield* clickLog.written(page)
        const stored = yield* history.load(page)
        const replay = new PageReplay(radius, Option.getOrUndefined(stored.snapshot))
        replay.apply(stored.clicks)
        const state = stateOf(page, replay)
        metrics.recoveryDuration.observe(secondsSince(start))
        return state
      },
      (effect, _page, deadline) =>
        effect.pipe(
          withDeadline(
            deadline === undefined
              ? config.dbTimeout
              : Duration.millis(Math.max(0, deadline - performance.now())),
          ),
          Effect.tapError(() =>
            Effect.sync(() => metrics.databaseErrors.inc({ operation: "page_recovery" })),
          ),
          Effect.catchAll(storageUnavailable("recovering the page")),
        ),
    )

    const conflict = (requestId: string) =>
      new IdempotencyConflict({ message: `request id ${requestId} was already used for a different click` })

    /** The answer a stored click was given, or IdempotencyConflict when it is another click. */
    const answerOf = (
      state: PageState,
      requestId: string,
      x: number,
      y: number,
      stored: KeyedClick | undefined,
    ) => {
      if (stored === undefined) return Effect.succeed(Option.none<SaveDecision>())
      if (stored.page_uuid !== state.page || stored.x !== x || stored.y !== y)
        return Effect.fail(conflict(requestId))
      return Effect.succeed(
        Option.some<SaveDecision>({
          clusterIdx: stored.cluster_idx,
          isNew: stored.is_new,
          committed: CommitTicket.committed,
        }),
      )
    }

    const untilDeadline = (deadline: number) =>
      withDeadline(Duration.millis(Math.max(0, deadline - performance.now())))

    /**
     * The first answer to an earlier save with the same request id: from memory, else from `looked` (the stored
     * clicks of a batch's keys, fetched at once) when given, else from the click log.
     */
    const earlierAnswer = Effect.fnUntraced(function* (
      state: PageState,
      requestId: string,
      x: number,
      y: number,
      deadline: number,
      looked?: ReadonlyMap<string, KeyedClick>,
    ) {
      const recent = state.answered?.get(requestId)
      if (recent !== undefined) {
        return recent.x === x && recent.y === y ? Option.some(recent.reply) : yield* conflict(requestId)
      }
      if (looked !== undefined) return yield* answerOf(state, requestId, x, y, looked.get(requestId))
      const stored = yield* clicks
        .byRequestId(requestId)
        .pipe(untilDeadline(deadline), Effect.catchAll(storageUnavailable("looking up the request id")))
      return yield* answerOf(state, requestId, x, y, Option.getOrUndefined(stored))
    })

    /** The stored clicks of the request ids of a batch that memory does not answer, in one query. */
    const lookUpKeys = (state: PageState, batch: PayloadOf<"SaveMany">["clicks"], deadline: number) => {
      const ids = new Set<string>()
      for (const { requestId } of batch)
        if (requestId !== null && state.answered?.get(requestId) === undefined) ids.add(requestId)
      return ids.size === 0
        ? Effect.succeed(new Map<string, KeyedClick>())
        : clicks
            .byRequestIds([...ids])
            .pipe(untilDeadline(deadline), Effect.catchAll(storageUnavailable("looking up the request ids")))
    }

    const remember = (state: PageState, requestId: string, x: number, y: number, reply: SaveDecision) => {
      if (state.answered === undefined) state.answered = new Map()
      const answered = state.answered
      if (answered.size >= ANSWERED_CAPACITY) {
        const oldest = answered.keys().next()
        if (oldest.done !== true) answered.delete(oldest.value)
      }
      answered.set(requestId, { x, y, reply })
    }

    /**
     * Saves a click now: assigns it, numbers it and hands it to the click log, without waiting for the commit.
     * Synchronous, so the HTTP fast lane can call it for an idle page; the caller has checked `canSaveNow`.
     */
    const save = (
      state: PageState,
      x: number,
      y: number,
      requestId: string | null,
      deadline?: number,
    ): SaveDecision => {
      const at = clock.unsafeCurrentTimeMillis()
      const before = state.clusters.size
      const interest = webhooks?.forPage(state.page)
      const bestBefore = interest?.bestChanged === true ? (state.best ?? state.clusters.largest()) : undefined
      const clusterIdx = state.clusters.assign(x, y, at)
      state.seq += 1
      let caused: ReadonlyArray<ClickEvent> | undefined
      if (interest === undefined) state.best = undefined
      else caused = clickEvents(state, interest, clusterIdx, before, bestBefore)
      const committed = clickLog.append(
        { page: state.page, seq: state.seq, x, y, clusterIdx, at, requestId, events: caused },
        state.chain,
        deadline,
      )
      state.lastCommit = committed
      const isNew = clusterIdx === before
      if (isNew) metrics.clustersCreated.inc()
      if (events.watched(state.page))
        tellOnCommit(state.page, isNew, state.clusters.summary(clusterIdx), committed)
      return { clusterIdx, isNew, committed }
    }

    /**
     * The webhook events a click causes, decided with it in the page's order, so each is decided exactly once:
     * a new cluster; a cluster's count reaching a watched threshold (counts grow by one, so each is reached
     * once); the largest cluster changing (only the clicked cluster can overtake it; ties go to the lower index).
     * They are written to the outbox with the click, in its transaction (ClickLog).
     */
    const clickEvents = (
      state: PageState,
      interest: PageInterest,
      clusterIdx: number,
      sizeBefore: number,
      bestBefore: number | undefined,
    ): ReadonlyArray<ClickEvent> | undefined => {
      const clusters = state.clusters
      const count = clusters.count(clusterIdx)
      let caused: Array<ClickEvent> | undefined
      const add = (event: Omit<ClickEvent, "clusterIdx" | "centroidX" | "centroidY" | "count">) => {
        const { x, y } = clusters.centroid(clusterIdx)
        caused ??= []
        caused.push({ ...event, clusterIdx, centroidX: x, centroidY: y, count })
      }
      if (interest.created && clusterIdx === sizeBefore) add({ type: "cluster.created" })
      if (interest.thresholds.has(count)) add({ type: "cluster.threshold_reached", threshold: count })
      if (bestBefore === undefined) state.best = undefined
      else {
        const overtakes =
          bestBefore === PageClusters.NONE ||
          (clusterIdx !== bestBefore &&
            (count > clusters.count(bestBefore) ||
              (count === clusters.count(bestBefore) && clusterIdx < bestBefore)))
        state.best = overtakes ? clusterIdx : bestBefore
        if (overtakes)
          add({
            type: "page.best_cluster_changed",
            previousClusterIdx: bestBefore === PageClusters.NONE ? null : bestBefore,
          })
      }
      return caused
    }

    /** Tells the page's watchers of the cluster as this click left it, once (and only if) the click is committed. */
    const tellOnCommit = (page: string, isNew: boolean, cluster: ClusterSummary, committed: CommitTicket) =>
      committed.onSettled((error) => {
        if (error === undefined)
          events.publish({ type: isNew ? "cluster.created" : "cluster.updated", page, ...cluster })
      })

    /** The cluster a click would join, or null; changes nothing. */
    const predict = (state: PageState, x: number, y: number): number | null => {
      const i = state.clusters.predict(x, y)
      metrics.predictionsAnswered.count++
      return i === PageClusters.NONE ? null : i
    }

    /** A read that waited for the page's latest clicks, which were not stored: the page reloads; retry. */
    const unsettled = () =>
      new StorageUnavailable({
        message: "the page's latest clicks were not stored; the page is reloaded: retry",
      })

    /**
     * A read's answer, given once every click it counts is committed: no reader sees a click the log may yet
     * refuse (a failed batch undoes it in memory only by the page's reload).
     */
    const onceCommitted = <A>(state: PageState, answer: A) =>
      Effect.as(Effect.mapError(state.lastCommit.await, unsettled), answer)

    /** A save's completion: its answer, once its click is committed. */
    const acknowledged = (decision: SaveDecision): Effect.Effect<SavedClick, ClickError> =>
      Effect.as(decision.committed.await, { clusterIdx: decision.clusterIdx, isNew: decision.isNew })

    /** Decides one save: an earlier answer to its request id, else a new click handed to the log. */
    const decideSave = Effect.fnUntraced(function* (
      state: PageState,
      { x, y, requestId }: PayloadOf<"Save">,
      deadline: number,
      looked?: ReadonlyMap<string, KeyedClick>,
    ) {
      if (requestId !== null) {
        const earlier = yield* earlierAnswer(state, requestId, x, y, deadline, looked)
        if (Option.isSome(earlier)) return acknowledged(earlier.value)
      }
      yield* clickLog.awaitRoom
      const decision = save(state, x, y, requestId, deadline)
      if (requestId !== null) remember(state, requestId, x, y, decision)
      return acknowledged(decision)
    })

    /**
     * How each message is served, given the page's state and the message's deadline. Each handler is decided in
     * the page's order and returns the message's completion, which the sender awaits outside that order (a save's
     * commit), so a page goes on to its next message while earlier clicks are being written.
     */
    const handlers: PageHandlers = {
      Save: (state, payload, deadline) =>
        Effect.tap(decideSave(state, payload, deadline), () => snapshotIfDue(state)),
      SaveMany: Effect.fnUntraced(function* (state, { clicks }, deadline) {
        // Each click decided in turn, as if sent one after another; one click's refusal is its own answer.
        const completions: Array<Effect.Effect<SavedClick, ClickError>> = []
        const looked = yield* lookUpKeys(state, clicks, deadline)
        for (const click of clicks) {
          const decided = yield* Effect.either(decideSave(state, click, deadline, looked))
          completions.push(Either.isRight(decided) ? decided.right : Effect.fail(decided.left))
        }
        snapshotIfDue(state)
        // Awaited one after another on the sender's fiber, not a fiber per click: the log settles a page's clicks
        // in their order, so waiting for each in turn takes no longer than waiting for the last.
        return Effect.forEach(completions, Effect.either)
      }),
      Predict: (state, { x, y }) => Effect.sync(() => Effect.succeed(predict(state, x, y))),
      Largest: (state) =>
        Effect.sync(() => {
          const i = state.clusters.largest()
          // GET /get_best_cluster reads the cluster's clicks from the log next: it must find them all.
          return onceCommitted(state, i === PageClusters.NONE ? Option.none() : Option.some(i))
        }),
      Clusters: (state) =>
        Effect.sync(() =>
          onceCommitted(
            state,
            Array.from({ length: state.clusters.size }, (_, i) => state.clusters.summary(i)),
          ),
        ),
    }

    /** Whether the page has clicks its snapshot does not cover and one is due. */
    const snapshotDue = (state: PageState, now: number) =>
      state.seq > state.snapshotSeq &&
      (state.seq - state.snapshotSeq >= config.snapshotEvery || now - state.snapshotAt >= snapshotIntervalMs)

    /** Stores a snapshot once every click it covers is committed; the store gets DB_TIMEOUT of its own. */
    const storeSnapshot = Effect.fn("PageBehaviour.storeSnapshot")(
      function* (page: string, seq: number, clusters: PageClustersSnapshot, committed: CommitTicket) {
        yield* Effect.annotateCurrentSpan({ page, seq })
        // The commit wait is bounded by the click log itself.
        yield* committed.await
        const start = performance.now()
        yield* snapshots.save(page, { seq, radius, clusters }).pipe(
          withDeadline(config.dbTimeout),
          Effect.tapError(() => Effect.sync(() => metrics.databaseErrors.inc({ operation: "snapshot" }))),
        )
        metrics.snapshotsWritten.inc()
        metrics.snapshotDuration.observe(secondsSince(start))
      },
      (effect, page, seq) =>
        Effect.catchAll(effect, (cause) =>
          Effect.logWarning("snapshot not stored", cause).pipe(Effect.annotateLogs({ page, seq })),
        ),
    )

    /**
     * Captures the state now and returns the effect that stores it once every click it covers is committed
     * (a snapshot never holds a click the log does not). The actor forks that effect: it is off the request path.
     */
    const takeSnapshot = (state: PageState) => {
      const seq = state.seq
      const clusters = state.clusters.toSnapshot()
      const committed = state.lastCommit
      state.snapshotSeq = seq
      state.snapshotAt = clock.unsafeCurrentTimeMillis()
      return storeSnapshot(state.page, seq, clusters, committed)
    }

    /** Takes a snapshot in the background when one is due (never on the request path). */
    const snapshotIfDue = (state: PageState) => {
      if (snapshotDue(state, clock.unsafeCurrentTimeMillis())) runInBackground(takeSnapshot(state))
    }

    return {
      recover,
      /** The state of a page the database is known to hold nothing of: what `recover` would give, without a read. */
      emptyState: (page: string) => stateOf(page, new PageReplay(radius, undefined)),
      handlers,
      save,
      predict,
      /** Whether a save can hand its click to the log without waiting (the writer's buffer has room). */
      canSaveNow: clickLog.hasRoom,
      snapshotDue,
      snapshotIfDue,
      /** Snapshots the state in the background (a page leaving memory with clicks its snapshot lacks). */
      snapshotInBackground: (state: PageState) => {
        runInBackground(takeSnapshot(state))
      },
      takeSnapshot,
    } as const
  }),
}) {}
