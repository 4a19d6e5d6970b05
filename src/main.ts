import { NodeRuntime } from "@effect/platform-node"
import { Effect, Layer, Logger } from "effect"
import { AppConfig } from "./Config.ts"
import { HttpLive } from "./http/HttpLive.ts"
import { CoreLive } from "./ServiceLayers.ts"

/** One JSON object per log line, at the configured level, for everything the process logs. */
const LoggingLive = Layer.unwrapEffect(
  Effect.map(AppConfig, (config) => Layer.merge(Logger.json, Logger.minimumLogLevel(config.logLevel))),
).pipe(Layer.provide(AppConfig.Default))

const MainLive = HttpLive.pipe(Layer.provide(CoreLive), Layer.provide(AppConfig.Default))

// SIGTERM/SIGINT interrupt the launch: layers close in reverse order (server, actors, writer, pool) and exit 0.
Layer.launch(MainLive).pipe(Effect.provide(LoggingLive), NodeRuntime.runMain({ disablePrettyLogger: true }))
