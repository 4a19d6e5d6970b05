import { describe, expect, it } from "@effect/vitest"
import fc from "fast-check"
import { PageClusters } from "../../src/domain/PageClusters.ts"
import { BruteForcePage } from "./BruteForce.ts"

const RADIUS = 0.04
const unit = fc.double({ min: 0, max: 1, noNaN: true })
const point = fc.record({ x: unit, y: unit })
/** Evenly spread points (fc.double favours edge values such as 0 and 1, which would pile up). */
const spreadUnit = fc.noBias(fc.integer({ min: 0, max: 1_000_000_000 })).map((v) => v / 1_000_000_000)
const spreadPoint = fc.record({ x: spreadUnit, y: spreadUnit })
/** Points bunched around a few centres, so clusters grow, centroids move and cross cell borders. */
const clusteredPoints = fc.array(point, { minLength: 1, maxLength: 12 }).chain((centres) =>
  fc.array(
    fc
      .tuple(
        fc.nat(centres.length - 1),
        fc.double({ min: -0.06, max: 0.06, noNaN: true }),
        fc.double({ min: -0.06, max: 0.06, noNaN: true }),
      )
      .map(([c, dx, dy]) => ({
        x: Math.min(1, Math.max(0, centres[c]!.x + dx)),
        y: Math.min(1, Math.max(0, centres[c]!.y + dy)),
      })),
    { maxLength: 300 },
  ),
)
/** Points on or next to the grid's cell borders (multiples of the radius). */
const borderPoint = fc
  .record({
    cx: fc.integer({ min: 0, max: 25 }),
    cy: fc.integer({ min: 0, max: 25 }),
    ex: fc.integer({ min: -3, max: 3 }),
    ey: fc.integer({ min: -3, max: 3 }),
  })
  .map(({ cx, cy, ex, ey }) => ({
    x: Math.min(1, Math.max(0, cx * RADIUS + ex * 1e-12)),
    y: Math.min(1, Math.max(0, cy * RADIUS + ey * 1e-12)),
  }))

