import { Entity } from "@effect/cluster"
import { Duration, Effect } from "effect"
import { AppConfig } from "../Config.ts"
import { PageBehaviour, type PageState } from "./PageBehaviour.ts"
import { changesState, Page, type PageTag, type PayloadOf } from "./PageProtocol.ts"

/**
 * The page actor hosted by `@effect/cluster` (one entity per page id, wherever its shard lives): the same protocol
 * and the same behaviour as PageActorHost, hosted by the engine instead of this process's own host. The engine
 * runs a page's messages concurrently ("unbounded"), so that a save's commit never holds up the next message;
 * the order rule of PageProtocol.ts is kept by a one-permit semaphore around each message's decision (fibers take
 * it in arrival order), and only the completion (a save's commit) runs outside it.
 *
 * The engine does not carry entity state: a page is recovered from its snapshot and the clicks after it when its
 * entity starts, and snapshotted when the entity stops (idle, or its shard moved away).
 */
export const PageEntityLive = Page.toLayer(
  Effect.gen(function* () {
    const behaviour = yield* PageBehaviour
    const config = yield* AppConfig
    const page: string = (yield* Entity.CurrentAddress).entityId
    const dbTimeoutMs = Duration.toMillis(config.dbTimeout)
    const decide = yield* Effect.makeSemaphore(1)
    let state: PageState | undefined

    const serve = <T extends PageTag>(tag: T, payload: PayloadOf<T>) =>
      decide
        .withPermits(1)(
          Effect.gen(function* () {
            const deadline = performance.now() + dbTimeoutMs
            // A failed state is not the database's: reload it, except that a read may be served from memory
            // while the database is away.
            if (state === undefined || state.chain.failed) {
              const recovered = yield* Effect.either(behaviour.recover(page, deadline))
              if (recovered._tag === "Right") state = recovered.right
              else if (state === undefined || changesState(tag)) return yield* recovered.left
            }
            return yield* behaviour.handlers[tag](state, payload, deadline)
          }),
        )
        .pipe(Effect.flatten)

    yield* Effect.addFinalizer(() =>
      state !== undefined && !state.chain.failed && state.seq > state.snapshotSeq
        ? behaviour.takeSnapshot(state)
        : Effect.void,
    )

    return {
      Save: ({ payload }) => serve("Save", payload),
      SaveMany: ({ payload }) => serve("SaveMany", payload),
      Predict: ({ payload }) => serve("Predict", payload),
      Largest: ({ payload }) => serve("Largest", payload),
      Clusters: ({ payload }) => serve("Clusters", payload),
    }
  }),
  { concurrency: "unbounded" },
)
