import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber, Layer, Stream, TestClock } from "effect"
import fc from "fast-check"
import { type ClusterChange, PageEvents } from "../../src/actors/PageEvents.ts"
import type { SuccessOf } from "../../src/actors/PageProtocol.ts"
import { PageRouter } from "../../src/actors/PageRouter.ts"
import { PageWatch, ToldClusters } from "../../src/actors/PageWatch.ts"

type Cluster = SuccessOf<"Clusters">[number]

const cluster = (clusterIdx: number, count: number): Cluster => ({
  clusterIdx,
  centroidX: 0.5,
  centroidY: 0.5,
  count,
  firstAt: 1_000,
  lastAt: 1_000 + count,
})

/**
 * A page's committed history as its watcher may see it: clicks (each grows a cluster or founds the next), told by
 * the page's actor only while the page is served in the watcher's process, and reads of the page's clusters (what
 * its owner answers) at any point.
 */
const history = fc.record({
  /** How many clicks the page had when watching began. */
  before: fc.nat({ max: 20 }),
  steps: fc.array(
    fc.oneof(
      fc.record({ kind: fc.constant("click" as const), pick: fc.nat(), local: fc.boolean() }),
      fc.record({ kind: fc.constant("read" as const) }),
    ),
    { maxLength: 120 },
  ),
})

describe("ToldClusters", () => {
  it("tells every change after the first read once, in growing counts, whether pushed by the actor or read from the owner", () => {
    fc.assert(
      fc.property(history, ({ before, steps }) => {
        const counts: Array<number> = []
        const click = (pick: number) => {
          const idx = pick % (counts.length + 1)
          counts[idx] = (counts[idx] ?? 0) + 1
          return { idx, isNew: counts[idx] === 1 }
        }
        for (let i = 0; i < before; i++) click(i * 7)
        const state = () => counts.map((n, i) => cluster(i, n))

        // The watcher starts from the page's clusters read at the start; what it tells is applied to a map's view.
        const told = new ToldClusters(state())
        const view = new Map(state().map((c) => [c.clusterIdx, c.count]))
        const apply = (changes: ReadonlyArray<ClusterChange>) => {
          for (const change of changes) {
            const shown = view.get(change.clusterIdx)
            // Never an older or equal state, and "created" exactly for a cluster the view does not have.
            expect(change.count).toBeGreaterThan(shown ?? 0)
            expect(change.type === "cluster.created").toBe(shown === undefined)
            view.set(change.clusterIdx, change.count)
          }
        }
        for (const step of steps) {
          if (step.kind === "click") {
            const { idx, isNew } = click(step.pick)
            const change: ClusterChange = {
              type: isNew ? "cluster.created" : "cluster.updated",
              page: "p",
              ...cluster(idx, counts[idx]!),
            }
            if (step.local) apply(told.fresh(change))
          } else {
            apply(told.since("p", state()))
            // After a read, the view is the page's state.
            expect(view).toEqual(new Map(state().map((c) => [c.clusterIdx, c.count])))
          }
        }
        apply(told.since("p", state()))
        expect(view).toEqual(new Map(state().map((c) => [c.clusterIdx, c.count])))
      }),
    )
  })

  it("tells nothing for a read that shows no growth, and drops a pushed change a read already told, and tells an unheard-of cluster as created", () => {
    const told = new ToldClusters([cluster(0, 3)])
    expect(told.since("p", [cluster(0, 3)])).toEqual([])
    expect(
      told.since("p", [cluster(0, 5), cluster(1, 1)]).map((c) => [c.type, c.clusterIdx, c.count]),
    ).toEqual([
      ["cluster.updated", 0, 5],
      ["cluster.created", 1, 1],
    ])
    expect(told.fresh({ type: "cluster.updated", page: "p", ...cluster(0, 4) })).toEqual([])
    const later = { type: "cluster.updated", page: "p", ...cluster(0, 6) } as const
    expect(told.fresh(later)).toEqual([later])
    // Founded on the page's previous owner after the last read, and first heard of here: told as created.
    expect(told.fresh({ type: "cluster.updated", page: "p", ...cluster(2, 2) })).toEqual([
      { type: "cluster.created", page: "p", ...cluster(2, 2) },
    ])
  })
})

