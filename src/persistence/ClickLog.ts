import { SqlClient, SqlError } from "@effect/sql"
import { Cause, Deferred, Duration, Effect, Exit, Fiber, FiberId, FiberSet, Option, Schedule } from "effect"
import { AppConfig } from "../Config.ts"
import { Metrics, secondsSince } from "../Metrics.ts"
import { type CommitError, CommitTicket } from "./CommitTicket.ts"
import { type ClickEvent, clickEvent, OutboxSignal, writeOutbox } from "./Outbox.ts"
import { float8Array, int4Array, int8Array } from "./PgBinaryArray.ts"
import { IdempotencyConflict, StorageUnavailable } from "./StorageErrors.ts"

/** One click as stored. */
export interface ClickRecord {
  readonly page: string
  readonly seq: number
  readonly x: number
  readonly y: number
  readonly clusterIdx: number
  /** Epoch milliseconds. */
  readonly at: number
  readonly requestId: string | null
  /** The webhook events the click causes (usually none): written to the outbox with it, in its transaction. */
  readonly events?: ReadonlyArray<ClickEvent> | undefined
}

/**
 * A run of clicks appended one after another from one in-memory state of a page (the caller holds one per state).
 * When a batch holding one of its clicks fails, the whole chain fails: its later clicks, computed on a state the
 * database will not have, are not written either, and the caller must reload the state before appending again.
 */
export class ClickChain {
  failed = false
  /** Clicks handed to the log and not yet committed or failed. */
  pending = 0
}

interface Pending {
  readonly record: ClickRecord
  readonly chain: ClickChain
  readonly ticket: CommitTicket
  /** `performance.now()` by which the click's caller must have its answer (appended + DB_TIMEOUT). */
  readonly deadline: number
}

/** Why a row of a batch was not inserted: its key was already stored. */
interface SkippedRow {
  /** 1-based position in the batch. */
  readonly ord: number
  /** The page already has a click with this seq (a stale state), rather than the request id being taken. */
  readonly seq_taken: boolean
}

/** What the 503s say: whether the click is known not to be stored, or may have been (outcome unknown). */
const notStored = (why: string) =>
  new StorageUnavailable({ message: `${why}; the click was not stored; retry` })
const mayBeStored = (why: string) =>
  new StorageUnavailable({
    message: `${why}; the click may have been stored: retry with the same request_id or Idempotency-Key to be sure it is stored once`,
  })

/**
 * An error the server sent (pg's DatabaseError, with a severity and an SQLSTATE) rolled the transaction back;
 * anything else (a lost connection, a timeout) may have come after the commit.
 */
const refusedByServer = (error: SqlError.SqlError) =>
  typeof error.cause === "object" && error.cause !== null && "severity" in error.cause

/**
 * The click log writer (group commit): a writer fiber takes the waiting clicks of every page, writes them in one
 * multi-row insert and then settles each caller. Up to WRITER_CONCURRENCY batches are written at once, on their
 * own connections, and no two of them share a page or a request id: a page's next clicks are taken only once its
 * batch in flight is settled, so its clicks commit in their order and a failed batch stops its pages' later clicks
 * before they are written, as with one batch at a time; and two transactions never wait on each other's keys.
 * Clicks wait in a plain array (appending is synchronous, so a page actor can hand over a click without
 * suspending); latches wake the writers when there is work and hold appenders back while the buffer is full.
 *
 * Every click is answered within DB_TIMEOUT of its append: a click still waiting at its deadline fails unwritten,
 * a batch's insert is bounded by its oldest click's deadline, and a watchdog settles whatever a defect would have
 * left waiting. The writer is supervised: a defect fails the batch it held and the writer goes on.
 */
