import { Layer } from "effect"
import { IngestLimits } from "./actors/IngestLimits.ts"
import { PageEvents } from "./actors/PageEvents.ts"
import { PageHostingLive } from "./actors/PageHosting.ts"
import { PageWatch } from "./actors/PageWatch.ts"
import { Metrics } from "./Metrics.ts"
import { ActivityRepository } from "./persistence/ActivityRepository.ts"
import { ClickLog } from "./persistence/ClickLog.ts"
import { ClickRepository } from "./persistence/ClickRepository.ts"
import { OutboxSignal } from "./persistence/Outbox.ts"
import { PageHistory } from "./persistence/PageHistory.ts"
import { Readiness } from "./persistence/Readiness.ts"
import { SnapshotStore } from "./persistence/SnapshotStore.ts"
import { SqlLive } from "./persistence/Sql.ts"
import { WebhookInterest } from "./persistence/WebhookInterest.ts"
import { WebhookStore } from "./persistence/WebhookStore.ts"
import { WebhookWorkerLive } from "./webhooks/WebhookWorker.ts"

/** The database (migrated) and everything that reads or writes it. */
export const StorageLive = Layer.mergeAll(
  ClickLog.Default,
  ClickRepository.Default,
  SnapshotStore.Default,
  PageHistory.Default,
  ActivityRepository.Default,
  Readiness.Default,
  WebhookStore.Default,
).pipe(
  // Shared: the click log wakes the webhook worker, the actors and the API read and change the subscriptions.
  Layer.provideMerge(Layer.mergeAll(WebhookInterest.Default, OutboxSignal.Default)),
  Layer.provideMerge(SqlLive),
)

/**
 * The page actor host with its behaviour and the router in front of it (one process, or a runner of a cluster when
 * RUNNER_ADDRESS is set), the ingestion rate limits, and the pages' live cluster changes (for watchers of a page,
 * wherever it is served).
 */
export const ActorsLive = PageWatch.Default.pipe(
  Layer.provideMerge(PageHostingLive),
  Layer.provideMerge(Layer.merge(PageEvents.Default, IngestLimits.Default)),
)

/** Everything but HTTP: actors, the webhook delivery worker, storage and metrics; needs only the configuration. */
export const CoreLive = Layer.merge(ActorsLive, WebhookWorkerLive).pipe(
  Layer.provideMerge(StorageLive),
  Layer.provideMerge(Metrics.Default),
)