/** A router whose every page lives on another runner, answering a read of the page's clusters after `readMs`. */
const remoteRouter = (readMs: number, clusters: () => SuccessOf<"Clusters">) => {
  let reads = 0
  const unused = () => Effect.die("not used by PageWatch")
  const layer = Layer.succeed(
    PageRouter,
    PageRouter.make({
      sharded: true,
      isLocal: () => false,
      save: unused,
      saveMany: unused,
      predict: unused,
      largestCluster: unused,
      clusters: () =>
        Effect.sleep(readMs).pipe(
          Effect.zipRight(
            Effect.sync(() => {
              reads++
              return clusters()
            }),
          ),
        ),
    }),
  )
  return { layer, reads: () => reads }
}

/** `watchers` watch page "p" through PageWatch over `router` for `seconds` of the TestClock; the changes each was told. */
const watchFor = (
  router: ReturnType<typeof remoteRouter>,
  seconds: number,
  meanwhile: () => void = () => {},
  watchers = 1,
) =>
  Effect.gen(function* () {
    const watch = yield* PageWatch
    // Opening reads the page's clusters (taking the router's read time on the TestClock).
    const opening = yield* Effect.fork(Effect.all(Array.from({ length: watchers }, () => watch.changes("p"))))
    while (opening.unsafePoll() === null) yield* TestClock.adjust("10 millis")
    const streams = yield* Fiber.join(opening)
    const told = streams.map(() => [] as Array<ClusterChange>)
    yield* Effect.forEach(streams, (stream, i) =>
      Effect.fork(Stream.runForEach(stream, (c) => Effect.sync(() => told[i]!.push(c)))),
    )
    for (let s = 0; s < seconds; s++) {
      meanwhile()
      yield* TestClock.adjust("1 second")
    }
    return told
  }).pipe(Effect.provide(PageWatch.Default), Effect.provide(router.layer), Effect.provide(PageEvents.Default))

/** How many times a page whose read takes `readMs` is read while watched for `seconds`. */
const readsOver = (readMs: number, seconds: number) => {
  const router = remoteRouter(readMs, () => [cluster(0, 1)])
  return Effect.map(watchFor(router, seconds), () => router.reads())
}

describe("PageWatch, a page on another runner", () => {
  it.scoped("reads the owner's clusters every 250 ms and tells what grew", () =>
    Effect.gen(function* () {
      let count = 1
      const router = remoteRouter(0, () => [cluster(0, count)])
      const [told] = yield* watchFor(router, 10, () => {
        count++
      })
      // The first read is the page's state when watching began; each later second's growth is told once.
      expect(told?.map((c) => c.count)).toEqual([2, 3, 4, 5, 6, 7, 8, 9, 10, 11])
      expect(router.reads()).toBeGreaterThanOrEqual(40)
    }),
  )

  it.scoped("reads a page whose read takes long less often: at most a twentieth of the time reading", () =>
    Effect.gen(function* () {
      // Each read takes 100 ms, so the next waits 2 s: 1 read on opening and about one every 2.1 s after.
      expect(yield* readsOver(100, 21)).toSatisfy((reads: number) => reads >= 9 && reads <= 11)
    }),
  )

  it.scoped(
    "reads a page once per round however many watch it here, and tells each watcher every change",
    () =>
      Effect.gen(function* () {
        let count = 1
        const router = remoteRouter(0, () => [cluster(0, count)])
        const told = yield* watchFor(
          router,
          10,
          () => {
            count++
          },
          3,
        )
        for (const changes of told)
          expect(changes.map((c) => c.count)).toEqual([2, 3, 4, 5, 6, 7, 8, 9, 10, 11])
        // Three opening reads, then one read every 250 ms for all three (three series would be about 120).
        expect(router.reads()).toBeGreaterThanOrEqual(40)
        expect(router.reads()).toBeLessThanOrEqual(45)
      }),
  )

  it.scoped(
    "waits at most 5 s between reads, however long the last one took (it may have waited out a move)",
    () =>
      Effect.gen(function* () {
        // 1 s to read, then 5 s apart (not 20 s): on opening at 1 s, then at 7, 13, 19, 25 and 31 s.
        expect(yield* readsOver(1_000, 31)).toSatisfy((reads: number) => reads >= 5 && reads <= 6)
      }),
  )
})
