import { SpatialGrid } from "./SpatialGrid.ts"

/** What a page's clustering state is saved as: one column per field, index = cluster_idx. */
export interface PageClustersSnapshot {
  readonly sumX: ReadonlyArray<number>
  readonly sumY: ReadonlyArray<number>
  readonly count: ReadonlyArray<number>
  /** Epoch milliseconds of the first and the last click of each cluster. */
  readonly firstAt: ReadonlyArray<number>
  readonly lastAt: ReadonlyArray<number>
}

/** One cluster as analysts see it. */
export interface ClusterSummary {
  readonly clusterIdx: number
  readonly centroidX: number
  readonly centroidY: number
  readonly count: number
  readonly firstAt: number
  readonly lastAt: number
}

/**
 * The online clustering state of one page (the default rule of the trackers' contract): a click joins the cluster
 * whose running centroid is nearest (ties → lower index) when strictly closer than `radius`, else founds cluster
 * number `size`. Per cluster only the coordinate sums and the count are kept; a spatial grid with cells of
 * `radius` finds candidates in the 3×3 cells around a point, so a lookup does not scan every cluster.
 */
export class PageClusters {
  /** Cluster index answered when a point is in no cluster. */
  static readonly NONE = -1

  private readonly radiusSquared: number
  private readonly grid: SpatialGrid
  private n = 0
  private sumX: Float64Array
  private sumY: Float64Array
  private counts: Float64Array
  private firstAt: Float64Array
  private lastAt: Float64Array

  constructor(
    readonly radius: number,
    capacity = 4,
  ) {
    this.radiusSquared = radius * radius
    this.grid = new SpatialGrid(radius, capacity)
    this.sumX = new Float64Array(capacity)
    this.sumY = new Float64Array(capacity)
    this.counts = new Float64Array(capacity)
    this.firstAt = new Float64Array(capacity)
    this.lastAt = new Float64Array(capacity)
  }

  /** Number of clusters. */
  get size(): number {
    return this.n
  }

  /** Total number of clicks assigned. */
  get clicks(): number {
    let total = 0
    for (let i = 0; i < this.n; i++) total += this.counts[i]!
    return total
  }

  /** The cluster a point would join, or NONE; changes nothing. */
  predict(x: number, y: number): number {
    const grid = this.grid
    const column = grid.column(x)
    const row = grid.column(y)
    let best = PageClusters.NONE
    let bestDistance = this.radiusSquared
    for (let c = column - 1; c <= column + 1; c++) {
      for (let r = row - 1; r <= row + 1; r++) {
        for (let i = grid.first(c, r); i !== SpatialGrid.NONE; i = grid.next(i)) {
          const n = this.counts[i]!
          const dx = this.sumX[i]! / n - x
          const dy = this.sumY[i]! / n - y
          const distance = dx * dx + dy * dy
          if (
            distance < bestDistance ||
            (distance === bestDistance && best !== PageClusters.NONE && i < best)
          ) {
            best = i
            bestDistance = distance
          }
        }
      }
    }
    return best
  }

  /**
   * Adds a click made at `at` (epoch ms) and returns its cluster's index; the index equals the former `size`
   * exactly when the click founded a new cluster.
   */
  assign(x: number, y: number, at: number): number {
    const i = this.predict(x, y)
    if (i === PageClusters.NONE) return this.found(x, y, 1, at, at)
    this.sumX[i]! += x
    this.sumY[i]! += y
    const n = ++this.counts[i]!
    if (at < this.firstAt[i]!) this.firstAt[i] = at
    if (at > this.lastAt[i]!) this.lastAt[i] = at
    this.grid.move(i, this.sumX[i]! / n, this.sumY[i]! / n)
    return i
  }

  /** Coordinates of a cluster's centroid. */
  centroid(i: number): { readonly x: number; readonly y: number } {
    const n = this.counts[i]!
    return { x: this.sumX[i]! / n, y: this.sumY[i]! / n }
  }

  /** Number of clicks in a cluster. */
  count(i: number): number {
    return this.counts[i]!
  }

  /** The cluster with the most clicks (ties → lower index), or NONE on an empty page. */
  largest(): number {
    let best = PageClusters.NONE
    for (let i = 0; i < this.n; i++)
      if (best === PageClusters.NONE || this.counts[i]! > this.counts[best]!) best = i
    return best
  }

  summary(i: number): ClusterSummary {
    const { x, y } = this.centroid(i)
    return {
      clusterIdx: i,
      centroidX: x,
      centroidY: y,
      count: this.counts[i]!,
      firstAt: this.firstAt[i]!,
      lastAt: this.lastAt[i]!,
    }
  }

  toSnapshot(): PageClustersSnapshot {
    const n = this.n
    return {
      sumX: Array.from(this.sumX.subarray(0, n)),
      sumY: Array.from(this.sumY.subarray(0, n)),
      count: Array.from(this.counts.subarray(0, n)),
      firstAt: Array.from(this.firstAt.subarray(0, n)),
      lastAt: Array.from(this.lastAt.subarray(0, n)),
    }
  }

  /** Rebuilds a page from a snapshot; the caller has checked that its columns have equal lengths. */
  static fromSnapshot(radius: number, snapshot: PageClustersSnapshot): PageClusters {
    const page = new PageClusters(radius, Math.max(4, snapshot.count.length))
    for (let i = 0; i < snapshot.count.length; i++) {
      page.found(
        snapshot.sumX[i]!,
        snapshot.sumY[i]!,
        snapshot.count[i]!,
        snapshot.firstAt[i]!,
        snapshot.lastAt[i]!,
      )
    }
    return page
  }

  private found(sumX: number, sumY: number, count: number, firstAt: number, lastAt: number): number {
    const i = this.n++
    if (i >= this.counts.length) this.grow(this.counts.length * 2)
    this.sumX[i] = sumX
    this.sumY[i] = sumY
    this.counts[i] = count
    this.firstAt[i] = firstAt
    this.lastAt[i] = lastAt
    this.grid.insert(i, sumX / count, sumY / count)
    return i
  }

  private grow(capacity: number): void {
    const resize = (from: Float64Array) => {
      const to = new Float64Array(capacity)
      to.set(from)
      return to
    }
    this.sumX = resize(this.sumX)
    this.sumY = resize(this.sumY)
    this.counts = resize(this.counts)
    this.firstAt = resize(this.firstAt)
    this.lastAt = resize(this.lastAt)
  }
}
