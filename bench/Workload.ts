import { clamp01, generateClicks, mulberry32, pageUuid } from "../src/cli/ClickGenerator.ts"

/** Where the load generator takes each request's body from. */
export interface Bodies {
  readonly next: () => string
}

/**
 * Request bodies the load generator rotates through. Pre-serialised so the generator spends nothing on them, and
 * many (not one point repeated) so the service does the work real traffic makes: pages found and fill clusters.
 */
export class BodyPool implements Bodies {
  private cursor = 0

  constructor(readonly bodies: ReadonlyArray<string>) {}

  /** The next body; the cursor goes on across measurements, so a later run does not replay the same clicks. */
  next(): string {
    const body = this.bodies[this.cursor % this.bodies.length] ?? ""
    this.cursor++
    return body
  }
}

const toBody = (page: string, x: number, y: number) =>
  JSON.stringify({ page_uuid: page, coordinates: { x, y } })

const PAGES = 1000

/** Clicks on 1,000 pages, 4 cluster centres each with gaussian noise (σ = 0.015), interleaved across pages. */
export const pagesPool = (seed: number, size = 50_000) =>
  new BodyPool(
    Array.from(
      generateClicks({ pages: PAGES, clusters: 4, clicks: size, noise: 0.015, seed, start: 0, rate: 100 }),
      (c) => toBody(c.page_uuid, c.x, c.y),
    ),
  )

/**
 * One body per page of `pagesPool(seed)`: a predict for each starts every page's actor before anything is
 * measured, so a measurement does not pay for page recoveries that a timed warm-up on a slow server missed.
 */
export const pagesTouchPool = (seed: number) =>
  new BodyPool(Array.from({ length: PAGES }, (_, page) => toBody(pageUuid(seed, page), 0.5, 0.5)))

/**
 * The history page: a 100 × 100 lattice of centres 0.01 apart (cluster `c` at column `c % 100`, row `c / 100`),
 * 100 clicks each on a circle of radius 0.0015 around its centre, in rounds (click `k` of every cluster, then
 * click `k + 1`...). With CLUSTER_RADIUS = 0.004 every click is within 0.003 of its cluster's running centroid
 * and at least 0.007 from any other, so replaying the rows rebuilds exactly 10,000 clusters.
 */
export const historySide = 100
export const historyClicksPerCluster = 100
export const historyRadius = 0.004

/** The rows as one INSERT … SELECT over generate_series: a million rows in seconds, no client round trips. */
export const historyInsertSql = `
  INSERT INTO clicks (page_uuid, seq, x, y, cluster_idx, request_id, created_at)
  SELECT $1, g + 1,
    0.005 + 0.01 * ((g % 10000) % 100) + 0.0015 * cos(2 * pi() * (g / 10000) / 100.0),
    0.005 + 0.01 * ((g % 10000) / 100) + 0.0015 * sin(2 * pi() * (g / 10000) / 100.0),
    g % 10000, NULL, now() - interval '1 day' + g * interval '1 millisecond'
  FROM generate_series(0::bigint, ${historySide * historySide * historyClicksPerCluster - 1}::bigint) AS g
`

/** Clicks near the lattice's centres (σ = 0.001): on the history page they land in existing clusters. */
export const latticePool = (page: string, seed: number, size = 20_000) => {
  const random = mulberry32(seed)
  const gaussian = () => Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random())
  return new BodyPool(
    Array.from({ length: size }, () => {
      const column = Math.floor(random() * historySide)
      const row = Math.floor(random() * historySide)
      const x = clamp01(0.005 + 0.01 * column + 0.001 * gaussian())
      const y = clamp01(0.005 + 0.01 * row + 0.001 * gaussian())
      return toBody(page, x, y)
    }),
  )
}

/**
 * The memory scenario's rows: `pages` pages with 20 clicks each, one per cluster on a 5 × 4 lattice (0.2 and
 * 0.25 apart, far beyond the default radius 0.04), so each page recovers to exactly 20 clusters.
 */
export const memoryInsertSql = (prefix: string, pages: number) => `
  INSERT INTO clicks (page_uuid, seq, x, y, cluster_idx, request_id, created_at)
  SELECT '${prefix}/' || (g / 20), (g % 20) + 1,
    0.1 + 0.2 * ((g % 20) % 5), 0.125 + 0.25 * ((g % 20) / 5),
    g % 20, NULL, now()
  FROM generate_series(0::bigint, ${pages * 20 - 1}::bigint) AS g
`

/** One predict per memory page, at its first cluster: answering it makes the page's actor load its clusters. */
export const memoryPool = (prefix: string, pages: number) =>
  new BodyPool(Array.from({ length: pages }, (_, p) => toBody(`${prefix}/${p}`, 0.1, 0.125)))

/**
 * The flood scenario's saves, made as they are asked for (900,000 pre-serialised bodies would weigh on the load
 * generator): `pages` pages named `${prefix}/N` with `clicks` clicks each, far apart (0.3, beyond the default radius),
 * so each click founds a cluster. Pages come in blocks of 1,000, each block's pages clicked in rounds, so a page's
 * clicks arrive close together (as a visit's would) while the set of pages in use keeps moving on.
 */
export const floodSaves = (
  prefix: string,
  pages: number,
  clicks: number,
): Bodies & { readonly total: number } => {
  const block = 1000
  const total = pages * clicks
  let i = 0
  return {
    total,
    next: () => {
      const n = i++ % total
      const start = Math.floor(n / (block * clicks)) * block
      const size = Math.min(block, pages - start)
      const within = n - start * clicks
      const page = start + (within % size)
      const k = Math.floor(within / size)
      return toBody(`${prefix}/${page}`, 0.1 + 0.3 * (k % 3), 0.1 + 0.3 * Math.floor(k / 3))
    },
  }
}

/** One predict on each of `pages` pages nobody ever saved to, made as asked for. */
export const unknownPredicts = (prefix: string, pages: number): Bodies => {
  let i = 0
  return { next: () => toBody(`${prefix}/${i++ % pages}`, 0.5, 0.5) }
}
