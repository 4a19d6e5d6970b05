import { randomUUID } from "node:crypto"
import { type ClusterError, Sharding } from "@effect/cluster"
import { Cause, Data, Duration, Effect, Exit, Option } from "effect"
import { AppConfig } from "../Config.ts"
import { Metrics, secondsSince } from "../Metrics.ts"
import { StorageUnavailable } from "../persistence/StorageErrors.ts"
import { IngestLimits } from "./IngestLimits.ts"
import { PageActorHost } from "./PageActorHost.ts"
import { ANSWER_BY, entityIdOf } from "./PageEntityId.ts"
import { PageOwnership } from "./PageOwnership.ts"
import { Page, type PayloadOf } from "./PageProtocol.ts"

type Clicks = PayloadOf<"SaveMany">["clicks"]

/** What the engine itself may fail a message with (beside the message's own errors). */
type EngineRefusal =
  | ClusterError.MailboxFull
  | ClusterError.AlreadyProcessingMessage
  | ClusterError.PersistenceError

const isEngineRefusal = (e: { readonly _tag: string }): e is EngineRefusal =>
  e._tag === "MailboxFull" || e._tag === "AlreadyProcessingMessage" || e._tag === "PersistenceError"

/** The owner was interrupted while serving the message: its shard moved away (a runner joined or left). */
class PageMoved extends Data.TaggedError("PageMoved") {}

/**
 * Where a page's messages go: this process's PageActorHost for a page it serves, else the runner owning the page
 * (cluster mode), through the engine's Entity client. In one process it is the host itself, at no cost. The HTTP
 * handlers send every page message through here; the fast lane asks the host directly, which declines pages of
 * other runners (PageOwnership), and falls back to these handlers.
 */
