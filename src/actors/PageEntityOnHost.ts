import { Entity } from "@effect/cluster"
import { Duration, Effect } from "effect"
import { StorageUnavailable } from "../persistence/StorageErrors.ts"
import { IngestLimits } from "./IngestLimits.ts"
import { PageActorHost } from "./PageActorHost.ts"
import { ANSWER_BY, pageOf } from "./PageEntityId.ts"
import { Page, type PageTag, type PayloadOf } from "./PageProtocol.ts"

const expired = new StorageUnavailable({
  message: "the page's runner got the request after its sender stopped waiting; it was not served: retry",
})

/** Whether the sender has stopped waiting for the message (its ANSWER_BY has passed). */
const late = (headers: Readonly<Record<string, string | undefined>>) => {
  const by = Number(headers[ANSWER_BY])
  return Number.isFinite(by) && Date.now() > by
}

/**
 * Cluster mode: the page entity the engine starts on the runner owning a page, for messages another runner
 * forwarded here. It keeps no state: each message goes to this runner's PageActorHost, the same actor that serves
 * the page's local requests (and its fast path), so a page has one state per runner whichever way a message came.
 * The engine runs a page's messages concurrently, so a save's commit never holds up the next one; the host keeps
 * their order. An interrupted message (its client hung up, its forwarder gave up) is taken back by the host, and
 * one that arrives after its sender stopped waiting (ANSWER_BY) is refused rather than served late.
 */
export const PageEntityOnHostLive = Page.toLayer(
  Effect.gen(function* () {
    const host = yield* PageActorHost
    const limits = yield* IngestLimits
    const page = pageOf((yield* Entity.CurrentAddress).entityId)
    const serve = <T extends PageTag>(
      tag: T,
      request: {
        readonly payload: PayloadOf<T>
        readonly headers: Readonly<Record<string, string | undefined>>
      },
    ) => (late(request.headers) ? Effect.fail(expired) : host.send(page, tag, request.payload))
    return {
      // The page's allowance is taken here, where the page is served, as PageRouter does for its local pages; a
      // message that came too late takes none.
      Save: (request) =>
        late(request.headers) ? Effect.fail(expired) : limits.pageFirst(page, 1, serve("Save", request)),
      SaveMany: (request) =>
        late(request.headers)
          ? Effect.fail(expired)
          : limits.pageFirst(page, request.payload.clicks.length, serve("SaveMany", request)),
      // An idle page with its state in memory answers a read at once, as the fast lane does for local requests,
      // without a trip through its mailbox.
      Predict: (request) => {
        if (late(request.headers)) return Effect.fail(expired)
        const now = host.predictNow(page, request.payload.x, request.payload.y)
        return now === undefined ? serve("Predict", request) : Effect.succeed(now)
      },
      Largest: (request) => serve("Largest", request),
      Clusters: (request) => serve("Clusters", request),
    }
  }),
  // A shell per page costs little; it leaves soon after its last forwarded message (the page's state is the host's).
  { concurrency: "unbounded", maxIdleTime: Duration.seconds(30) },
)