describe("PageClusters", () => {
  it("founds cluster 0 on an empty page and joins it from closer than the radius", () => {
    const page = new PageClusters(RADIUS)
    expect(page.predict(0.5, 0.5)).toBe(PageClusters.NONE)
    expect(page.assign(0.5, 0.5, 1)).toBe(0)
    expect(page.assign(0.51, 0.5, 2)).toBe(0)
    expect(page.centroid(0)).toEqual({ x: 0.505, y: 0.5 })
    expect(page.count(0)).toBe(2)
    expect(page.size).toBe(1)
  })

  it("needs strictly less than the radius: a point at exactly the radius founds a new cluster", () => {
    const page = new PageClusters(0.5)
    page.assign(0, 0, 0)
    expect(page.predict(0.5, 0)).toBe(PageClusters.NONE)
    expect(page.assign(0.5, 0, 0)).toBe(1)
  })

  it("breaks an exact tie towards the lower index", () => {
    const page = new PageClusters(0.3)
    page.assign(0.75, 0.5, 0)
    expect(page.assign(0.25, 0.5, 0)).toBe(1)
    // 0.5 is exactly 0.25 from both centroids (dyadic numbers, no rounding)
    expect(page.predict(0.5, 0.5)).toBe(0)
    expect(page.predict(0.5 - 2 ** -20, 0.5)).toBe(1)
  })

  it("breaks an exact tie towards the lower index on a page large enough for its grid", () => {
    const radius = 2 ** -4
    const page = new PageClusters(radius)
    // Fillers on a lattice twice the radius apart, far from the tie, so the page uses its grid.
    for (let i = 0; i < PageClusters.GRID_FROM; i++) page.assign((i % 8) / 8, 0.5 + Math.floor(i / 8) / 8, 0)
    expect(page.size).toBe(PageClusters.GRID_FROM)
    for (const [first, second] of [
      [0.3125, 0.25],
      [0.0625, 0.125],
    ] as const) {
      const a = page.assign(first, 0.25, 0)
      const b = page.assign(second, 0.25, 0)
      expect(b).toBe(a + 1)
      // the midpoint is exactly radius / 2 from both centroids (dyadic numbers, no rounding)
      expect(page.predict((first + second) / 2, 0.25)).toBe(a)
    }
  })

  it("answers the same after compacting its storage", () => {
    fc.assert(
      fc.property(clusteredPoints, fc.array(point, { maxLength: 50 }), (points, probes) => {
        const page = new PageClusters(RADIUS)
        for (const p of points) page.assign(p.x, p.y, 0)
        const before = probes.map((p) => page.predict(p.x, p.y))
        const snapshot = page.toSnapshot()
        page.compact()
        expect(page.toSnapshot()).toEqual(snapshot)
        expect(probes.map((p) => page.predict(p.x, p.y))).toEqual(before)
        for (const p of points) page.assign(p.x, p.y, 0)
        expect(page.size).toBe(snapshot.count.length)
      }),
    )
  })

  it("follows the centroid when it moves into another grid cell", () => {
    const page = new PageClusters(RADIUS)
    // Fillers in the top rows, so the page uses its grid.
    for (let i = 0; i < PageClusters.GRID_FROM; i++)
      page.assign((i % 10) / 10, 0.8 + Math.floor(i / 10) / 20, 0)
    const first = page.size
    page.assign(0.039, 0.5, 0)
    page.assign(0.041 + 0.03, 0.5, 0) // centroid moves from cell 0 to cell 1
    expect(page.size).toBe(first + 1)
    expect(page.centroid(first).x).toBeGreaterThan(0.04)
    expect(page.predict(0.09, 0.5)).toBe(first)
    expect(page.predict(0.0, 0.5)).toBe(PageClusters.NONE)
  })

  it("keeps the first and last click time of each cluster", () => {
    const page = new PageClusters(RADIUS)
    page.assign(0.2, 0.2, 100)
    page.assign(0.2, 0.21, 300)
    page.assign(0.2, 0.2, 200)
    expect(page.summary(0)).toMatchObject({ clusterIdx: 0, count: 3, firstAt: 100, lastAt: 300 })
  })

  it("names the largest cluster, ties to the lower index", () => {
    const page = new PageClusters(RADIUS)
    expect(page.largest()).toBe(PageClusters.NONE)
    page.assign(0.1, 0.1, 0)
    page.assign(0.9, 0.9, 0)
    expect(page.largest()).toBe(0)
    page.assign(0.9, 0.9, 0)
    expect(page.largest()).toBe(1)
  })

  it("gives the brute-force scan's answer for every click (random, clustered and cell-border points)", () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.array(point, { maxLength: 300 }),
          clusteredPoints,
          fc.array(borderPoint, { maxLength: 200 }),
        ),
        fc.constantFrom(RADIUS, 0.01, 0.1, 0.3),
        (points, radius) => {
          const page = new PageClusters(radius)
          const reference = new BruteForcePage(radius)
          const got = points.map((p) => [page.predict(p.x, p.y), page.assign(p.x, p.y, 0)])
          const expected = points.map((p) => [reference.predict(p.x, p.y), reference.assign(p.x, p.y)])
          expect(got).toEqual(expected)
        },
      ),
      { numRuns: 300 },
    )
  })

  it("agrees with the brute-force scan with thousands of clusters", () => {
    fc.assert(
      fc.property(
        fc.array(spreadPoint, { minLength: 2000, maxLength: 2500 }),
        fc.array(spreadPoint, { maxLength: 300 }),
        (points, probes) => {
          const page = new PageClusters(0.01)
          const reference = new BruteForcePage(0.01)
          const got = points.map((p) => page.assign(p.x, p.y, 0))
          const expected = points.map((p) => reference.assign(p.x, p.y))
          expect(got).toEqual(expected)
          expect(page.size).toBeGreaterThan(1000)
          expect(probes.map((p) => page.predict(p.x, p.y))).toEqual(
            probes.map((p) => reference.predict(p.x, p.y)),
          )
        },
      ),
      { numRuns: 5 },
    )
  })

  it("is_new exactly when the index equals the cluster count before", () => {
    fc.assert(
      fc.property(clusteredPoints, (points) => {
        const page = new PageClusters(RADIUS)
        for (const p of points) {
          const before = page.size
          const i = page.assign(p.x, p.y, 0)
          expect(i === before).toBe(page.size === before + 1)
          expect(i).toBeLessThanOrEqual(before)
        }
      }),
    )
  })

  it("predict changes nothing", () => {
    fc.assert(
      fc.property(clusteredPoints, fc.array(point, { maxLength: 50 }), (points, probes) => {
        const page = new PageClusters(RADIUS)
        for (const p of points) page.assign(p.x, p.y, 0)
        const before = page.toSnapshot()
        for (const p of probes) page.predict(p.x, p.y)
        expect(page.toSnapshot()).toEqual(before)
      }),
    )
  })

  it("a page's answers do not depend on another page's clicks", () => {
    fc.assert(
      fc.property(
        clusteredPoints,
        clusteredPoints,
        fc.array(fc.boolean(), { maxLength: 600 }),
        (mine, theirs, order) => {
          const alone = new PageClusters(RADIUS)
          const expected = mine.map((p) => alone.assign(p.x, p.y, 0))
          // interleave the same clicks with another page's, in an arbitrary order
          const a = new PageClusters(RADIUS)
          const b = new PageClusters(RADIUS)
          const got: number[] = []
          let i = 0
          let j = 0
          for (const pickMine of order) {
            if (pickMine && i < mine.length) got.push(a.assign(mine[i]!.x, mine[i++]!.y, 0))
            else if (j < theirs.length) b.assign(theirs[j]!.x, theirs[j++]!.y, 0)
          }
          while (i < mine.length) got.push(a.assign(mine[i]!.x, mine[i++]!.y, 0))
          expect(got).toEqual(expected)
        },
      ),
    )
  })

  it("a page rebuilt from its snapshot answers like the original", () => {
    fc.assert(
      fc.property(clusteredPoints, clusteredPoints, (history, next) => {
        const original = new PageClusters(RADIUS)
        history.forEach((p, t) => {
          original.assign(p.x, p.y, t)
        })
        const restored = PageClusters.fromSnapshot(RADIUS, JSON.parse(JSON.stringify(original.toSnapshot())))
        expect(restored.toSnapshot()).toEqual(original.toSnapshot())
        for (const p of next) expect(restored.assign(p.x, p.y, 0)).toBe(original.assign(p.x, p.y, 0))
      }),
    )
  })
})
