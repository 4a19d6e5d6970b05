import { Effect, Stream } from "effect"

/** A change of one cluster, told once the click that caused it is committed. */
export interface ClusterChange {
  readonly type: "cluster.created" | "cluster.updated"
  readonly page: string
  readonly clusterIdx: number
  readonly count: number
  readonly centroidX: number
  readonly centroidY: number
  /** Epoch milliseconds of the cluster's first and last click. */
  readonly firstAt: number
  readonly lastAt: number
}

type Listener = (change: ClusterChange) => void

/** How many changes a watcher may fall behind by before the oldest are dropped (its next read resynchronises). */
const WATCHER_BUFFER = 1024

/**
 * Live cluster changes per page, for whoever watches a page (the live cluster map). A page nobody watches costs
 * one map lookup per save and nothing else; changes are told in commit order and never for a click that was not
 * acknowledged. Watchers that fall behind lose the oldest changes rather than holding memory.
 */
export class PageEvents extends Effect.Service<PageEvents>()("actors/PageEvents", {
  succeed: (() => {
    const listeners = new Map<string, Set<Listener>>()
    return {
      /** Whether anyone watches the page now. */
      watched: (page: string): boolean => listeners.has(page),
      /** Tells the page's watchers of a change. */
      publish: (change: ClusterChange): void => {
        const watchers = listeners.get(change.page)
        if (watchers !== undefined) for (const listener of watchers) listener(change)
      },
      /** The page's changes from now on, until the stream's consumer stops. */
      changes: (page: string): Stream.Stream<ClusterChange> =>
        Stream.asyncPush<ClusterChange>(
          (emit) =>
            Effect.acquireRelease(
              Effect.sync(() => {
                const listener: Listener = (change) => {
                  emit.single(change)
                }
                const watchers = listeners.get(page) ?? new Set<Listener>()
                watchers.add(listener)
                listeners.set(page, watchers)
                return listener
              }),
              (listener) =>
                Effect.sync(() => {
                  const watchers = listeners.get(page)
                  watchers?.delete(listener)
                  if (watchers?.size === 0) listeners.delete(page)
                }),
            ),
          { bufferSize: WATCHER_BUFFER, strategy: "sliding" },
        ),
    }
  })(),
}) {}
