import { randomUUID } from "node:crypto"
import { isDeepStrictEqual } from "node:util"
import { Sse } from "@effect/experimental"
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from "@effect/vitest"
import { Effect, Fiber, Queue, Stream, TestClock } from "effect"
import type { ClusterChange } from "../../src/actors/PageEvents.ts"
import { clusterEventStream, clusterJson, latestPerCluster } from "../../src/http/ClusterEvents.ts"
import { sleep } from "../support/ClickLoad.ts"
import { InProcessServer, type RunningServer } from "../support/InProcessServer.ts"
import { latestClusters, watchEvents } from "../support/ServerSentEvents.ts"

const change = (clusterIdx: number, count: number, type: ClusterChange["type"] = "cluster.updated") =>
  ({
    type,
    page: "p",
    clusterIdx,
    count,
    centroidX: 0.1 * (clusterIdx + 1),
    centroidY: 0.5,
    firstAt: 1_000,
    lastAt: 1_000 + count,
  }) satisfies ClusterChange

/** The stream of a queue's changes through `f`, collected by a fiber; `seen()` is what came out so far. */
const through = <A>(f: (changes: Stream.Stream<ClusterChange>) => Stream.Stream<A>) =>
  Effect.gen(function* () {
    const input = yield* Queue.unbounded<ClusterChange>()
    const output: Array<A> = []
    const fiber = yield* Effect.fork(
      Stream.runForEach(f(Stream.fromQueue(input)), (a) => Effect.sync(() => output.push(a))),
    )
    // Let the fiber subscribe before the test offers anything.
    yield* TestClock.adjust(0)
    return { input, seen: () => [...output], fiber }
  })

describe("latestPerCluster", () => {
  it.scoped(
    "tells a change at once after a quiet spell, then at most one per cluster per window, its latest",
    () =>
      Effect.gen(function* () {
        const { input, seen } = yield* through(latestPerCluster("250 millis"))
        yield* TestClock.adjust("1 second")
        expect(seen()).toEqual([])
        yield* input.offer(change(0, 1, "cluster.created"))
        yield* TestClock.adjust(0)
        expect(seen()).toEqual([change(0, 1, "cluster.created")])
        // Within the window: cluster 0 three times, cluster 1 created then updated.
        yield* input.offerAll([change(0, 2), change(1, 1, "cluster.created"), change(0, 3), change(1, 2)])
        yield* TestClock.adjust("100 millis")
        expect(seen()).toHaveLength(1)
        yield* TestClock.adjust("150 millis")
        expect(seen().slice(1)).toEqual([change(0, 3), { ...change(1, 2), type: "cluster.created" }])
        // Nothing more arrives: nothing more is told, however long the wait.
        yield* TestClock.adjust("10 seconds")
        expect(seen()).toHaveLength(3)
      }),
  )
})

describe("clusterEventStream", () => {
  it.scoped("frames events as Server-Sent Events, after a retry line, with a comment while idle", () =>
    Effect.gen(function* () {
      const { input, seen, fiber } = yield* through((changes) =>
        clusterEventStream(changes, { throttle: "250 millis", heartbeat: "15 seconds" }),
      )
      expect(seen()).toEqual(["retry: 2000\n\n"])
      yield* TestClock.adjust("1 second")
      yield* input.offer(change(2, 5, "cluster.created"))
      yield* TestClock.adjust(0)
      expect(seen()[1]).toBe(`event: cluster.created\ndata: ${JSON.stringify(clusterJson(change(2, 5)))}\n\n`)
      yield* TestClock.adjust("14 seconds")
      expect(seen().slice(2)).toEqual([": keep-alive\n\n"])
      yield* TestClock.adjust("15 seconds")
      expect(seen().slice(2)).toEqual([": keep-alive\n\n", ": keep-alive\n\n"])
      // What a browser's parser reads of it.
      const parsed: Array<Sse.AnyEvent> = []
      const parser = Sse.makeParser((event) => parsed.push(event))
      for (const chunk of seen()) expect(parser.feed(chunk)).toBeUndefined()
      expect(parsed.map((e) => (e._tag === "Event" ? [e.event, JSON.parse(e.data)] : e._tag))).toEqual([
        "Retry",
        ["cluster.created", clusterJson(change(2, 5))],
      ])
      yield* Fiber.interrupt(fiber)
    }),
  )
})

