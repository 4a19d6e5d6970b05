import { createServer } from "node:http"
import { HttpApiBuilder, HttpApiSwagger, HttpMiddleware, HttpServer } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { Duration, Effect, Layer } from "effect"
import { AppConfig } from "../Config.ts"
import { Api } from "./Api.ts"
import { ErrorResponsesLive } from "./ErrorResponses.ts"
import { ExportHttpLive } from "./ExportHttp.ts"
import { OpsHttpLive } from "./OpsHttp.ts"
import { PagesHttpLive } from "./PagesHttp.ts"
import { observeRequests } from "./RequestObservability.ts"
import { TrackerHttpLive } from "./TrackerHttp.ts"

/** The API with its handlers and error mapping. */
export const ApiLive = HttpApiBuilder.api(Api).pipe(
  Layer.provide([TrackerHttpLive, PagesHttpLive, OpsHttpLive, ExportHttpLive, ErrorResponsesLive]),
)

/**
 * The Node server. Closing it waits for every open connection, so on shutdown idle keep-alive connections are
 * closed at once and any still open after SHUTDOWN_TIMEOUT are cut: no client can hold the process open.
 */
const NodeServerLive = Layer.unwrapEffect(
  Effect.map(AppConfig, (config) => {
    const server = createServer()
    const closeConnections = Layer.scopedDiscard(
      Effect.addFinalizer(() =>
        Effect.sync(() => {
          server.closeIdleConnections()
          setTimeout(() => server.closeAllConnections(), Duration.toMillis(config.shutdownTimeout)).unref()
        }),
      ),
    )
    return closeConnections.pipe(
      Layer.provideMerge(NodeHttpServer.layer(() => server, { host: config.host, port: config.port })),
    )
  }),
)

/** The HTTP server: the API, its OpenAPI document at /openapi.json and a docs UI at /docs. */
export const HttpLive = HttpApiBuilder.serve(observeRequests).pipe(
  Layer.provide(HttpApiSwagger.layer({ path: "/docs" })),
  Layer.provide(HttpApiBuilder.middlewareOpenApi({ path: "/openapi.json" })),
  Layer.provide(ApiLive),
  HttpServer.withLogAddress,
  // No trace exporter is configured, so per-request spans would be built for nobody: a measurable cost per request.
  HttpMiddleware.withTracerDisabledWhen(() => true),
  Layer.provide(NodeServerLive),
)
