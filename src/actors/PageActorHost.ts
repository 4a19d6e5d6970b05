import { Deferred, Duration, Effect, Either, Exit, FiberSet, Option, Schedule } from "effect"
import { AppConfig } from "../Config.ts"
import { Metrics } from "../Metrics.ts"
import { StorageUnavailable } from "../persistence/StorageErrors.ts"
import { BoundedSet } from "./BoundedSet.ts"
import { PageBehaviour, type PageState, type SaveDecision } from "./PageBehaviour.ts"
import { PageBusy } from "./PageErrors.ts"
import { PageOwnership } from "./PageOwnership.ts"
import { changesState, type ErrorOf, type PageTag, type PayloadOf, type SuccessOf } from "./PageProtocol.ts"

/**
 * A message as the host carries it: where its answer goes stays here, out of the message. `serve` runs the
 * message's handler on the page's state and settles the reply; `fail` answers it without serving it.
 */
interface Envelope {
  readonly tag: PageTag
  /** `performance.now()` by which it must be answered: its arrival + DB_TIMEOUT (bounds the page's recovery). */
  readonly deadline: number
  readonly serve: (state: PageState) => Effect.Effect<void>
  readonly fail: (error: StorageUnavailable) => void
  /** Its sender was interrupted (the client hung up) before the actor looked at it: it is dropped, not served. */
  cancelled: boolean
}

/** A page actor: its mailbox, its state once recovered, and whether a fiber is serving it now. */
interface Actor {
  readonly page: string
  readonly mailbox: Array<Envelope>
  state: PageState | undefined
  /** A fiber is draining the mailbox; at most one at a time, so messages are served strictly in order. */
  running: boolean
  lastActive: number
  /** Set, together with its removal from the registry, when it passivates: it takes no message after that. */
  stopped: boolean
  /** Came to life and has not finished its first messages yet: not counted against MAX_ACTIVE_PAGES until then. */
  arriving: boolean
  /** Opened when the actor has served its mailbox; made only when someone waits for that (shutdown). */
  served: Effect.Latch | undefined
  /** Neighbours in the recency list (least recently used first), which picks the actors to evict. */
  older: Actor | undefined
  newer: Actor | undefined
}

/**
 * How many of the least recently used actors a new page looks at for quiet ones to evict. Bounded so that a front
 * of busy actors (a stalled database: every page waiting for a commit) does not make each new page scan them
 * all; the sweeper then evicts down to the bound once they are quiet.
 */
const EVICTION_SCAN = 32

/**
 * Hosts page actors in this process (virtual-actor style). An actor comes to life on its page's first message and
 * serves its bounded mailbox strictly in order, one message at a time: a message that finds the actor idle is
 * served by its sender's fiber, and messages that arrive meanwhile by a fiber of the actor's own, which ends when
 * the mailbox is empty. An idle page costs its state and nothing more (no parked fiber, no timer). At most
 * `MAX_ACTIVE_PAGES` pages stay in memory: a page kept beyond it evicts the least recently used quiet ones (snapshot
 * first); pages being recovered, and busy pages when none is quiet, exceed it until they are quiet, since pending
 * work is never dropped. A page with no clicks leaves memory as soon as its message is answered. One sweeper
 * passivates pages idle for `ACTOR_IDLE_TIMEOUT` (snapshot first) and snapshots idle pages that are due. Pages
 * never wait for one another.
 */
