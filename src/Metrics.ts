import { Effect } from "effect"
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client"
import { CounterTally } from "./MetricTally.ts"

/** Latency buckets in seconds, from sub-millisecond answers to timeouts. */
const latencyBuckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

/**
 * The service's Prometheus metrics (prom-client formats the exposition). Recording is synchronous and cheap, so
 * hot paths call it directly; gauges that describe the actor host are read from it when scraped.
 */
export class Metrics extends Effect.Service<Metrics>()("Metrics", {
  sync: () => {
    const registry = new Registry()
    collectDefaultMetrics({ register: registry })
    const registers = [registry]
    let actorsSource = { active: () => 0, mailboxDepth: () => 0 }
    const httpRequestsTally = new CounterTally<"route" | "method" | "status">()
    const fastLaneTally = new CounterTally<"served">()
    const predictionsTally = new CounterTally<never>()
    let clusterSource = { shardsOwned: () => 0, entitiesActive: () => 0 }
    return {
      registry,
      httpRequests: new Counter({
        name: "http_requests_total",
        help: "HTTP requests answered, by route, method and status.",
        labelNames: ["route", "method", "status"] as const,
        registers,
        collect() {
          httpRequestsTally.fold(this)
        },
      }),
      /** Where the request path counts `http_requests_total` (folded in when scraped). */
      httpRequestsTally,
      httpDuration: new Histogram({
        name: "http_request_duration_seconds",
        help: "Time from request to response, by route and method.",
        labelNames: ["route", "method"] as const,
        buckets: latencyBuckets,
        registers,
      }),
      fastLaneRequests: new Counter({
        name: "http_fast_lane_requests_total",
        help: "Tracker requests answered by the fast lane in front of the HttpApi (also counted in http_requests_total).",
        labelNames: ["served"] as const,
        registers,
        collect() {
          fastLaneTally.fold(this)
        },
      }),
      /** Where the fast lane counts `http_fast_lane_requests_total` (folded in when scraped). */
      fastLaneTally,
      clicksSaved: new Counter({
        name: "clicks_saved_total",
        help: "Clicks committed to the click log.",
        registers,
      }),
      predictions: new Counter({
        name: "predictions_total",
        help: "Predictions answered.",
        registers,
        collect() {
          predictionsTally.fold(this)
        },
      }),
      /** Where predictions are counted on the hot path (folded into `predictions_total` when scraped). */
      predictionsAnswered: predictionsTally.cell({}),
      clustersCreated: new Counter({
        name: "clusters_created_total",
        help: "Clusters founded by saved clicks.",
        registers,
      }),
      activeActors: new Gauge({
        name: "page_actors_active",
        help: "Page actors in memory.",
        registers,
        collect() {
          this.set(actorsSource.active())
        },
      }),
      pageEvictions: new Counter({
        name: "page_evictions_total",
        help: "Pages evicted from memory (least recently used first) to stay within MAX_ACTIVE_PAGES.",
        registers,
      }),
      mailboxDepth: new Gauge({
        name: "page_mailbox_depth",
        help: "Messages waiting in all page mailboxes.",
        registers,
        collect() {
          this.set(actorsSource.mailboxDepth())
        },
      }),
      batchSize: new Histogram({
        name: "click_log_batch_size",
        help: "Clicks per click-log insert (group commit).",
        buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096],
        registers,
      }),
      commitDuration: new Histogram({
        name: "click_log_commit_duration_seconds",
        help: "Time to insert and commit one click-log batch.",
        buckets: latencyBuckets,
        registers,
      }),
      snapshotsWritten: new Counter({
        name: "snapshots_written_total",
        help: "Page snapshots stored.",
        registers,
      }),
      snapshotDuration: new Histogram({
        name: "snapshot_duration_seconds",
        help: "Time to store one page snapshot.",
        buckets: latencyBuckets,
        registers,
      }),
      recoveryLoadPages: new Histogram({
        name: "page_recovery_load_pages",
        help: "Pages read together by one recovery load (pages asked for while a load is in flight wait for the next).",
        buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 500],
        registers,
      }),
      recoveryDuration: new Histogram({
        name: "page_recovery_duration_seconds",
        help: "Time to rebuild a page's state from its snapshot and clicks.",
        buckets: latencyBuckets,
        registers,
      }),
      databaseErrors: new Counter({
        name: "database_errors_total",
        help: "Failed or timed-out database operations, by operation.",
        labelNames: ["operation"] as const,
        registers,
      }),
      clusterShardsOwned: new Gauge({
        name: "cluster_shards_owned",
        help: "Shards whose lock this runner holds (cluster mode; 0 in one process).",
        registers,
        collect() {
          this.set(clusterSource.shardsOwned())
        },
      }),
      clusterEntitiesActive: new Gauge({
        name: "cluster_entities_active",
        help: "Page entities the cluster engine keeps on this runner for messages forwarded to it (cluster mode).",
        registers,
        collect() {
          this.set(clusterSource.entitiesActive())
        },
      }),
      messagesForwarded: new Counter({
        name: "cluster_messages_forwarded_total",
        help: "Page messages sent to the runner owning the page, by outcome (ok; unavailable: a 503; refused: the page said no, e.g. 409).",
        labelNames: ["outcome"] as const,
        registers,
      }),
      forwardDuration: new Histogram({
        name: "cluster_forward_duration_seconds",
        help: "Time from forwarding a page message to its owner's answer.",
        buckets: latencyBuckets,
        registers,
      }),
      pagesReleased: new Counter({
        name: "cluster_pages_released_total",
        help: "Pages let go from memory because their shard moved to another runner.",
        registers,
      }),
      /** Lets the cluster layer report its shards and entities when scraped. */
      observeCluster: (source: {
        readonly shardsOwned: () => number
        readonly entitiesActive: () => number
      }) => {
        clusterSource = source
      },
      webhookDeliveries: new Counter({
        name: "webhook_deliveries_total",
        help: "Webhook delivery attempts, by outcome: delivered, retry (failed, tried again later), dead (attempts exhausted).",
        labelNames: ["outcome"] as const,
        registers,
      }),
      webhookLatency: new Histogram({
        name: "webhook_delivery_duration_seconds",
        help: "Time of one webhook delivery attempt, from the request to the receiver's answer (or the failure).",
        buckets: latencyBuckets,
        registers,
      }),
      webhookOutboxDepth: new Gauge({
        name: "webhook_outbox_depth",
        help: "Webhook deliveries pending (not yet delivered nor dead), as the delivery worker last read it.",
        registers,
      }),
      webhookOutboxAge: new Gauge({
        name: "webhook_outbox_oldest_age_seconds",
        help: "Age of the oldest pending webhook delivery's event, as the delivery worker last read it (0: none).",
        registers,
      }),
      /** Lets the actor host report its size when scraped. */
      observeActors: (source: { readonly active: () => number; readonly mailboxDepth: () => number }) => {
        actorsSource = source
      },
    }
  },
}) {}

/** Seconds since a `performance.now()` reading. */
export const secondsSince = (start: number) => (performance.now() - start) / 1000
