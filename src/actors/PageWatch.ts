import { Clock, Duration, Effect, Option, RcMap, Stream } from "effect"
import { type ClusterChange, PageEvents } from "./PageEvents.ts"
import type { SuccessOf } from "./PageProtocol.ts"
import { PageRouter } from "./PageRouter.ts"

type Clusters = SuccessOf<"Clusters">

/**
 * A watcher waits at least this many times as long as its last read of the owner's clusters took before the next:
 * a page of thousands of clusters (a read carries every one) is read less often rather than cost its owner and
 * this runner a core per map. At most MAX_READ_GAP, though: a read that waited out a move (the engine holds a
 * message until the page's shard has an owner again) says nothing of what reads cost, and the watcher notices a
 * move only when it next looks.
 */
const READ_SPACING = 20
const MAX_READ_GAP = Duration.seconds(5)

/** How often a page served elsewhere is read, at most. */
const READ_EVERY = Duration.millis(250)

/**
 * While the page is served here, it is still read every this many polls. Its actor tells every change it makes,
 * but not a click its previous owner committed after this runner's first read (should a runner letting a page go
 * still be committing its last batch when the new owner recovers the page); a read tells those, and mends
 * whatever else a watcher may have missed.
 */
const LOCAL_READ_EVERY = 8

/**
 * What a watcher has been told of a page's clusters: each cluster's click count. A page's committed clusters only
 * grow, so a count says how recent a cluster's state is.
 */
export class ToldClusters {
  private readonly counts = new Map<number, number>()

  /** Takes the page's clusters as known, without telling them. */
  constructor(known: Clusters = []) {
    for (const c of known) this.counts.set(c.clusterIdx, c.count)
  }

  /**
   * A change the page's actor told, if it is newer than what was told of its cluster (noted as told). A cluster
   * never told is told as created: it was founded after the first read, maybe on the page's previous owner.
   */
  fresh(change: ClusterChange): ReadonlyArray<ClusterChange> {
    const told = this.counts.get(change.clusterIdx)
    if (told !== undefined && told >= change.count) return []
    this.counts.set(change.clusterIdx, change.count)
    return [
      told === undefined && change.type !== "cluster.created"
        ? { ...change, type: "cluster.created" }
        : change,
    ]
  }

  /** The changes from what was told to `clusters` (the page's clusters as its owner answers them), noted as told. */
  since(page: string, clusters: Clusters): Array<ClusterChange> {
    const changes: Array<ClusterChange> = []
    for (const c of clusters) {
      const told = this.counts.get(c.clusterIdx)
      if (told !== undefined && told >= c.count) continue
      this.counts.set(c.clusterIdx, c.count)
      changes.push({ type: told === undefined ? "cluster.created" : "cluster.updated", page, ...c })
    }
    return changes
  }
}

/**
 * A page's live cluster changes, wherever its actor runs. Its actor tells the changes to watchers in its own
 * process (PageEvents). In cluster mode the page may live on another runner, or move while watched: then its
 * clusters are read from the page's owner every READ_EVERY (one forwarded `Clusters` message; less often for a
 * page whose read takes long, see READ_SPACING), one series of reads per page however many watch it here, and
 * each watcher tells what grew. Both sources pass through the watcher's ToldClusters, so a change is told once and
 * a cluster's count never goes back.
 */
export class PageWatch extends Effect.Service<PageWatch>()("actors/PageWatch", {
  scoped: Effect.gen(function* () {
    const events = yield* PageEvents
    const router = yield* PageRouter

    const ownerState = (page: string) =>
      router.clusters(page).pipe(
        Effect.tapError((e) =>
          Effect.logDebug(`watching page ${page}: its owner did not answer (${e._tag})`),
        ),
        Effect.option,
      )

    /**
     * The page's clusters, read again and again while anyone here watches it. While the page stays here its actor
     * tells every change, and a read now and then what its previous owner committed late; a page elsewhere, or
     * one that has just arrived, is read every time.
     */
    const reads = (page: string) =>
      Stream.suspend(() => {
        const every = Duration.toMillis(READ_EVERY)
        const maxGap = Math.max(every, Duration.toMillis(MAX_READ_GAP))
        let wasLocal = router.isLocal(page)
        let wait = every
        let skipped = 0
        const read = Effect.gen(function* () {
          yield* Effect.sleep(wait)
          const local = router.isLocal(page)
          const stayed = local && wasLocal
          wasLocal = local
          if (stayed && ++skipped < LOCAL_READ_EVERY) return Option.none<Clusters>()
          skipped = 0
          const start = yield* Clock.currentTimeMillis
          const clusters = yield* ownerState(page)
          const took = (yield* Clock.currentTimeMillis) - start
          wait = Option.isSome(clusters) ? Math.min(maxGap, Math.max(every, READ_SPACING * took)) : every
          return clusters
        })
        return Stream.repeatEffect(read).pipe(Stream.filterMap((clusters) => clusters))
      })

    // Only the latest read matters to a watcher (each is the page's whole state), so a slow one skips the others.
    const shared = yield* RcMap.make({
      lookup: (page: string) => Stream.share(reads(page), { capacity: 1, strategy: "sliding" }),
    })

    /**
     * The page's changes from now on. In cluster mode the effect reads the page's clusters first, so a watcher that
     * reads them once the stream is open misses nothing: every later click is told, and a cluster told as created
     * was founded after that read.
     */
    const changes = Effect.fnUntraced(function* (page: string) {
      if (!router.sharded) return events.changes(page)
      const told = new ToldClusters(Option.getOrElse(yield* ownerState(page), () => []))
      const read = Stream.unwrapScoped(RcMap.get(shared, page))
      // One stage tells both sources, in the order it sees them, so nothing told can be overtaken by an older state.
      return Stream.merge(events.changes(page), read).pipe(
        Stream.mapConcat(
          (item): ReadonlyArray<ClusterChange> =>
            "type" in item ? told.fresh(item) : told.since(page, item),
        ),
      )
    })

    return { changes }
  }),
}) {}
