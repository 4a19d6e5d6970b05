import { Sse } from "@effect/experimental"
import { Duration, Schedule, Sink, Stream } from "effect"
import type { ClusterChange } from "../actors/PageEvents.ts"

/** A cluster as `GET /pages/{id}/clusters` answers it, so the map reads events and the JSON alike. */
export const clusterJson = (change: ClusterChange) => ({
  cluster_idx: change.clusterIdx,
  centroid: { x: change.centroidX, y: change.centroidY },
  count: change.count,
  first_click_at: new Date(change.firstAt).toISOString(),
  last_click_at: new Date(change.lastAt).toISOString(),
})

/**
 * At most one change per cluster per window, carrying the cluster's latest state: a busy page sends a map a few
 * events a second instead of one per click. The first change after a quiet spell goes out at once (the schedule
 * only closes a window that holds something). A cluster created within a window is told as created.
 */
export const latestPerCluster =
  (window: Duration.DurationInput) =>
  <E, R>(changes: Stream.Stream<ClusterChange, E, R>): Stream.Stream<ClusterChange, E, R> =>
    changes.pipe(
      Stream.aggregateWithin(Sink.collectAll<ClusterChange>(), Schedule.spaced(window)),
      Stream.mapConcat((batch) => {
        const latest = new Map<number, ClusterChange>()
        for (const change of batch) {
          const created = latest.get(change.clusterIdx)?.type === "cluster.created"
          latest.set(change.clusterIdx, created ? { ...change, type: "cluster.created" } : change)
        }
        return latest.values()
      }),
    )

/** How long a browser waits before reconnecting a dropped event stream. */
const reconnectAfter = Duration.seconds(2)

/**
 * A page's changes as a Server-Sent Events body: `retry:` first, then one `cluster.created` / `cluster.updated`
 * event per cluster and window (data: the cluster's JSON), and a comment every `heartbeat` so proxies and browsers
 * keep an idle stream open. Ends when the consumer stops (the client went away).
 */
export const clusterEventStream = <E, R>(
  changes: Stream.Stream<ClusterChange, E, R>,
  options: { readonly throttle: Duration.DurationInput; readonly heartbeat: Duration.DurationInput },
): Stream.Stream<string, E, R> =>
  Stream.merge(
    // Left first: the subscription starts before the first bytes (the headers) reach the client.
    changes.pipe(
      latestPerCluster(options.throttle),
      Stream.map((change) =>
        Sse.encoder.write({
          _tag: "Event",
          event: change.type,
          id: undefined,
          data: JSON.stringify(clusterJson(change)),
        }),
      ),
    ),
    Stream.concat(
      Stream.make(Sse.encoder.write(new Sse.Retry({ duration: reconnectAfter, lastEventId: undefined }))),
      Stream.fromSchedule(Schedule.spaced(options.heartbeat)).pipe(Stream.as(": keep-alive\n\n")),
    ),
  )
