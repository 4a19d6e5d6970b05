import { NodeRuntime } from "@effect/platform-node"
import { Effect, Layer, Logger } from "effect"
import { PageActorHost } from "./actors/PageActorHost.ts"
import { PageBehaviour } from "./actors/PageBehaviour.ts"
import { AppConfig } from "./Config.ts"
import { HttpLive } from "./http/HttpLive.ts"
import { Metrics } from "./Metrics.ts"
import { ActivityRepository } from "./persistence/ActivityRepository.ts"
import { ClickLog } from "./persistence/ClickLog.ts"
import { ClickRepository } from "./persistence/ClickRepository.ts"
import { Readiness } from "./persistence/Readiness.ts"
import { SnapshotStore } from "./persistence/SnapshotStore.ts"
import { SqlLive } from "./persistence/Sql.ts"

const StorageLive = Layer.mergeAll(
  ClickLog.Default,
  ClickRepository.Default,
  SnapshotStore.Default,
  ActivityRepository.Default,
  Readiness.Default,
).pipe(Layer.provideMerge(SqlLive))

const ActorsLive = PageActorHost.Default.pipe(Layer.provide(PageBehaviour.Default))

/** One JSON object per log line, at the configured level, for everything the process logs. */
const LoggingLive = Layer.unwrapEffect(
  Effect.map(AppConfig, (config) => Layer.merge(Logger.json, Logger.minimumLogLevel(config.logLevel))),
).pipe(Layer.provide(AppConfig.Default))

const MainLive = HttpLive.pipe(
  Layer.provide(ActorsLive),
  Layer.provide(StorageLive),
  Layer.provide(Metrics.Default),
  Layer.provide(AppConfig.Default),
)

Layer.launch(MainLive).pipe(Effect.provide(LoggingLive), NodeRuntime.runMain({ disablePrettyLogger: true }))
