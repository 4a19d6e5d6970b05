import { NodeRuntime } from "@effect/platform-node"
import { Effect, Layer, Logger } from "effect"
import { AppConfig } from "./Config.ts"
import { HttpLive } from "./http/HttpLive.ts"
import { CoreLive } from "./ServiceLayers.ts"
import { TracingLive } from "./Tracing.ts"

/** One JSON object per log line, at the configured level, for everything the process logs. */
const LoggingLive = Layer.unwrapEffect(
  Effect.map(AppConfig, (config) => Layer.merge(Logger.json, Logger.minimumLogLevel(config.logLevel))),
).pipe(Layer.provide(AppConfig.Default))

const MainLive = HttpLive.pipe(Layer.provide(CoreLive), Layer.provide(AppConfig.Default))

// SIGTERM/SIGINT interrupt the launch: layers close in reverse order and exit 0. The HTTP server drains first
// (stops listening, answers what is in flight, 503 to late arrivals), while the actors, writer and pool still serve.
// Tracing wraps everything, so it is set up before the first span and flushes the last ones after the rest closed.
Layer.launch(MainLive).pipe(
  Effect.provide(TracingLive.pipe(Layer.provide(AppConfig.Default))),
  Effect.provide(LoggingLive),
  NodeRuntime.runMain({ disablePrettyLogger: true }),
)
