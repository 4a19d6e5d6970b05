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

const STRIDE = 5
const SUM_X = 0
const SUM_Y = 1
const COUNT = 2
const FIRST_AT = 3
const LAST_AT = 4

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
 * number `size`. Per cluster only the coordinate sums and the count are kept. A page with few clusters is scanned
 * (as fast as any index at that size, and no memory for one); from `GRID_FROM` clusters on, a spatial grid with
 * cells of `radius` finds candidates in the 3×3 cells around a point, so a lookup does not scan every cluster.
 */
export class PageClusters {
  /** Cluster index answered when a point is in no cluster. */
  static readonly NONE = -1
  /** Number of clusters from which a page keeps a spatial grid instead of scanning. */
  static readonly GRID_FROM = 32

  private readonly radiusSquared: number
  private grid: SpatialGrid | undefined = undefined
  private n = 0
  /**
   * Per cluster, five slots (sum x, sum y, count, first and last click time) in one plain array of doubles: one
   * allocation per page, grown by V8, with less fixed overhead than typed arrays, which matters with hundreds of
   * thousands of pages in memory.
   */
  private data: Array<number> = []

  constructor(readonly radius: number) {
    this.radiusSquared = radius * radius
  }

  /** Number of clusters. */
  get size(): number {
    return this.n
  }

  /** The cluster a point would join, or NONE; changes nothing. */
  predict(x: number, y: number): number {
    const grid = this.grid
    const data = this.data
    if (grid === undefined) {
      // In index order with a strict comparison, so an exact tie keeps the lower index.
      let best = PageClusters.NONE
      let bestDistance = this.radiusSquared
      for (let i = 0, o = 0; i < this.n; i++, o += STRIDE) {
        const n = data[o + COUNT]!
        const dx = data[o + SUM_X]! / n - x
        const dy = data[o + SUM_Y]! / n - y
        const distance = dx * dx + dy * dy
        if (distance < bestDistance) {
          best = i
          bestDistance = distance
        }
      }
      return best
    }
    const column = grid.column(x)
    const row = grid.column(y)
    let best = PageClusters.NONE
    let bestDistance = this.radiusSquared
    for (let c = column - 1; c <= column + 1; c++) {
      for (let r = row - 1; r <= row + 1; r++) {
        for (let i = grid.first(c, r); i !== SpatialGrid.NONE; i = grid.next(i)) {
          const o = i * STRIDE
          const n = data[o + COUNT]!
          const dx = data[o + SUM_X]! / n - x
          const dy = data[o + SUM_Y]! / n - y
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
    const data = this.data
    const o = i * STRIDE
    const sumX = data[o + SUM_X]! + x
    const sumY = data[o + SUM_Y]! + y
    const n = data[o + COUNT]! + 1
    data[o + SUM_X] = sumX
    data[o + SUM_Y] = sumY
    data[o + COUNT] = n
    if (at < data[o + FIRST_AT]!) data[o + FIRST_AT] = at
    if (at > data[o + LAST_AT]!) data[o + LAST_AT] = at
    this.grid?.move(i, sumX / n, sumY / n)
    return i
  }

  /** Coordinates of a cluster's centroid. */
  centroid(i: number): { readonly x: number; readonly y: number } {
    const o = i * STRIDE
    const n = this.data[o + COUNT]!
    return { x: this.data[o + SUM_X]! / n, y: this.data[o + SUM_Y]! / n }
  }

  /** Number of clicks in a cluster. */
  count(i: number): number {
    return this.data[i * STRIDE + COUNT]!
  }

  /** The cluster with the most clicks (ties → lower index), or NONE on an empty page. */
  largest(): number {
    let best = PageClusters.NONE
    for (let i = 0; i < this.n; i++)
      if (best === PageClusters.NONE || this.count(i) > this.count(best)) best = i
    return best
  }

  summary(i: number): ClusterSummary {
    const { x, y } = this.centroid(i)
    const o = i * STRIDE
    return {
      clusterIdx: i,
      centroidX: x,
      centroidY: y,
      count: this.data[o + COUNT]!,
      firstAt: this.data[o + FIRST_AT]!,
      lastAt: this.data[o + LAST_AT]!,
    }
  }

  toSnapshot(): PageClustersSnapshot {
    const column = (slot: number) => Array.from({ length: this.n }, (_, i) => this.data[i * STRIDE + slot]!)
    return {
      sumX: column(SUM_X),
      sumY: column(SUM_Y),
      count: column(COUNT),
      firstAt: column(FIRST_AT),
      lastAt: column(LAST_AT),
    }
  }

  /** Rebuilds a page from a snapshot; the caller has checked that its columns have equal lengths. */
  static fromSnapshot(radius: number, snapshot: PageClustersSnapshot): PageClusters {
    const page = new PageClusters(radius)
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

  /**
   * Drops the spare capacity the state array grew by. Called once a page is loaded: pages loaded by the thousand and
   * then idle would otherwise each hold up to half again their size in unused slots.
   */
  compact(): void {
    this.data = this.data.slice()
  }

  private found(sumX: number, sumY: number, count: number, firstAt: number, lastAt: number): number {
    const i = this.n++
    // slot order: SUM_X, SUM_Y, COUNT, FIRST_AT, LAST_AT
    this.data.push(sumX, sumY, count, firstAt, lastAt)
    if (this.grid !== undefined) this.grid.insert(i, sumX / count, sumY / count)
    else if (this.n === PageClusters.GRID_FROM) {
      const grid = new SpatialGrid(this.radius)
      for (let j = 0; j < this.n; j++) {
        const { x, y } = this.centroid(j)
        grid.insert(j, x, y)
      }
      this.grid = grid
    }
    return i
  }
}
