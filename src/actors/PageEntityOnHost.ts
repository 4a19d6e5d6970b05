import { Entity } from "@effect/cluster"
import { Duration, Effect } from "effect"
import { StorageUnavailable } from "../persistence/StorageErrors.ts"
import { PageActorHost } from "./PageActorHost.ts"
import { pageOf } from "./PageEntityId.ts"
import type { PageBusy } from "./PageErrors.ts"
import { Page } from "./PageProtocol.ts"

/** The protocol's errors have no PageBusy: a full mailbox reaches a remote caller as the 503 it is. */
const unavailable = (busy: PageBusy) => new StorageUnavailable({ message: busy.message })

/**
 * Cluster mode: the page entity the engine starts on the runner owning a page, for messages another runner
 * forwarded here. It keeps no state: each message goes to this runner's PageActorHost, the same actor that serves
 * the page's local requests (and its fast path), so a page has one state per runner whichever way a message came.
 * The engine runs a page's messages concurrently, so a save's commit never holds up the next one; the host keeps
 * their order. An interrupted message (its client hung up, its forwarder gave up) is taken back by the host.
 */
export const PageEntityOnHostLive = Page.toLayer(
  Effect.gen(function* () {
    const host = yield* PageActorHost
    const page = pageOf((yield* Entity.CurrentAddress).entityId)
    return {
      Save: ({ payload }) => Effect.catchTag(host.send(page, "Save", payload), "PageBusy", unavailable),
      SaveMany: ({ payload }) =>
        Effect.catchTag(host.send(page, "SaveMany", payload), "PageBusy", unavailable),
      Predict: ({ payload }) => Effect.catchTag(host.send(page, "Predict", payload), "PageBusy", unavailable),
      Largest: ({ payload }) => Effect.catchTag(host.send(page, "Largest", payload), "PageBusy", unavailable),
      Clusters: ({ payload }) =>
        Effect.catchTag(host.send(page, "Clusters", payload), "PageBusy", unavailable),
    }
  }),
  // A shell per page costs little; it leaves soon after its last forwarded message (the page's state is the host's).
  { concurrency: "unbounded", maxIdleTime: Duration.seconds(30) },
)