export class ClickLog extends Effect.Service<ClickLog>()("persistence/ClickLog", {
  scoped: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const config = yield* AppConfig
    const metrics = yield* Metrics
    /** Wakes the webhook worker when a batch wrote events; absent where no worker runs. */
    const outboxSignal = yield* Effect.serviceOption(OutboxSignal)
    // The embedded database serves one connection: a second batch in flight would only wait for it.
    const writers = Option.isSome(config.databaseUrl)
      ? Math.min(config.writerConcurrency, config.dbPoolSize)
      : 1
    const capacity = config.writerBatchSize * 4 * writers
    const timeoutMs = Duration.toMillis(config.dbTimeout)
    const waiting: Array<Pending> = []
    /** The batches the writers hold, each until every click of it is settled. */
    const inFlight = new Set<ReadonlyArray<Pending>>()
    /** The pages and request ids of the batches in flight, which no other batch may take. */
    const busyPages = new Set<string>()
    const busyIds = new Set<string>()
    /** Open while a writer may find something to take: clicks were appended, or a batch in flight was settled. */
    const hasWork = yield* Effect.makeLatch(false)
    const hasRoom = yield* Effect.makeLatch(true)
    /**
     * Batches whose statement outlived its deadline (their callers were answered 503 "may have been stored"),
     * each until the statement's interruption is over: until then it may still commit, so its pages stay busy,
     * and a page's recovery waits (`written`) rather than read a log the statement may change after it.
     */
    const lingering = new Set<ReadonlyArray<Pending>>()
    const lingeringPages = new Map<string, Deferred.Deferred<void>>()
    const interruptions = yield* FiberSet.make()
    /** Open while nothing waits and nothing is in flight: what shutdown waits for. */
    const idle = yield* Effect.makeLatch(true)

    /**
     * Settles clicks; a listener that throws (a bug of the caller) is logged and does not keep the rest of the
     * batch from being answered.
     */
    const settle = (clicks: ReadonlyArray<Pending>, outcome: (p: Pending) => CommitError | undefined) =>
      Effect.suspend(() => {
        const defects: Array<unknown> = []
        for (const p of clicks) {
          if (p.ticket.settled) continue
          const error = outcome(p)
          p.chain.pending--
          if (error !== undefined) p.chain.failed = true
          try {
            p.ticket.settle(error)
          } catch (defect) {
            defects.push(defect)
          }
        }
        return defects.length === 0
          ? Effect.void
          : Effect.logError("a click's commit listener failed", Cause.die(defects[0]))
      })

    const fail = (clicks: ReadonlyArray<Pending>, error: StorageUnavailable) => settle(clicks, () => error)

    const array = <A>(clicks: ReadonlyArray<Pending>, f: (r: ClickRecord) => A) =>
      clicks.map((p) => f(p.record))

    /** The batch's pages once each, and each click's page as a 1-based index into them (a batch is often one page). */
    const pageIndexes = (clicks: ReadonlyArray<Pending>) => {
      const names: Array<string> = []
      const index = new Map<string, number>()
      const indexes = clicks.map(({ record: { page } }) => {
        let i = index.get(page)
        if (i === undefined) {
          i = names.push(page)
          index.set(page, i)
        }
        return i
      })
      return { names, indexes }
    }

    /**
     * Appends a batch in one statement (click_log_append, migration 0005): it skips a row whose request id or
     * (page, seq) is already stored and deletes again the later rows of that row's page (computed on a state that
     * counted the skipped click), atomically, so a batch stores, per page, exactly a prefix of its clicks. Answers
     * each click's failure by its position in the batch.
     */
    const appendBatch = (clicks: ReadonlyArray<Pending>) =>
      Effect.gen(function* () {
        const pages = pageIndexes(clicks)
        const skipped = yield* sql<SkippedRow>`
          SELECT ord, seq_taken FROM click_log_append(
            ${pages.names}::text[], ${int4Array(pages.indexes)}::int4[],
            ${int8Array(array(clicks, (r) => r.seq))}::int8[], ${float8Array(array(clicks, (r) => r.x))}::float8[],
            ${float8Array(array(clicks, (r) => r.y))}::float8[], ${int4Array(array(clicks, (r) => r.clusterIdx))}::int4[],
            ${array(clicks, (r) => r.requestId)}::uuid[], ${float8Array(array(clicks, (r) => r.at))}::float8[]
          )
        `
        const failures = new Map<number, CommitError>()
        if (skipped.length === 0) return failures
        const firstSkippedSeq = new Map<string, number>()
        for (const row of skipped) {
          const p = clicks[row.ord - 1]
          if (p === undefined) continue
          const { page, seq, requestId } = p.record
          failures.set(
            row.ord - 1,
            requestId === null || row.seq_taken
              ? notStored("the page's state was behind the click log (it is reloaded)")
              : new IdempotencyConflict({
                  message: `request id ${requestId} was already used for another click`,
                }),
          )
          firstSkippedSeq.set(page, Math.min(seq, firstSkippedSeq.get(page) ?? seq))
        }
        // The rows the statement deleted again: answered as not stored.
        clicks.forEach((p, i) => {
          const first = firstSkippedSeq.get(p.record.page)
          if (first !== undefined && p.record.seq > first)
            failures.set(i, notStored("an earlier click of this page was not stored"))
        })
        return failures
      })

    /**
     * A batch commits in one statement; one whose clicks cause webhook events (rare) writes them to the outbox in
     * the same transaction, for its stored clicks only.
     */
    const insert = (clicks: ReadonlyArray<Pending>) =>
      clicks.some((p) => p.record.events !== undefined && p.record.events.length > 0)
        ? sql.withTransaction(
            Effect.gen(function* () {
              const failures = yield* appendBatch(clicks)
              const eventsWritten = yield* outbox(clicks, failures)
              return { failures, eventsWritten }
            }),
          )
        : Effect.map(appendBatch(clicks), (failures) => ({ failures, eventsWritten: false }))

    /**
     * The events of the batch's stored clicks (not the skipped or undone ones) into the outbox, in the batch's
     * transaction; nothing at all when no click of the batch has an event (the usual case). Whether it wrote any.
     */
    const outbox = (clicks: ReadonlyArray<Pending>, failures: ReadonlyMap<number, CommitError>) => {
      let events: Array<ReturnType<typeof clickEvent>> | undefined
      clicks.forEach((p, i) => {
        const caused = p.record.events
        if (caused === undefined || caused.length === 0 || failures.has(i)) return
        events ??= []
        for (const event of caused) events.push(clickEvent(p.record.page, p.record.at, event))
      })
      if (events === undefined) return Effect.succeed(false)
      return Effect.as(writeOutbox(sql, events), true)
    }

    /**
     * Prepares a batch: a click whose page already failed, or whose deadline passed while it waited, fails
     * unwritten; a request id used twice in the batch fails its second use (409), and with it that page's later
     * clicks of the batch.
     */
    const prepare = (taken: ReadonlyArray<Pending>, now: number) => {
      const live: Array<Pending> = []
      const dead: Array<[Pending, CommitError]> = []
      const brokenPages = new Set<string>()
      const requestIds = new Set<string>()
      for (const p of taken) {
        const { page, requestId } = p.record
        if (p.ticket.settled) continue
        if (p.chain.failed || brokenPages.has(page)) {
          dead.push([p, notStored("an earlier click of this page was not stored")])
        } else if (p.deadline <= now) {
          brokenPages.add(page)
          dead.push([p, notStored("the click log could not write it in time (DB_TIMEOUT)")])
        } else if (requestId !== null && requestIds.has(requestId)) {
          brokenPages.add(page)
          dead.push([
            p,
            new IdempotencyConflict({
              message: `request id ${requestId} was already used for another click`,
            }),
          ])
        } else {
          if (requestId !== null) requestIds.add(requestId)
          live.push(p)
        }
      }
      return { live, dead }
    }

    /** One span per batch (not per click): the group commit is what a trace should show of the click log. */
    const writeBatch = Effect.fn("ClickLog.writeBatch")(function* (taken: ReadonlyArray<Pending>) {
      // performance.now(), not Clock: the deadlines come from the synchronous append path, on this clock.
      const start = performance.now()
      const { live, dead } = prepare(taken, start)
      if (dead.length > 0) {
        const reasons = new Map(dead)
        yield* settle(
          dead.map(([p]) => p),
          (p) => reasons.get(p),
        )
      }
      if (live.length === 0) return
      const oldest = Math.min(...live.map((p) => p.deadline))
      const statement = yield* Effect.fork(
        insert(live).pipe(
          // @effect/sql turns a failed COMMIT or ROLLBACK into a defect; it is the database's failure all the
          // same (a connection cut mid-transaction fails the statement or the rollback, whichever notices first).
          Effect.catchSomeDefect((defect) =>
            defect instanceof SqlError.SqlError ? Option.some(Effect.fail(defect)) : Option.none(),
          ),
          Effect.interruptible,
        ),
      )
      const outcome = yield* Fiber.join(statement).pipe(
        Effect.timeout(Duration.millis(oldest - start)),
        Effect.either,
      )
      if (outcome._tag === "Left" && outcome.left._tag === "TimeoutException") yield* linger(taken, statement)
      // After the commit, so the worker it wakes sees the deliveries.
      if (outcome._tag === "Right" && outcome.right.eventsWritten)
        Option.map(outboxSignal, (signal) => signal.notify())
      if (outcome._tag === "Left") {
        metrics.databaseErrors.inc({ operation: "click_log_insert" })
        yield* Effect.logWarning("click log batch failed", outcome.left)
        const error = outcome.left
        return yield* fail(
          live,
          error._tag === "SqlError" && refusedByServer(error)
            ? notStored("the click log refused the batch")
            : mayBeStored(
                error._tag === "TimeoutException"
                  ? "the click log did not commit in time (DB_TIMEOUT)"
                  : "the click log's connection failed",
              ),
        )
      }
      const { failures } = outcome.right
      const stored = live.length - failures.size
      metrics.commitDuration.observe(secondsSince(start))
      metrics.batchSize.observe(live.length)
      metrics.clicksSaved.inc(stored)
      const byIndex = new Map(live.map((p, i) => [p, failures.get(i)]))
      yield* settle(live, (p) => byIndex.get(p))
    })

    /**
     * Takes the next batch: the waiting clicks in their order, up to WRITER_BATCH_SIZE, leaving behind every click
     * of a page or request id held by a batch in flight, and with it its page's later clicks (they wait for it).
     */
    const take = (): ReadonlyArray<Pending> => {
      if (inFlight.size === 0) return waiting.splice(0, config.writerBatchSize)
      const batch: Array<Pending> = []
      const left = new Set<string>()
      let kept = 0
      for (const p of waiting) {
        const { page, requestId } = p.record
        if (
          batch.length < config.writerBatchSize &&
          !busyPages.has(page) &&
          !left.has(page) &&
          (requestId === null || !busyIds.has(requestId))
        )
          batch.push(p)
        else {
          left.add(page)
          waiting[kept++] = p
        }
      }
      waiting.length = kept
      return batch
    }

    const hold = (batch: ReadonlyArray<Pending>) => {
      inFlight.add(batch)
      for (const { record } of batch) {
        busyPages.add(record.page)
        if (record.requestId !== null) busyIds.add(record.requestId)
      }
    }

    /**
     * Keeps a timed-out batch in flight while its statement is interrupted in the background (the driver cancels
     * it with `pg_cancel_backend` and waits for that answer), then releases it.
     */
    const linger = (batch: ReadonlyArray<Pending>, statement: Fiber.RuntimeFiber<unknown, unknown>) => {
      lingering.add(batch)
      const over = Deferred.unsafeMake<void>(FiberId.none)
      for (const { record } of batch) lingeringPages.set(record.page, over)
      return FiberSet.run(
        interruptions,
        Fiber.interrupt(statement).pipe(
          Effect.ensuring(
            Effect.sync(() => {
              lingering.delete(batch)
              for (const { record } of batch)
                if (lingeringPages.get(record.page) === over) lingeringPages.delete(record.page)
              Deferred.unsafeDone(over, Exit.void)
              release(batch)
            }),
          ),
        ),
      )
    }

    /** A batch is settled: its pages' later clicks may be taken now. */
    const release = (batch: ReadonlyArray<Pending>) => {
      if (lingering.has(batch) || !inFlight.delete(batch)) return
      for (const { record } of batch) {
        busyPages.delete(record.page)
        if (record.requestId !== null) busyIds.delete(record.requestId)
      }
      if (waiting.length > 0) hasWork.unsafeOpen()
      else if (inFlight.size === 0) idle.unsafeOpen()
    }

    /**
     * One writer: waits until it can take a batch, writes it, releases it. Supervised: a defect fails the batch the
     * writer held (its outcome is unknown) and the writer goes on.
     */
    const writer = Effect.suspend(() => {
      let held: ReadonlyArray<Pending> = []
      const turn = Effect.gen(function* () {
        if (waiting.length < config.writerBatchSize && Duration.toMillis(config.writerLinger) > 0)
          yield* Effect.sleep(config.writerLinger)
        let batch = take()
        while (batch.length === 0) {
          // Closing and awaiting happen in one synchronous step after the failed take: no append or release can
          // slip in between unseen.
          if (waiting.length === 0 && inFlight.size === 0) idle.unsafeOpen()
          hasWork.unsafeClose()
          yield* hasWork.await
          batch = take()
        }
        held = batch
        hold(batch)
        if (waiting.length < capacity) hasRoom.unsafeOpen()
        // Another writer may find work the take left (other pages, or more than a batch).
        if (waiting.length > 0 && inFlight.size < writers) hasWork.unsafeOpen()
        yield* writeBatch(batch)
      }).pipe(
        Effect.catchAllCause((cause) =>
          Effect.logError("the click log writer failed; its batch is answered 503", cause).pipe(
            Effect.zipRight(fail(held, mayBeStored("the click log failed unexpectedly"))),
          ),
        ),
        Effect.ensuring(
          Effect.sync(() => {
            release(held)
            held = []
          }),
        ),
      )
      return Effect.forever(turn)
    })
    yield* Effect.forkScoped(
      Effect.all(
        Array.from({ length: writers }, () => writer),
        { concurrency: "unbounded", discard: true },
      ),
    )

    /**
     * The last guard of the deadline: should the writer be stuck by a bug, no caller waits much past DB_TIMEOUT.
     * A click settled here that is still waiting is skipped by the writer; one in flight may yet commit.
     */
    const watchdogEvery = Math.min(1000, Math.max(50, timeoutMs / 4))
    const watchdog = Effect.suspend(() => {
      const late = performance.now() - watchdogEvery
      const overdue = [...[...inFlight].flat(), ...waiting].filter(
        (p) => !p.ticket.settled && p.deadline < late,
      )
      return overdue.length === 0
        ? Effect.void
        : Effect.logError(`${overdue.length} clicks overdue in the click log; answered 503`).pipe(
            Effect.zipRight(fail(overdue, mayBeStored("the click log did not answer in time"))),
          )
    })
    yield* Effect.forkScoped(Effect.repeat(watchdog, Schedule.spaced(Duration.millis(watchdogEvery))))

    // On shutdown, let the writer commit what it holds before the pool closes.
    yield* Effect.addFinalizer(() =>
      idle.await.pipe(
        Effect.timeout(config.shutdownTimeout),
        Effect.ignore,
        Effect.withSpan("ClickLog.drain"),
      ),
    )

    /**
     * Hands a click to the writer at once; its ticket settles when the click's batch commits or fails, by
     * `deadline` (a `performance.now()` time; by default DB_TIMEOUT from now).
     */
    const append = (
      record: ClickRecord,
      chain: ClickChain,
      deadline: number = performance.now() + timeoutMs,
    ): CommitTicket => {
      const ticket = new CommitTicket()
      chain.pending++
      waiting.push({ record, chain, ticket, deadline })
      idle.unsafeClose()
      hasWork.unsafeOpen()
      if (waiting.length >= capacity) hasRoom.unsafeClose()
      return ticket
    }

    return {
      append,
      /** Whether the writer's buffer has room: `append` may be called without waiting. */
      hasRoom: () => waiting.length < capacity,
      /**
       * Waits until no statement of the page that outlived its deadline can still commit: what a page's recovery
       * reads then is what the log holds. At once unless such a statement is being interrupted (after an outage).
       */
      written: (page: string): Effect.Effect<void> => {
        const over = lingeringPages.get(page)
        return over === undefined ? Effect.void : Deferred.await(over)
      },
      /** Waits while the writer's buffer is full (backpressure for page actors). */
      awaitRoom: Effect.suspend(() => (waiting.length < capacity ? Effect.void : hasRoom.await)),
    }
  }),
}) {}
