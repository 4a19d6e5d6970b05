import { SqlClient } from "@effect/sql"
import { describe, expect, layer } from "@effect/vitest"
import { Context, Effect, Either, Fiber, Layer, Option, Stream, TestClock, TestServices } from "effect"
import { PageActorHost } from "../../src/actors/PageActorHost.ts"
import { type ClusterChange, PageEvents } from "../../src/actors/PageEvents.ts"
import { PageOwnership } from "../../src/actors/PageOwnership.ts"
import { PageClusters } from "../../src/domain/PageClusters.ts"
import { Metrics } from "../../src/Metrics.ts"
import { pageServices, sharedDatabase } from "../support/PageServices.ts"
import { storageModes } from "../support/StorageModes.ts"

/** The page actor host over `pageServices(env)`: one life of the service. */
const life = (env: Record<string, string> = {}) =>
  PageActorHost.Default.pipe(Layer.provideMerge(pageServices(env)))

/** Clicks around three centres, deterministic. */
const clicks = Array.from({ length: 12 }, (_, i) => {
  const centre = [
    [0.2, 0.2],
    [0.6, 0.3],
    [0.4, 0.8],
  ][i % 3]!
  return { x: centre[0]! + ((i * 7) % 5) * 0.003, y: centre[1]! + ((i * 3) % 4) * 0.004 }
})

const saveAll = (page: string, points: ReadonlyArray<{ x: number; y: number }>) =>
  Effect.flatMap(PageActorHost, (host) => Effect.forEach(points, (p) => host.save(page, p.x, p.y, null)))

const summaries = (page: string) =>
  Effect.flatMap(PageActorHost, (host) => host.clusters(page)).pipe(
    Effect.map((all) => all.map((c) => ({ idx: c.clusterIdx, x: c.centroidX, y: c.centroidY, n: c.count }))),
  )

/** The page's clusters as the domain computes them from the clicks, in order. */
const expectedSummaries = (points: ReadonlyArray<{ x: number; y: number }>) => {
  const domain = new PageClusters(0.04)
  for (const p of points) domain.assign(p.x, p.y, 0)
  return Array.from({ length: domain.size }, (_, i) => {
    const c = domain.summary(i)
    return { idx: i, x: c.centroidX, y: c.centroidY, n: c.count }
  })
}

/** Real time, whatever clock the test runs on (a TestClock's sleeps only end when the test moves it). */
const pause = (ms: number) => Effect.promise(() => new Promise<void>((resolve) => setTimeout(resolve, ms)))

const waitUntil = <E, R>(check: Effect.Effect<boolean, E, R>) =>
  Effect.gen(function* () {
    for (let i = 0; i < 200; i++) {
      if (yield* check) return
      yield* pause(50)
    }
    return yield* Effect.die(new Error("condition not met within 10 s"))
  })

const snapshotSeq = (page: string) =>
  Effect.flatMap(
    SqlClient.SqlClient,
    (sql) => sql<{ seq: number }>`SELECT seq::int AS seq FROM page_snapshots WHERE page_uuid = ${page}`,
  ).pipe(Effect.map((rows) => rows[0]?.seq ?? 0))

/** Click `k` of page `p`: around one of three centres (so clicks join and found clusters), distinct on its page. */
const floodClick = (p: number, k: number) => {
  const centre = [
    [0.2, 0.2],
    [0.7, 0.3],
    [0.45, 0.8],
  ][(p + k) % 3]!
  return { x: centre[0]! + 0.002 * k + 0.0001 * (p % 7), y: centre[1]! + 0.003 * ((k * 5) % 4) }
}

const evictions = Effect.flatMap(Metrics, (metrics) =>
  Effect.promise(() => metrics.pageEvictions.get()),
).pipe(Effect.map((m) => m.values[0]?.value ?? 0))

/** How many page recoveries (database reads of a page) the host has made. */
const recoveries = Effect.flatMap(Metrics, (metrics) =>
  Effect.promise(() => metrics.recoveryDuration.get()),
).pipe(
  Effect.map(
    (m) => m.values.find((v) => v.metricName === "page_recovery_duration_seconds_count")?.value ?? 0,
  ),
)

