import { PageClusters, type PageClustersSnapshot } from "./PageClusters.ts"

/** A page's saved state as replay starts from it: the clusters after click `seq`, made with `radius`. */
export interface ReplayStart {
  readonly seq: number
  readonly radius: number
  readonly clusters: PageClustersSnapshot
}

/** A stored click as replay reads it: [x, y, cluster_idx, created_at in epoch ms, seq]. */
export type ReplayedClick = readonly [x: number, y: number, clusterIdx: number, at: number, seq: number]

/**
 * A page's clusters rebuilt from what is stored: its latest snapshot, when it was taken with the configured
 * radius (one of another radius describes other clusters, so the page starts empty), then its later clicks in
 * `seq` order, each assigned by the domain exactly as when it was saved. Page recovery and the analysts' export
 * both rebuild pages this way, so they cannot disagree. Clicks may come in several slices.
 */
export class PageReplay {
  readonly clusters: PageClusters
  /** The last click the snapshot used covers (0 when none was used): replay reads the clicks after it. */
  readonly snapshotSeq: number
  /** The last click included so far. */
  seq: number

  constructor(radius: number, snapshot: ReplayStart | undefined) {
    const usable = snapshot !== undefined && snapshot.radius === radius ? snapshot : undefined
    this.clusters =
      usable === undefined ? new PageClusters(radius) : PageClusters.fromSnapshot(radius, usable.clusters)
    this.snapshotSeq = usable?.seq ?? 0
    this.seq = this.snapshotSeq
  }

  /** Assigns the next clicks, in `seq` order, all after `seq`. */
  apply(clicks: Iterable<ReplayedClick>): void {
    for (const [x, y, , at, seq] of clicks) {
      this.clusters.assign(x, y, at)
      this.seq = seq
    }
  }
}
