/** How a synthetic click file looks. */
export interface ClickGeneratorOptions {
  readonly pages: number
  /** Cluster centres per page. */
  readonly clusters: number
  /** Clicks in the whole file. */
  readonly clicks: number
  /** Standard deviation of the gaussian noise around a centre, in page widths. */
  readonly noise: number
  /** Same seed, same file. */
  readonly seed: number
  /** Timestamp of the first click, epoch milliseconds. */
  readonly start: number
  /** Mean clicks per second across all pages: the gaps between timestamps are exponential with this rate. */
  readonly rate: number
}

/** One row of a click file. */
export interface GeneratedClick {
  readonly page_uuid: string
  readonly x: number
  readonly y: number
  readonly timestamp: string
}

/** A 32-bit integer hash (the finaliser of MurmurHash3): a centre is derived from its numbers, never stored. */
const mix = (n: number): number => {
  let h = n | 0
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b)
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35)
  return (h ^ (h >>> 16)) >>> 0
}

/** A uniform number in [0, 1) determined by the seed and the numbers given. */
const hashUniform = (seed: number, a: number, b: number, c: number): number =>
  mix(mix(mix(mix(seed) ^ a) ^ b) ^ c) / 4_294_967_296

/** The mulberry32 generator: small, fast and good enough for test data; `Math.random` cannot be seeded. */
export const mulberry32 = (seed: number) => {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296
  }
}

export const clamp01 = (v: number) => Math.min(1, Math.max(0, v))

/** Six decimals are finer than any screen's pixel and keep the file small. */
const round6 = (v: number) => Math.round(v * 1e6) / 1e6

/** The page ids of a run look like the trackers' (`<12 hex digits>/<n>`), unique per seed. */
export const pageUuid = (seed: number, page: number) =>
  `${mix(seed).toString(16).padStart(8, "0")}${(mix(seed ^ 0x5bd1e995) & 0xffff).toString(16).padStart(4, "0")}/${page}`

/**
 * The centre of cluster `k` of a page, kept 0.05 away from the edges so that the noise around it mostly stays on
 * the page. Derived from a hash rather than drawn and stored, so a file of millions of pages needs no memory for
 * its centres.
 */
export const clusterCentre = (
  seed: number,
  page: number,
  k: number,
): { readonly x: number; readonly y: number } => ({
  x: 0.05 + 0.9 * hashUniform(seed, page, k, 1),
  y: 0.05 + 0.9 * hashUniform(seed, page, k, 2),
})

/**
 * Clicks of many pages interleaved in time order: each click goes to a page drawn uniformly, lands around one of
 * that page's centres (drawn uniformly) with gaussian noise, clamped to [0, 1]. Lazy: rows are made as they are
 * consumed, so the caller's stream decides how much is in memory.
 */
export function* generateClicks(options: ClickGeneratorOptions): Generator<GeneratedClick> {
  const random = mulberry32(options.seed)
  const gaussian = () => {
    // Box–Muller; 1 - u keeps the logarithm's argument in (0, 1].
    const u = 1 - random()
    const v = random()
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v)
  }
  let at = options.start
  for (let i = 0; i < options.clicks; i++) {
    const page = Math.floor(random() * options.pages)
    const k = Math.floor(random() * options.clusters)
    const centre = clusterCentre(options.seed, page, k)
    yield {
      page_uuid: pageUuid(options.seed, page),
      x: round6(clamp01(centre.x + options.noise * gaussian())),
      y: round6(clamp01(centre.y + options.noise * gaussian())),
      timestamp: new Date(Math.round(at)).toISOString(),
    }
    at += (-Math.log(1 - random()) / options.rate) * 1000
  }
}