describe.each(storageModes())("PageActorHost, $name database", (mode) => {
  layer(sharedDatabase(mode), { timeout: 120_000 })((it) => {
    it.scoped(
      "recovers a page from its latest snapshot plus the clicks after its watermark",
      () =>
        TestServices.provideLive(
          Effect.gen(function* () {
            const page = "recovery/1"
            yield* Effect.scoped(
              Effect.gen(function* () {
                yield* saveAll(page, clicks)
                yield* waitUntil(Effect.map(snapshotSeq(page), (seq) => seq >= 10))
              }).pipe(Effect.provide(life({ SNAPSHOT_EVERY: "5" }))),
            )
            // Put the snapshot back to click 10 and delete the clicks it covers: only the snapshot can supply them
            // now, and only clicks 11 and 12 can supply the rest.
            const atTen = new PageClusters(0.04)
            for (const p of clicks.slice(0, 10)) atTen.assign(p.x, p.y, 0)
            const sql = yield* SqlClient.SqlClient
            yield* sql`UPDATE page_snapshots SET seq = 10, clusters = ${JSON.stringify({ format: 1, radius: 0.04, ...atTen.toSnapshot() })}::jsonb WHERE page_uuid = ${page}`
            yield* sql`DELETE FROM clicks WHERE page_uuid = ${page} AND seq <= 10`
            const recovered = yield* Effect.scoped(summaries(page).pipe(Effect.provide(life())))
            expect(recovered).toEqual(expectedSummaries(clicks))
          }),
        ),
      60_000,
    )

    it.scoped(
      "ignores an unreadable snapshot and rebuilds the page from its clicks",
      () =>
        TestServices.provideLive(
          Effect.gen(function* () {
            const page = "unreadable/1"
            yield* Effect.scoped(saveAll(page, clicks).pipe(Effect.provide(life({ SNAPSHOT_EVERY: "4" }))))
            const sql = yield* SqlClient.SqlClient
            expect(yield* snapshotSeq(page)).toBeGreaterThan(0)
            for (const broken of [
              '{"format": 99}',
              '{"format": 1, "radius": 0.04, "sumX": [1], "sumY": [], "count": [1], "firstAt": [], "lastAt": []}',
              '"garbage"',
            ]) {
              yield* sql`UPDATE page_snapshots SET clusters = ${broken}::jsonb WHERE page_uuid = ${page}`
              const rebuilt = yield* Effect.scoped(summaries(page).pipe(Effect.provide(life())))
              expect(rebuilt).toEqual(expectedSummaries(clicks))
            }
          }),
        ),
      60_000,
    )

    // On a TestClock: the idle timeout and the snapshot interval are passed by moving the clock, not by waiting.
    it.scoped("passivates a page exactly when it has been idle for ACTOR_IDLE_TIMEOUT, snapshot first", () =>
      Effect.gen(function* () {
        const page = "passivation/1"
        yield* Effect.gen(function* () {
          const host = yield* PageActorHost
          yield* saveAll(page, clicks.slice(0, 6))
          expect(host.activeCount()).toBe(1)
          yield* TestClock.adjust("199 seconds")
          expect(host.activeCount()).toBe(1)
          expect(yield* snapshotSeq(page)).toBe(0)
          yield* TestClock.adjust("1 second")
          expect(host.activeCount()).toBe(0)
          yield* waitUntil(Effect.map(snapshotSeq(page), (seq) => seq === 6))
          // The next message brings the page back, from its snapshot.
          expect(yield* summaries(page)).toEqual(expectedSummaries(clicks.slice(0, 6)))
          expect(host.activeCount()).toBe(1)
        }).pipe(
          Effect.provide(
            life({ ACTOR_IDLE_TIMEOUT: "200 seconds", SNAPSHOT_EVERY: "1000", SNAPSHOT_INTERVAL: "1 hour" }),
          ),
        )
      }),
    )

    it.scoped("snapshots an active page once SNAPSHOT_INTERVAL has passed since its last snapshot", () =>
      Effect.gen(function* () {
        const page = "interval/1"
        yield* Effect.gen(function* () {
          const host = yield* PageActorHost
          yield* saveAll(page, clicks.slice(0, 3))
          yield* TestClock.adjust("59 seconds")
          yield* pause(100)
          expect(yield* snapshotSeq(page)).toBe(0)
          yield* TestClock.adjust("1 second")
          yield* waitUntil(Effect.map(snapshotSeq(page), (seq) => seq === 3))
          expect(host.activeCount()).toBe(1)
          // The interval counts from that snapshot: more clicks wait for the next one.
          yield* saveAll(page, clicks.slice(3, 5))
          yield* TestClock.adjust("59 seconds")
          yield* pause(100)
          expect(yield* snapshotSeq(page)).toBe(3)
          yield* TestClock.adjust("1 second")
          yield* waitUntil(Effect.map(snapshotSeq(page), (seq) => seq === 5))
        }).pipe(
          Effect.provide(
            life({ SNAPSHOT_INTERVAL: "60 seconds", SNAPSHOT_EVERY: "1000", ACTOR_IDLE_TIMEOUT: "1 hour" }),
          ),
        )
      }),
    )

    it.scoped(
      "tells a page's watchers of each cluster change once its click is committed, and never of a failed one",
      () =>
        TestServices.provideLive(
          Effect.gen(function* () {
            const page = "watched/1"
            yield* Effect.gen(function* () {
              const sql = yield* SqlClient.SqlClient
              const events = yield* PageEvents
              const host = yield* PageActorHost
              const seen: Array<ClusterChange> = []
              yield* Effect.forkScoped(
                Stream.runForEach(events.changes(page), (c) => Effect.sync(() => seen.push(c))),
              )
              yield* waitUntil(Effect.sync(() => events.watched(page)))
              yield* saveAll(page, clicks.slice(0, 6))
              // Changes of another page are not this page's.
              yield* saveAll("unwatched/1", clicks.slice(0, 2))
              yield* waitUntil(Effect.sync(() => seen.length === 6))
              const domain = new PageClusters(0.04)
              const expected = clicks.slice(0, 6).map((p) => {
                const before = domain.size
                const i = domain.assign(p.x, p.y, 0)
                const { firstAt: _f, lastAt: _l, ...cluster } = domain.summary(i)
                return {
                  type: domain.size > before ? "cluster.created" : "cluster.updated",
                  page,
                  ...cluster,
                }
              })
              expect(seen.map(({ firstAt: _f, lastAt: _l, ...rest }) => rest)).toEqual(expected)
              // A click the log refuses is not told.
              yield* sql`ALTER TABLE clicks RENAME TO clicks_away`
              const refused = yield* Effect.either(host.save(page, 0.9, 0.9, null)).pipe(
                Effect.ensuring(Effect.orDie(sql`ALTER TABLE clicks_away RENAME TO clicks`)),
              )
              expect(Either.isLeft(refused)).toBe(true)
              yield* saveAll(page, [clicks[6]!])
              yield* waitUntil(Effect.sync(() => seen.length === 7))
              expect(seen.map((c) => c.count).slice(-1)).toEqual([3])
              expect(seen.some((c) => c.centroidX === 0.9)).toBe(false)
            }).pipe(Effect.provide(life({ DB_TIMEOUT: "2 seconds" })))
          }),
        ),
    )

    it.scoped(
      "saves many clicks of a page in one message exactly as one save after another, each answered alone",
      () =>
        TestServices.provideLive(
          Effect.gen(function* () {
            const first = yield* Effect.gen(function* () {
              const host = yield* PageActorHost
              const sql = yield* SqlClient.SqlClient
              const key = "0b7e2c7a-4f1d-4c55-8a3e-6d2f9e1a0c11"
              const batch = clicks.map((c, i) => ({ ...c, requestId: i === 2 ? key : null }))
              // Click 7 reuses click 2's key for another point: refused alone; click 9 repeats click 2 exactly.
              batch[7] = { x: 0.99, y: 0.99, requestId: key }
              batch[9] = { ...batch[2]! }
              const answers = yield* host.saveMany("many/1", batch)
              const one = yield* Effect.forEach(batch, (c) =>
                Effect.either(
                  host.save(
                    "many/2",
                    c.x,
                    c.y,
                    c.requestId === null ? null : "9d7e2c7a-4f1d-4c55-8a3e-6d2f9e1a0c11",
                  ),
                ),
              )
              const tags = (all: ReadonlyArray<Either.Either<{ clusterIdx: number }, { _tag: string }>>) =>
                all.map((a) => (Either.isRight(a) ? a.right.clusterIdx : a.left._tag))
              expect(tags(answers)).toEqual(tags(one))
              expect(tags(answers)[7]).toBe("IdempotencyConflict")
              expect(answers[9]).toEqual(answers[2])
              const stored = (page: string) =>
                sql<{
                  x: number
                  y: number
                  cluster_idx: number
                }>`SELECT x, y, cluster_idx FROM clicks WHERE page_uuid = ${page} ORDER BY seq`
              expect(yield* stored("many/1")).toEqual(yield* stored("many/2"))
              expect((yield* stored("many/1")).length).toBe(10)
              return { batch, answers }
            }).pipe(Effect.scoped, Effect.provide(life()))
            // Resent to a new life (nothing in memory): its keys are looked up in one query and answered as before.
            const again = yield* Effect.flatMap(PageActorHost, (host) =>
              host.saveMany("many/1", first.batch),
            ).pipe(Effect.scoped, Effect.provide(life()))
            const keyed = (all: typeof again) => all.filter((_, i) => first.batch[i]?.requestId !== null)
            expect(keyed(again)).toEqual(keyed(first.answers))
            const sql = yield* SqlClient.SqlClient
            const [count] = yield* sql<{
              n: number
            }>`SELECT count(*)::int AS n FROM clicks WHERE page_uuid = 'many/1'`
            // The keyed clicks are not stored again; the unkeyed ones are new clicks.
            expect(count?.n).toBe(10 + first.batch.filter((c) => c.requestId === null).length)
          }),
        ),
    )

    /**
     * A committed click at (0.2, 0.2), then clicks at `held` (all joining one new cluster, index 1) decided while
     * inserts wait on a table lock, and `read` sent after them: requires that the read does not answer while the
     * lock holds, and gives its answer once the clicks are committed.
     */
    const readWhileHeld = <A, E>(
      page: string,
      held: ReadonlyArray<readonly [number, number]>,
      read: (host: PageActorHost) => Effect.Effect<A, E>,
    ) =>
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const host = yield* PageActorHost
        yield* host.save(page, 0.2, 0.2, null)
        const pending = yield* sql.withTransaction(
          Effect.gen(function* () {
            // Inserts into clicks wait for this transaction: the clicks below are decided, not committed.
            yield* sql`LOCK TABLE clicks IN SHARE MODE`
            const saves = yield* Effect.forEach(held, ([x, y]) => Effect.fork(host.save(page, x, y, null)))
            // All decided (in memory, their commit waiting on the lock) before the read is sent: a prediction is
            // served in the page's order, after them, and sees their cluster.
            const [x, y] = held[0] ?? [0.8, 0.8]
            yield* waitUntil(Effect.map(host.predict(page, x, y), (i) => i === 1))
            const answer = yield* Effect.fork(read(host))
            yield* pause(300)
            expect(yield* Fiber.poll(answer)).toEqual(Option.none())
            return { saves, answer }
          }),
        )
        const answer = yield* Fiber.join(pending.answer)
        yield* Fiber.joinAll(pending.saves)
        return answer
      })

    it.scoped("answers the largest cluster only once the clicks it was chosen by are committed", () =>
      TestServices.provideLive(
        Effect.gen(function* () {
          const page = "largest/committed"
          const sql = yield* SqlClient.SqlClient
          yield* Effect.gen(function* () {
            // Cluster 1 is the largest by two clicks the log does not hold yet: no answer until it does.
            const largest = yield* readWhileHeld(
              page,
              [
                [0.8, 0.8],
                [0.801, 0.8],
              ],
              (host) => host.largestCluster(page),
            )
            expect(largest).toEqual(Option.some(1))
            const [row] = yield* sql<{
              n: number
            }>`SELECT count(*)::int AS n FROM clicks WHERE page_uuid = ${page} AND cluster_idx = 1`
            expect(row?.n).toBe(2)
          }).pipe(Effect.scoped, Effect.provide(life()))
        }),
      ),
    )

    it.scoped("answers a page's clusters only once every click counted in them is committed", () =>
      TestServices.provideLive(
        Effect.gen(function* () {
          // Cluster 1 holds a click the log does not hold yet: no answer until it does.
          const clusters = yield* readWhileHeld("clusters/committed", [[0.8, 0.8]], (host) =>
            host.clusters("clusters/committed"),
          ).pipe(Effect.scoped, Effect.provide(life()))
          expect(clusters.map((c) => c.count)).toEqual([1, 1])
        }),
      ),
    )

    it.scoped(
      "answers 503 to every save of a failed batch and restarts the page from the database",
      () =>
        TestServices.provideLive(
          Effect.gen(function* () {
            const page = "failed-batch/1"
            yield* Effect.gen(function* () {
              const sql = yield* SqlClient.SqlClient
              const host = yield* PageActorHost
              yield* saveAll(page, clicks.slice(0, 4))
              yield* sql`ALTER TABLE clicks RENAME TO clicks_away`
              // pipelined: these are assigned one after another without waiting for each other's commit
              const failed = yield* Effect.forEach(
                clicks.slice(4, 8),
                (p) => Effect.either(host.save(page, p.x, p.y, null)),
                { concurrency: "unbounded" },
              ).pipe(Effect.ensuring(Effect.orDie(sql`ALTER TABLE clicks_away RENAME TO clicks`)))
              expect(failed.map((r) => (Either.isLeft(r) ? r.left._tag : "acknowledged"))).toEqual(
                Array(4).fill("StorageUnavailable"),
              )
              // the failed clicks left no trace: the page continues from its four stored clicks
              yield* saveAll(page, clicks.slice(8))
              const stored = yield* sql<{
                x: number
                y: number
              }>`SELECT x, y FROM clicks WHERE page_uuid = ${page} ORDER BY seq`
              expect(stored).toEqual([...clicks.slice(0, 4), ...clicks.slice(8)])
              expect(yield* summaries(page)).toEqual(expectedSummaries(stored))
            }).pipe(Effect.scoped, Effect.provide(life({ DB_TIMEOUT: "2 seconds" })))
          }),
        ),
      60_000,
    )

    it.scoped(
      "keeps at most MAX_ACTIVE_PAGES quiet pages in memory and recovers every evicted page exactly",
      () =>
        TestServices.provideLive(
          Effect.gen(function* () {
            yield* Effect.gen(function* () {
              const host = yield* PageActorHost
              const sql = yield* SqlClient.SqlClient
              const pages = Array.from({ length: 50 }, (_, p) => `flood/${p}`)
              const answers = new Map<string, number>()
              const save = (p: number, k: number) => {
                const c = floodClick(p, k)
                return host
                  .save(pages[p]!, c.x, c.y, null)
                  .pipe(Effect.map((r) => answers.set(`${pages[p]}|${c.x}|${c.y}`, r.clusterIdx)))
              }
              // One at a time, interleaved across pages: every earlier page is quiet, so the bound always holds, and
              // every page is evicted (snapshot first) between two of its clicks.
              for (let k = 0; k < 3; k++)
                for (let p = 0; p < pages.length; p++) {
                  yield* save(p, k)
                  expect(host.activeCount()).toBeLessThanOrEqual(5)
                }
              // Many at once: busy pages cannot be evicted, so the bound may be exceeded until they are quiet.
              yield* Effect.forEach(
                Array.from({ length: 3 * pages.length }, (_, i) => [
                  i % pages.length,
                  3 + Math.floor(i / pages.length),
                ]),
                ([p, k]) => save(p!, k!),
                { concurrency: 8, discard: true },
              )
              yield* waitUntil(Effect.sync(() => host.activeCount() <= 5))
              expect(yield* evictions).toBeGreaterThanOrEqual(pages.length * 3)
              const [snapshotted] = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM page_snapshots`
              expect(snapshotted?.n).toBeGreaterThan(0)

              for (let p = 0; p < pages.length; p++) {
                const page = pages[p]!
                const stored = yield* sql<{
                  x: number
                  y: number
                  cluster_idx: number
                }>`SELECT x, y, cluster_idx FROM clicks WHERE page_uuid = ${page} ORDER BY seq`
                const sent = Array.from({ length: 6 }, (_, k) => floodClick(p, k))
                const key = (c: { x: number; y: number }) => `${c.x}|${c.y}`
                expect(stored.map(key).sort()).toEqual(sent.map(key).sort())
                // A fresh replay of the stored clicks gives every acknowledged answer and the stored cluster indices.
                const domain = new PageClusters(0.04)
                for (const c of stored) {
                  const i = domain.assign(c.x, c.y, 0)
                  expect(answers.get(`${page}|${c.x}|${c.y}`)).toBe(i)
                  expect(c.cluster_idx).toBe(i)
                }
                const summary = yield* host.clusters(page)
                expect(
                  summary.map((c) => ({ idx: c.clusterIdx, x: c.centroidX, y: c.centroidY, n: c.count })),
                ).toEqual(expectedSummaries(stored))
                for (const probe of [floodClick(p, 0), { x: 0.46, y: 0.79 }, { x: 0.95, y: 0.95 }]) {
                  const expected = domain.predict(probe.x, probe.y)
                  expect(yield* host.predict(page, probe.x, probe.y)).toBe(
                    expected === PageClusters.NONE ? null : expected,
                  )
                }
                const largest = yield* host.largestCluster(page)
                expect(Option.getOrNull(largest)).toBe(domain.largest())
                expect(host.activeCount()).toBeLessThanOrEqual(5)
              }
            }).pipe(
              Effect.scoped,
              Effect.provide(life({ MAX_ACTIVE_PAGES: "5", ACTOR_IDLE_TIMEOUT: "10 minutes" })),
            )
          }),
        ),
      120_000,
    )

    it.scoped(
      "leaves no page in memory after predicts, best-cluster and clusters reads of pages without clicks",
      () =>
        TestServices.provideLive(
          Effect.gen(function* () {
            yield* Effect.gen(function* () {
              const host = yield* PageActorHost
              // Five pages with clicks fill the bound: reads of unknown pages must not evict them.
              for (let p = 0; p < 5; p++) yield* host.save(`known/${p}`, 0.5, 0.5, null)
              const predicted = yield* Effect.forEach(
                Array.from({ length: 1000 }, (_, i) => `unknown/${i}`),
                (page) => host.predict(page, 0.5, 0.5),
                { concurrency: 16 },
              )
              expect(predicted.every((r) => r === null)).toBe(true)
              expect(host.activeCount()).toBe(5)
              expect(Option.isNone(yield* host.largestCluster("unknown/a"))).toBe(true)
              expect(yield* host.clusters("unknown/b")).toEqual([])
              // A page whose reads come back to back (the second waits in the mailbox) goes too, once both are answered.
              const both = yield* Effect.all(
                [host.predict("unknown/c", 0.1, 0.1), host.clusters("unknown/c")],
                {
                  concurrency: "unbounded",
                },
              )
              expect(both).toEqual([null, []])
              expect(host.activeCount()).toBe(5)
              expect(yield* evictions).toBe(0)
            }).pipe(Effect.scoped, Effect.provide(life({ MAX_ACTIVE_PAGES: "5" })))
          }),
        ),
      60_000,
    )

    it.scoped(
      "reads a page once found empty again without the database, and a save on it is kept and read back",
      () =>
        TestServices.provideLive(
          Effect.gen(function* () {
            yield* Effect.gen(function* () {
              const host = yield* PageActorHost
              const start = yield* recoveries
              expect(yield* host.predict("empty/1", 0.2, 0.2)).toBeNull()
              expect(yield* recoveries).toBe(start + 1)
              expect(host.predictNow("empty/1", 0.2, 0.2)).toBeNull()
              expect(yield* host.predict("empty/1", 0.2, 0.2)).toBeNull()
              expect(yield* host.clusters("empty/1")).toEqual([])
              expect(yield* recoveries).toBe(start + 1)
              expect(host.activeCount()).toBe(0)
              // A save on the known-empty page starts from the empty state and is kept, then read back after eviction.
              const saved = yield* host.save("empty/1", 0.2, 0.2, null)
              expect([saved.clusterIdx, saved.isNew]).toEqual([0, true])
              expect(host.predictNow("empty/1", 0.21, 0.2)).toBe(0)
              for (let p = 0; p < 8; p++) yield* host.save(`filler/${p}`, 0.5, 0.5, null)
              yield* waitUntil(Effect.sync(() => host.activeCount() <= 5))
              expect(yield* host.predict("empty/1", 0.21, 0.2)).toBe(0)
              expect((yield* host.clusters("empty/1")).map((c) => c.count)).toEqual([1])
            }).pipe(Effect.scoped, Effect.provide(life({ MAX_ACTIVE_PAGES: "5" })))
          }),
        ),
      60_000,
    )

    it.scoped(
      "serves a save racing with reads of a new page in order and keeps the page",
      () =>
        TestServices.provideLive(
          Effect.gen(function* () {
            yield* Effect.gen(function* () {
              const host = yield* PageActorHost
              const [before, saved, after, all] = yield* Effect.all(
                [
                  host.predict("race/1", 0.3, 0.3),
                  host.save("race/1", 0.3, 0.3, null),
                  host.predict("race/1", 0.3, 0.3),
                  host.clusters("race/1"),
                ],
                { concurrency: "unbounded" },
              )
              expect(before).toBeNull()
              expect(saved.clusterIdx).toBe(0)
              expect(after).toBe(0)
              expect(all.map((c) => c.count)).toEqual([1])
              expect(host.activeCount()).toBe(1)
              expect(yield* host.predict("race/1", 0.3, 0.3)).toBe(0)
            }).pipe(Effect.scoped, Effect.provide(life({ MAX_ACTIVE_PAGES: "5" })))
          }),
        ),
      60_000,
    )

    it.scoped(
      "never serves a message whose sender was interrupted while it waited in the mailbox",
      () =>
        TestServices.provideLive(
          Effect.gen(function* () {
            const page = "interrupted/1"
            yield* Effect.gen(function* () {
              const host = yield* PageActorHost
              const metrics = yield* Metrics
              // The first message of a cold page recovers it from the database; the second waits meanwhile.
              const first = yield* Effect.fork(host.save(page, 0.2, 0.2, null))
              const second = yield* Effect.fork(host.save(page, 0.8, 0.8, null))
              // Polled without a pause: the recovery's database round trips are the whole window.
              const depth = Effect.promise(() => metrics.mailboxDepth.get()).pipe(
                Effect.map((m) => m.values[0]?.value ?? 0),
              )
              let waiting = 0
              for (let i = 0; i < 10_000 && waiting === 0; i++) waiting = yield* depth
              expect(waiting).toBe(1)
              yield* Fiber.interrupt(second)
              expect((yield* Fiber.join(first)).clusterIdx).toBe(0)
              // A later message is served after the dropped one: it founds the second cluster, not the third.
              expect(yield* host.save(page, 0.5, 0.5, null)).toEqual({ clusterIdx: 1, isNew: true })
            }).pipe(Effect.scoped, Effect.provide(life()))
            const sql = yield* SqlClient.SqlClient
            const stored = yield* sql<{
              x: number
            }>`SELECT x FROM clicks WHERE page_uuid = ${page} ORDER BY seq`
            expect(stored.map((r) => r.x)).toEqual([0.2, 0.5])
          }),
        ),
      60_000,
    )

    it.scoped(
      "serves another runner's page only by message, and lets such pages go (snapshotted) when told",
      () =>
        TestServices.provideLive(
          Effect.gen(function* () {
            const page = "owned/1"
            const owned = new Set([page])
            const ownership = Layer.succeed(PageOwnership, { isLocal: (p: string) => owned.has(p) })
            yield* Effect.gen(function* () {
              const host = yield* PageActorHost
              yield* saveAll(page, clicks.slice(0, 3))
              expect(host.predictNow(page, clicks[0]!.x, clicks[0]!.y)).toBe(0)
              const decision = host.saveNow(page, clicks[3]!.x, clicks[3]!.y)
              expect(decision?.clusterIdx).toBe(0)
              yield* Effect.promise(
                () => new Promise<void>((resolve) => decision?.committed.onSettled(() => resolve())),
              )
              // Its shard moved away: the synchronous paths decline it, and the host lets it go.
              owned.delete(page)
              expect(host.predictNow(page, clicks[0]!.x, clicks[0]!.y)).toBeUndefined()
              expect(host.saveNow(page, clicks[4]!.x, clicks[4]!.y)).toBeUndefined()
              expect(yield* host.release((p) => owned.has(p))).toBe(1)
              expect(host.activeCount()).toBe(0)
            }).pipe(
              Effect.scoped,
              Effect.provide(
                PageActorHost.Default.pipe(Layer.provide(ownership), Layer.provideMerge(pageServices())),
              ),
            )
            expect(yield* snapshotSeq(page)).toBe(4)
          }),
        ),
      60_000,
    )

    it.scoped(
      "fences a stale owner: its click on a seq another host stored answers 503, and its next one is served on the stored log",
      () =>
        TestServices.provideLive(
          Effect.gen(function* () {
            // Two hosts serving one page at once, as a runner that has not yet noticed its shard moved would.
            const page = "fenced/1"
            const stale = Context.get(yield* Layer.build(life()), PageActorHost)
            const owner = Context.get(yield* Layer.build(life()), PageActorHost)
            const points = clicks.slice(0, 6)
            for (const p of points.slice(0, 3)) yield* stale.save(page, p.x, p.y, null)
            yield* owner.save(page, points[3]!.x, points[3]!.y, null)
            const refused = yield* Effect.either(stale.save(page, points[4]!.x, points[4]!.y, null))
            expect(Either.isLeft(refused) && refused.left._tag).toBe("StorageUnavailable")
            const served = yield* stale.save(page, points[5]!.x, points[5]!.y, null)
            const sql = yield* SqlClient.SqlClient
            const stored = yield* sql<{
              seq: number
              x: number
              y: number
              cluster_idx: number
            }>`SELECT seq::int AS seq, x, y, cluster_idx FROM clicks WHERE page_uuid = ${page} ORDER BY seq`
            // The log holds the owner's click at 4 and the stale host's later click at 5, each as the replay assigns.
            expect(stored.map((r) => [r.seq, r.x])).toEqual([
              [1, points[0]!.x],
              [2, points[1]!.x],
              [3, points[2]!.x],
              [4, points[3]!.x],
              [5, points[5]!.x],
            ])
            const replay = new PageClusters(0.04)
            for (const r of stored) expect(replay.assign(r.x, r.y, 0)).toBe(r.cluster_idx)
            expect(served.clusterIdx).toBe(stored[4]!.cluster_idx)
          }),
        ),
      60_000,
    )
  })
})