describe("GET /pages/{page_uuid}/events, served", () => {
  let server: RunningServer
  beforeAll(async () => {
    server = await InProcessServer.run()
  })
  afterAll(async () => {
    await server.stop()
  })

  const save = (page: string, x: number, y: number, requestId?: string) =>
    fetch(`${server.url}/save_click_and_predict_cluster`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ page_uuid: page, coordinates: { x, y }, request_id: requestId }),
    })

  it("streams the page's committed cluster changes as the clusters route lists them, and nothing refused", async () => {
    const page = `events/${randomUUID()}`
    const controller = new AbortController()
    onTestFinished(() => controller.abort())
    const watcher = await watchEvents(server.url, page, controller.signal)
    expect(watcher.headers.get("content-type")).toBe("text/event-stream")
    expect(watcher.headers.get("cache-control")).toContain("no-cache")
    // The stream is open once its first line arrived: the subscription was made before it was written.
    while (watcher.text() === "") await sleep(10)
    expect(watcher.text()).toBe("retry: 2000\n\n")

    const key = randomUUID()
    expect((await save(page, 0.2, 0.2, key)).status).toBe(200)
    // Refused: the same key with another click (409), a click out of range (422), another page's click.
    expect((await save(page, 0.9, 0.9, key)).status).toBe(409)
    expect((await save(page, 1.5, 0.9)).status).toBe(422)
    expect((await save(`${page}/other`, 0.6, 0.6)).status).toBe(200)
    expect((await save(page, 0.21, 0.2)).status).toBe(200)
    expect((await save(page, 0.7, 0.7)).status).toBe(200)

    const listed = (await (
      await fetch(`${server.url}/pages/${encodeURIComponent(page)}/clusters`)
    ).json()) as {
      clusters: ReadonlyArray<{ cluster_idx: number; count: number }>
    }
    const events = await watcher.until((events) => isDeepStrictEqual(latestClusters(events), listed.clusters))
    controller.abort()
    expect(latestClusters(events)).toEqual(listed.clusters)
    // Each cluster was created once, and nothing came of the refused clicks.
    expect(
      events.filter((e) => e.event === "cluster.created").map((e) => JSON.parse(e.data).cluster_idx),
    ).toEqual(listed.clusters.map((c) => c.cluster_idx))
    expect(events.every((e) => e.event === "cluster.created" || e.event === "cluster.updated")).toBe(true)
    expect(events.some((e) => JSON.parse(e.data).centroid.x >= 0.6)).toBe(true)
    expect(events.some((e) => JSON.parse(e.data).centroid.x === 0.9)).toBe(false)
    expect(listed.clusters).toHaveLength(2)
  })

  it("answers 422 for a page id the other page routes refuse", async () => {
    const response = await fetch(`${server.url}/pages/${encodeURIComponent("\u0000")}/events`)
    expect(response.status).toBe(422)
    expect(await response.json()).toMatchObject({ _tag: "InvalidRequest" })
  })
})

describe("an event stream on shutdown", () => {
  it("ends when the server drains, so a shutdown does not wait SHUTDOWN_TIMEOUT for it", async () => {
    const server = await InProcessServer.run({ SHUTDOWN_TIMEOUT: "1 hour" })
    const response = await fetch(`${server.url}/pages/${encodeURIComponent("drained")}/events`)
    const body = response.body
    if (body === null) throw new Error("no body")
    const reader = body.getReader()
    expect(new TextDecoder().decode((await reader.read()).value)).toBe("retry: 2000\n\n")
    // Within the test's timeout (an hour's SHUTDOWN_TIMEOUT would not be), and the stream ends well-formed.
    await server.stop()
    expect(await reader.read()).toEqual({ done: true, value: undefined })
  })
})