export class PageRouter extends Effect.Service<PageRouter>()("actors/PageRouter", {
  effect: Effect.gen(function* () {
    const host = yield* PageActorHost
    const limits = yield* IngestLimits
    const ownership = yield* Effect.serviceOption(PageOwnership)
    const sharding = yield* Effect.serviceOption(Sharding.Sharding)
    const local = {
      /** Whether pages may live on other runners (cluster mode). */
      sharded: false,
      /** Whether the page is served here. */
      isLocal: (_page: string): boolean => true,
      save: (page: string, x: number, y: number, requestId: string | null) =>
        limits.pageFirst(page, 1, host.save(page, x, y, requestId)),
      saveMany: (page: string, clicks: Clicks) =>
        limits.pageFirst(page, clicks.length, host.saveMany(page, clicks)),
      predict: host.predict,
      largestCluster: host.largestCluster,
      clusters: host.clusters,
    }
    if (Option.isNone(ownership) || Option.isNone(sharding)) return local

    const config = yield* AppConfig
    const metrics = yield* Metrics
    const isLocal = ownership.value.isLocal
    const retryEvery = Option.match(config.cluster, {
      onNone: () => Duration.millis(50),
      onSome: (c) => c.sendRetry,
    })
    const client = yield* Effect.provideService(Page.client, Sharding.Sharding, sharding.value)
    const outcome = {
      ok: metrics.messagesForwarded.labels("ok"),
      refused: metrics.messagesForwarded.labels("refused"),
      unavailable: metrics.messagesForwarded.labels("unavailable"),
    }

    /**
     * A message to the owning runner, bounded by DB_TIMEOUT: the engine retries while the page's shard has no
     * owner (a runner died, its locks have not expired yet), so a request answers 503 rather than wait for ever, and
     * the interruption takes the message back if the owner has not looked at it yet. What the engine itself fails
     * with (a full mailbox, a lost runner) is a 503 too: the message may or may not have been served.
     */
    const forward = <A, E extends { readonly _tag: string }>(call: Effect.Effect<A, E | EngineRefusal>) => {
      const start = performance.now()
      // The owner let the page go mid-message (the engine interrupts a moving shard's entities): send it again, to
      // the page's next owner. A click keeps its request id (`keyed`), so a click the old owner stored is answered
      // from the log, not stored twice. Our own interruption (client gone, DB_TIMEOUT) never gets here. A plain
      // recursion rather than Effect.retry: a retry schedule costs its set-up on every message, and moves are rare.
      const attempt: Effect.Effect<A, E | EngineRefusal | PageMoved> = Effect.catchAllCause(
        call,
        (cause): Effect.Effect<never, E | EngineRefusal | PageMoved> =>
          Cause.isInterruptedOnly(cause) ? Effect.fail(new PageMoved()) : Effect.failCause(cause),
      )
      const untilServed: Effect.Effect<A, E | EngineRefusal> = Effect.catchIf(
        attempt,
        (e): e is PageMoved => e instanceof PageMoved,
        () =>
          Effect.delay(
            Effect.suspend(() => untilServed),
            retryEvery,
          ),
      )
      return untilServed.pipe(
        Effect.timeoutFail({
          duration: config.dbTimeout,
          onTimeout: () =>
            new StorageUnavailable({
              message:
                "the page's runner did not answer in time (DB_TIMEOUT); a click may have been stored: retry with the same request_id or Idempotency-Key to be sure it is stored once",
            }),
        }),
        Effect.catchIf(isEngineRefusal, (e) =>
          Effect.fail(new StorageUnavailable({ message: `the page's runner refused it (${e._tag}); retry` })),
        ),
        Effect.catchAllDefect((defect) =>
          Effect.logWarning("a forwarded page message failed", Cause.die(defect)).pipe(
            Effect.zipRight(
              Effect.fail(
                new StorageUnavailable({
                  message:
                    "the page's runner failed; a click may have been stored: retry with the same request_id or Idempotency-Key",
                }),
              ),
            ),
          ),
        ),
        Effect.onExit((exit) =>
          Effect.sync(() => {
            metrics.forwardDuration.observe(secondsSince(start))
            if (Exit.isSuccess(exit)) outcome.ok.inc()
            else if (Cause.isInterruptedOnly(exit.cause)) return
            else {
              // A 503 (the runner, the engine or the database unavailable) or the page's own refusal (a 409).
              const failure = Cause.failureOption(exit.cause)
              if (
                Option.isSome(failure) &&
                (failure.value._tag === "StorageUnavailable" || failure.value._tag === "PageBusy")
              )
                outcome.unavailable.inc()
              else outcome.refused.inc()
            }
          }),
        ),
      )
    }

    /**
     * A forwarded click always carries a request id (the client's, else a new one): should its runner die after
     * storing it and before answering, the engine sends it again to the page's next owner, which then finds it
     * stored and answers the first answer instead of storing it twice.
     */
    const keyed = (requestId: string | null) => requestId ?? randomUUID()

    /** When the owner must have started the message by (PageEntityOnHost refuses it after): when we give up on it. */
    const dbTimeoutMs = Duration.toMillis(config.dbTimeout)
    const by = () => ({ headers: { [ANSWER_BY]: String(Date.now() + dbTimeoutMs) } })

    /**
     * The page's host here, or its owner: decided (and a forwarded message made, with its deadline) each time the
     * effect runs, so an effect kept and run again (a watcher's poll) follows the page and never sends a stale
     * deadline.
     */
    const route = <A, E, R>(
      page: string,
      here: () => Effect.Effect<A, E, R>,
      owner: () => Effect.Effect<A, E, R>,
    ) => Effect.suspend(() => (isLocal(page) ? here() : owner()))

    return {
      sharded: true,
      isLocal,
      save: (page: string, x: number, y: number, requestId: string | null) =>
        route(
          page,
          () => local.save(page, x, y, requestId),
          () => forward(client(entityIdOf(page)).Save({ x, y, requestId: keyed(requestId) }, by())),
        ),
      saveMany: (page: string, clicks: Clicks) =>
        route(
          page,
          () => local.saveMany(page, clicks),
          () =>
            forward(
              client(entityIdOf(page)).SaveMany(
                { clicks: clicks.map((c) => ({ ...c, requestId: keyed(c.requestId) })) },
                by(),
              ),
            ),
        ),
      predict: (page: string, x: number, y: number) =>
        route(
          page,
          () => host.predict(page, x, y),
          () => forward(client(entityIdOf(page)).Predict({ x, y }, by())),
        ),
      largestCluster: (page: string) =>
        route(
          page,
          () => host.largestCluster(page),
          () => forward(client(entityIdOf(page)).Largest(undefined, by())),
        ),
      clusters: (page: string) =>
        route(
          page,
          () => host.clusters(page),
          () => forward(client(entityIdOf(page)).Clusters(undefined, by())),
        ),
    }
  }),
}) {}
