import { Deferred, Duration, Effect, FiberSet, Option, Queue } from "effect"
import { AppConfig } from "../Config.ts"
import type { ClusterSummary } from "../domain/PageClusters.ts"
import { Metrics } from "../Metrics.ts"
import { PageBehaviour, type PageState } from "./PageBehaviour.ts"
import { PageBusy, type StorageUnavailable } from "./PageErrors.ts"
import type { PageMessage, SaveError, SaveReply } from "./PageProtocol.ts"

/** A running page actor: its mailbox, and its state once recovered. */
interface Actor {
  readonly page: string
  readonly mailbox: Queue.Queue<PageMessage>
  state: PageState | undefined
  /** Set, together with its removal from the registry, when it passivates: it takes no message after that. */
  stopped: boolean
}

/**
 * Hosts page actors in this process (virtual-actor style): an actor starts on its page's first message, serves its
 * bounded mailbox strictly in order on its own fiber, and stops after `ACTOR_IDLE_TIMEOUT` without messages
 * (snapshot first). Pages never wait for one another.
 */
export class PageActorHost extends Effect.Service<PageActorHost>()("actors/PageActorHost", {
  scoped: Effect.gen(function* () {
    const config = yield* AppConfig
    const behaviour = yield* PageBehaviour
    const fibers = yield* FiberSet.make()
    const actors = new Map<string, Actor>()
    const idleMs = Duration.toMillis(config.actorIdleTimeout)
    const tick = Duration.min(config.actorIdleTimeout, config.snapshotInterval)
    let accepting = true
    const mailboxSize = (a: Actor) => a.mailbox.unsafeSize().pipe(Option.getOrElse(() => 0))
    const metrics = yield* Metrics
    metrics.observeActors({
      active: () => actors.size,
      mailboxDepth: () => {
        let depth = 0
        for (const a of actors.values()) depth += mailboxSize(a)
        return depth
      },
    })

    const failAll = (messages: Iterable<PageMessage>, error: StorageUnavailable) => {
      const failed = Effect.fail(error)
      for (const m of messages) {
        // Each reply has its own success type; all share the error, hence one branch per kind.
        if (m._tag === "Save") Deferred.unsafeDone(m.reply, failed)
        else if (m._tag === "Predict") Deferred.unsafeDone(m.reply, failed)
        else if (m._tag === "Largest") Deferred.unsafeDone(m.reply, failed)
        else Deferred.unsafeDone(m.reply, failed)
      }
    }

    const snapshotInBackground = (state: PageState) => FiberSet.run(fibers, behaviour.takeSnapshot(state))

    /** Stops the actor if it has been idle long enough and nothing of it is in flight; atomic with `send`. */
    const passivateIfIdle = (actor: Actor, lastActive: number) =>
      Effect.sync(() => {
        const state = actor.state
        const idle =
          Date.now() - lastActive >= idleMs &&
          mailboxSize(actor) === 0 &&
          (state === undefined || state.incarnation.pending === 0)
        if (idle) {
          actor.stopped = true
          actors.delete(actor.page)
        }
        return idle
      })

    const run = (actor: Actor) =>
      Effect.gen(function* () {
        let lastActive = Date.now()
        while (true) {
          // Poll first: a busy actor does not pay for a timer on every message.
          let next = yield* Queue.poll(actor.mailbox)
          if (Option.isNone(next)) next = yield* Queue.take(actor.mailbox).pipe(Effect.timeoutOption(tick))
          if (Option.isNone(next)) {
            const state = actor.state
            if (yield* passivateIfIdle(actor, lastActive)) {
              if (state !== undefined && state.seq > state.snapshotSeq) yield* behaviour.takeSnapshot(state)
              return
            }
            if (state !== undefined && behaviour.snapshotDue(state, Date.now()))
              yield* snapshotInBackground(state)
            continue
          }
          const message = next.value
          lastActive = Date.now()
          if (actor.state === undefined || actor.state.incarnation.failed) {
            const recovered = yield* Effect.either(behaviour.recover(actor.page))
            if (recovered._tag === "Right") {
              actor.state = recovered.right
            } else if (actor.state === undefined || message._tag === "Save") {
              // Everything already waiting would fail the same way: answer it now rather than one timeout each.
              failAll([message, ...(yield* Queue.takeAll(actor.mailbox))], recovered.left)
              continue
            }
            // Otherwise the database is away and a read is served from memory; the state may still count the
            // clicks whose saves just failed, until a later message recovers the page from the database.
          }
          const state = actor.state
          yield* behaviour.handle(state, message)
          if (message._tag === "Save" && behaviour.snapshotDue(state, lastActive))
            yield* snapshotInBackground(state)
        }
      })

    /** Delivers a message to the page's actor (starting it if needed) and waits for the reply. */
    const send = <A, E extends SaveError = StorageUnavailable>(
      page: string,
      message: (reply: Deferred.Deferred<A, E>) => PageMessage,
    ) =>
      Effect.gen(function* () {
        if (!accepting) return yield* new PageBusy({ message: "the service is shutting down" })
        const reply = yield* Deferred.make<A, E>()
        const envelope = message(reply)
        while (true) {
          let actor = actors.get(page)
          if (actor === undefined) {
            const mailbox = yield* Queue.bounded<PageMessage>(config.mailboxSize)
            actor = actors.get(page)
            if (actor === undefined) {
              actor = { page, mailbox, state: undefined, stopped: false }
              actors.set(page, actor)
              yield* FiberSet.run(fibers, run(actor))
            }
          }
          if (actor.stopped) continue
          if (!actor.mailbox.unsafeOffer(envelope)) {
            return yield* new PageBusy({ message: `too many requests for page ${page}; retry later` })
          }
          return yield* Deferred.await(reply)
        }
      })

    // Shutdown: refuse new messages, let the actors finish their mailboxes and their clicks commit, snapshot.
    yield* Effect.addFinalizer(() =>
      Effect.gen(function* () {
        accepting = false
        const busy = () =>
          Array.from(actors.values()).some(
            (a) => mailboxSize(a) > 0 || (a.state !== undefined && a.state.incarnation.pending > 0),
          )
        while (busy()) yield* Effect.sleep("2 millis")
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
      save: (page: string, x: number, y: number, requestId: string | null) =>
        send<SaveReply, SaveError>(page, (reply) => ({ _tag: "Save", x, y, requestId, reply })).pipe(
          Effect.flatMap((r) => Effect.as(r.committed, r)),
        ),
      predict: (page: string, x: number, y: number) =>
        send<number | null>(page, (reply) => ({ _tag: "Predict", x, y, reply })),
      largestCluster: (page: string) =>
        send<Option.Option<number>>(page, (reply) => ({ _tag: "Largest", reply })),
      clusters: (page: string) =>
        send<ReadonlyArray<ClusterSummary>>(page, (reply) => ({ _tag: "Clusters", reply })),
      /** Number of page actors in memory. */
      activeCount: () => actors.size,
    } as const
  }),
}) {}