export class PageActorHost extends Effect.Service<PageActorHost>()("actors/PageActorHost", {
  scoped: Effect.gen(function* () {
    const config = yield* AppConfig
    const behaviour = yield* PageBehaviour
    const metrics = yield* Metrics
    const fibers = yield* FiberSet.make()
    /** Read synchronously (the fast path has no fiber); a TestClock in tests, so it drives passivation. */
    const clock = yield* Effect.clock
    const dbTimeoutMs = Duration.toMillis(config.dbTimeout)
    /** In cluster mode, whether this runner holds a page's shard; undefined in one process (every page is ours). */
    const isLocal = Option.getOrUndefined(yield* Effect.serviceOption(PageOwnership))?.isLocal
    const actors = new Map<string, Actor>()
    const idleMs = Duration.toMillis(config.actorIdleTimeout)
    const maxActive = config.maxActivePages
    /**
     * The actors from least to most recently used, linked through the actors themselves: moving one to the end is a
     * few pointer writes on the fast lane's synchronous path (a Map's delete + set to reorder cost ~5 µs, as it
     * rehashes its tombstones).
     */
    let oldest: Actor | undefined
    let newest: Actor | undefined
    /**
     * Actors still serving their first messages (recovering, mostly). The bound counts the others only: a page
     * found to have no clicks leaves without having taken anyone's place.
     */
    let arriving = 0
    let accepting = true

    metrics.observeActors({
      active: () => actors.size,
      mailboxDepth: () => {
        let depth = 0
        for (const a of actors.values()) depth += a.mailbox.length
        return depth
      },
    })

    const failAll = (envelopes: Iterable<Envelope>, error: StorageUnavailable) => {
      for (const e of envelopes) e.fail(error)
    }

    /** Whether nothing of the actor is waiting, running or uncommitted. */
    const quiet = (a: Actor) =>
      !a.running && a.mailbox.length === 0 && (a.state === undefined || a.state.chain.pending === 0)

    const unlink = (actor: Actor) => {
      if (actor.older === undefined) oldest = actor.newer
      else actor.older.newer = actor.newer
      if (actor.newer === undefined) newest = actor.older
      else actor.newer.older = actor.older
      actor.older = undefined
      actor.newer = undefined
    }

    const append = (actor: Actor) => {
      actor.older = newest
      if (newest === undefined) oldest = actor
      else newest.newer = actor
      newest = actor
    }

    /** Marks the actor most recently used. */
    const touch = (actor: Actor) => {
      if (actor === newest) return
      unlink(actor)
      append(actor)
    }

    /** Takes the actor out of memory; it takes no message after that (the next one starts a new actor). */
    const remove = (actor: Actor) => {
      if (actor.stopped) return
      actor.stopped = true
      actors.delete(actor.page)
      unlink(actor)
    }

    /**
     * Passivates a quiet actor: out of memory, with a final snapshot in the background when it has clicks its
     * snapshot lacks (a failed state is not snapshotted: it is not what the database holds).
     */
    const passivate = (actor: Actor) => {
      remove(actor)
      const state = actor.state
      if (state !== undefined && !state.chain.failed && state.seq > state.snapshotSeq)
        behaviour.snapshotInBackground(state)
    }

    /** Evicts quiet actors, least recently used first, until at most `limit` remain or `scan` were looked at. */
    const evictDownTo = (limit: number, scan: number) => {
      let actor = oldest
      for (let looked = 0; actors.size - arriving > limit && actor !== undefined && looked < scan; looked++) {
        const next = actor.newer
        if (quiet(actor)) {
          passivate(actor)
          metrics.pageEvictions.inc()
        }
        actor = next
      }
    }

    /**
     * The actor has served its mailbox. A page with no clicks (an unknown page's read, or a page whose first
     * recovery failed) is not kept: its state is what any later message recovers again, and keeping it would let
     * reads of unknown pages fill memory. Runs in the same step as the emptiness check, so no message can be
     * waiting in it. A page that is kept makes room for itself within MAX_ACTIVE_PAGES only now, not when it
     * arrived, so reads of unknown pages never evict pages that have clicks.
     */
    const idle = (actor: Actor) => {
      actor.running = false
      actor.served?.unsafeOpen()
      if (actor.arriving) {
        actor.arriving = false
        arriving--
      }
      if (actor.mailbox.length === 0 && (actor.state === undefined || actor.state.seq === 0)) {
        if (actor.state !== undefined && !actor.state.chain.failed) knownEmpty.add(actor.page)
        remove(actor)
      } else if (actors.size - arriving > maxActive) evictDownTo(maxActive, EVICTION_SCAN)
    }

    /**
     * Pages a recovery found without clicks, remembered (a bounded set of ids, oldest forgotten first) once their
     * actor has left: a later read is answered without a database round trip, and a later message starts its actor
     * from the empty state. Every click of a page goes through its actor, which takes the id out of the set first,
     * so the set never names a page with clicks.
     */
    let knownEmpty = new BoundedSet<string>(Math.max(1024, maxActive))
    const emptyForReads = behaviour.emptyState("")

    /** Serves one message: recovers the page first when it has no state or its state failed. */
    const serve = (actor: Actor, envelope: Envelope) =>
      Effect.gen(function* () {
        if (envelope.cancelled) return
        actor.lastActive = clock.unsafeCurrentTimeMillis()
        if (actor.state === undefined || actor.state.chain.failed) {
          const recovered = yield* Effect.either(behaviour.recover(actor.page, envelope.deadline))
          if (recovered._tag === "Right") {
            actor.state = recovered.right
          } else if (actor.state === undefined || changesState(envelope.tag)) {
            // Everything already waiting would fail the same way: answer it now rather than one timeout each.
            failAll([envelope, ...actor.mailbox.splice(0)], recovered.left)
            return
          }
          // Otherwise the database is away and a read is served from memory; the state may still count the
          // clicks whose saves just failed, until a later message recovers the page from the database.
        }
        yield* envelope.serve(actor.state)
      })

    /** The actor's fiber: serves the mailbox until it is empty; the emptiness check and the stop are one step. */
    const drain = (actor: Actor) =>
      Effect.gen(function* () {
        while (true) {
          const message = actor.mailbox.shift()
          if (message === undefined) {
            idle(actor)
            return
          }
          yield* serveGuarded(actor, message)
        }
      })

    const serveGuarded = (actor: Actor, envelope: Envelope) =>
      serve(actor, envelope).pipe(
        // A defect in one message must not leave its caller waiting forever nor stop the page: answer it 503,
        // drop the page's state (it recovers from the database on its next message) and go on.
        Effect.catchAllCause((cause) =>
          Effect.logError("a page message failed unexpectedly", cause).pipe(
            Effect.annotateLogs({ page: actor.page }),
            Effect.zipRight(
              Effect.sync(() => {
                if (actor.state !== undefined) actor.state.chain.failed = true
                envelope.fail(
                  new StorageUnavailable({ message: "the page could not serve this request; retry" }),
                )
              }),
            ),
          ),
        ),
      )

    /**
     * Delivers a message to the page's actor (bringing it to life if needed) and waits for its answer: the
     * handler's decision, taken in the page's order, then its completion (a save's commit), awaited here.
     */
    const send = Effect.fnUntraced(function* <T extends PageTag>(
      page: string,
      tag: T,
      payload: PayloadOf<T>,
    ) {
      if (!accepting) return yield* new PageBusy({ message: "the service is shutting down" })
      const reply = yield* Deferred.make<
        Effect.Effect<SuccessOf<T>, ErrorOf<T>>,
        ErrorOf<T> | StorageUnavailable
      >()
      let actor = actors.get(page)
      if (actor === undefined) {
        actor = {
          page,
          mailbox: [],
          state: knownEmpty.delete(page) ? behaviour.emptyState(page) : undefined,
          running: false,
          lastActive: clock.unsafeCurrentTimeMillis(),
          stopped: false,
          arriving: true,
          served: undefined,
          older: undefined,
          newer: undefined,
        }
        actors.set(page, actor)
        arriving++
        append(actor)
      } else {
        touch(actor)
      }
      if (actor.mailbox.length >= config.mailboxSize) {
        return yield* new PageBusy({ message: `too many requests for page ${page}; retry later` })
      }
      const handler = behaviour.handlers[tag]
      const envelope: Envelope = {
        tag,
        deadline: performance.now() + dbTimeoutMs,
        // A typed failure is the message's answer; a defect goes on to the guard (serveGuarded).
        serve: (state) =>
          Effect.map(Effect.either(handler(state, payload, envelope.deadline)), (decided) => {
            Deferred.unsafeDone(
              reply,
              Either.isRight(decided) ? Exit.succeed(decided.right) : Exit.fail(decided.left),
            )
          }),
        fail: (error) => {
          Deferred.unsafeDone(reply, Exit.fail(error))
        },
        cancelled: false,
      }
      if (!actor.running) {
        // The actor is idle (nothing waiting, nothing running): this fiber serves the message itself, which
        // spares a fork per request; whatever arrives meanwhile is drained by a fiber of the actor's own. Not
        // interruptible, so a client hanging up cannot leave the actor marked running with nobody serving it.
        actor.running = true
        const current = actor
        yield* Effect.uninterruptible(
          Effect.gen(function* () {
            yield* serveGuarded(current, envelope)
            // (a fiber forked here would inherit the uninterruptible region; the actor's own fiber must not)
            if (current.mailbox.length > 0) yield* FiberSet.run(fibers, Effect.interruptible(drain(current)))
            else idle(current)
          }),
        )
      } else {
        actor.mailbox.push(envelope)
      }
      // A sender interrupted while its message waits (its client hung up, or a forwarding runner gave up) takes
      // the message back: it is not served later. One already decided stands (its click may be committing).
      return yield* Effect.onInterrupt(Effect.flatten(Deferred.await(reply)), () =>
        Effect.sync(() => {
          envelope.cancelled = true
        }),
      )
    })

    /**
     * The state of a page whose actor can serve a message right now on the caller's stack, without a message or a
     * fiber: alive, healthy and idle (nothing running, nothing waiting). Serving synchronously then is exactly
     * serving the message next, so the actor's order holds. Marks the actor active; undefined → send a message.
     */
    const stateToServeNow = (page: string): PageState | undefined => {
      if (!accepting) return undefined
      const actor = actors.get(page)
      if (actor === undefined || actor.running || actor.mailbox.length > 0) return undefined
      const state = actor.state
      if (state === undefined || state.chain.failed) return undefined
      if (isLocal !== undefined && !isLocal(page)) return undefined
      actor.lastActive = clock.unsafeCurrentTimeMillis()
      touch(actor)
      return state
    }

    /**
     * Passivates pages idle for ACTOR_IDLE_TIMEOUT (a final snapshot when they have unsnapshotted clicks) and
     * snapshots idle pages whose snapshot is due by SNAPSHOT_INTERVAL. Runs between messages, never during one:
     * `send` and this check run without yielding, so no message can slip into a passivated actor.
     */
    const sweep = Effect.sync(() => {
      // Pages new pages could not evict (all busy then) go once they are quiet.
      if (actors.size - arriving > maxActive) evictDownTo(maxActive, Number.POSITIVE_INFINITY)
      const now = clock.unsafeCurrentTimeMillis()
      for (const actor of actors.values()) {
        if (!quiet(actor)) continue
        const state = actor.state
        if (now - actor.lastActive >= idleMs) {
          passivate(actor)
        } else if (state !== undefined && behaviour.snapshotDue(state, now)) {
          behaviour.snapshotInBackground(state)
        }
      }
    })
    const sweepEvery = Duration.max(
      Duration.millis(10),
      Duration.min(Duration.seconds(1), Duration.min(config.actorIdleTimeout, config.snapshotInterval)),
    )
    yield* Effect.forkScoped(Effect.repeat(sweep, Schedule.spaced(sweepEvery)))

    /** Waits until the actor has served its mailbox and its clicks are settled (committed or failed). */
    const settled = (actor: Actor): Effect.Effect<void> =>
      Effect.suspend(() => {
        if (actor.running || actor.mailbox.length > 0) {
          actor.served ??= Effect.unsafeMakeLatch(false)
          return Effect.zipRight(actor.served.await, settled(actor))
        }
        // The log writes a page's clicks in order: once its last one is settled, all are.
        return actor.state === undefined ? Effect.void : Effect.ignore(actor.state.lastCommit.await)
      })

    // Shutdown: refuse new messages, let the actors finish their mailboxes and their clicks commit, snapshot.
    yield* Effect.addFinalizer(() =>
      Effect.gen(function* () {
        accepting = false
        yield* Effect.forEach(actors.values(), settled, { concurrency: "unbounded", discard: true })
        yield* Effect.forEach(
          actors.values(),
          (a) =>
            a.state !== undefined && a.state.seq > a.state.snapshotSeq
              ? behaviour.takeSnapshot(a.state)
              : Effect.void,
          { concurrency: 8, discard: true },
        )
        yield* Effect.logInfo(`page actors stopped (${actors.size} active pages snapshotted)`)
      }).pipe(Effect.timeout(config.shutdownTimeout), Effect.ignore),
    )

    return {
      /** Sends one message of the protocol to a page and waits for its answer. */
      send,
      save: (page: string, x: number, y: number, requestId: string | null) =>
        send(page, "Save", { x, y, requestId }),
      /** Saves several clicks of one page, in order; each click answered on its own. */
      saveMany: (page: string, clicks: PayloadOf<"SaveMany">["clicks"]) => send(page, "SaveMany", { clicks }),
      /**
       * A save served at once when the page's actor is idle (see `stateToServeNow`) and the click log has room:
       * the decision, whose commit the caller waits for; undefined when the save must go through `save`.
       */
      saveNow: (page: string, x: number, y: number): SaveDecision | undefined => {
        if (!behaviour.canSaveNow()) return undefined
        const state = stateToServeNow(page)
        if (state === undefined) return undefined
        let decision: SaveDecision
        try {
          decision = behaviour.save(state, x, y, null)
        } catch (defect) {
          // A bug mid-save may leave the state half changed: the page recovers from the database next time.
          state.chain.failed = true
          throw defect
        }
        behaviour.snapshotIfDue(state)
        return decision
      },
      /** A prediction served at once when the page's actor is idle; undefined when it must go through `predict`. */
      predictNow: (page: string, x: number, y: number): number | null | undefined => {
        if (
          accepting &&
          !actors.has(page) &&
          knownEmpty.has(page) &&
          (isLocal === undefined || isLocal(page))
        )
          return behaviour.predict(emptyForReads, x, y)
        const state = stateToServeNow(page)
        return state === undefined ? undefined : behaviour.predict(state, x, y)
      },
      predict: (page: string, x: number, y: number) => send(page, "Predict", { x, y }),
      largestCluster: (page: string) => send(page, "Largest", undefined),
      clusters: (page: string) => send(page, "Clusters", undefined),
      /** Number of page actors in memory. */
      activeCount: () => actors.size,
      /**
       * Lets go of the pages `keep` rejects (cluster mode: their shard moved to another runner). Each leaves memory
       * at once, so its next message starts a fresh actor that recovers from the database; what it already
       * accepted is still served and committed, then it is snapshotted (its new owner starts from that snapshot
       * when it is stored in time, else replays a little more of the log). The pages known to be empty are
       * forgotten too: another runner may have given them clicks meanwhile.
       */
      release: (keep: (page: string) => boolean) =>
        Effect.gen(function* () {
          knownEmpty = new BoundedSet<string>(Math.max(1024, maxActive))
          const leaving = [...actors.values()].filter((actor) => !keep(actor.page))
          for (const actor of leaving) remove(actor)
          yield* Effect.forEach(
            leaving,
            (actor) =>
              settled(actor).pipe(
                Effect.zipRight(
                  Effect.suspend(() => {
                    const state = actor.state
                    return state !== undefined && !state.chain.failed && state.seq > state.snapshotSeq
                      ? behaviour.takeSnapshot(state)
                      : Effect.void
                  }),
                ),
              ),
            { concurrency: 8, discard: true },
          )
          return leaving.length
        }),
    } as const
  }),
}) {}
