import { createServer, type IncomingMessage, type ServerResponse } from "node:http"
import { HttpApiBuilder, HttpApiSwagger, HttpMiddleware, HttpServer, HttpServerError } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { Duration, Effect, Layer } from "effect"
import { AppConfig } from "../Config.ts"
import { Api } from "./Api.ts"
import { ErrorResponsesLive } from "./ErrorResponses.ts"
import { ExportHttpLive } from "./ExportHttp.ts"
import { OpsHttpLive } from "./OpsHttp.ts"
import { PagesHttpLive } from "./PagesHttp.ts"
import { observeRequests } from "./RequestObservability.ts"
import { TrackerFastLane } from "./TrackerFastLane.ts"
import { TrackerHttpLive } from "./TrackerHttp.ts"

/** The API with its handlers and error mapping. */
export const ApiLive = HttpApiBuilder.api(Api).pipe(
  Layer.provide([TrackerHttpLive, PagesHttpLive, OpsHttpLive, ExportHttpLive, ErrorResponsesLive]),
)

/**
 * The Node server, with the trackers' fast lane in front of the Effect app: each request goes to the lane first and
 * to the HttpApi when the lane leaves it. Closing waits for every open connection, so on shutdown idle keep-alive
 * connections are closed at once and any still open after SHUTDOWN_TIMEOUT are cut: no client can hold the
 * process open.
 */
const NodeServerLive = Layer.scoped(
  HttpServer.HttpServer,
  Effect.gen(function* () {
    const config = yield* AppConfig
    const fastLane = yield* TrackerFastLane
    const server = createServer()
    yield* Effect.acquireRelease(
      Effect.async<void, HttpServerError.ServeError>((resume) => {
        const onError = (cause: Error) => resume(Effect.fail(new HttpServerError.ServeError({ cause })))
        server.once("error", onError)
        server.listen({ host: config.host, port: config.port }, () => {
          server.off("error", onError)
          resume(Effect.void)
        })
      }),
      () =>
        Effect.async<void>((resume) => {
          server.close(() => resume(Effect.void))
          server.closeIdleConnections()
          setTimeout(() => server.closeAllConnections(), Duration.toMillis(config.shutdownTimeout)).unref()
        }),
    )
    const address = server.address()
    return HttpServer.make({
      address:
        typeof address === "object" && address !== null
          ? {
              _tag: "TcpAddress",
              hostname: address.address === "::" ? "0.0.0.0" : address.address,
              port: address.port,
            }
          : { _tag: "UnixAddress", path: String(address) },
      serve: (app, middleware) =>
        Effect.gen(function* () {
          const effectApp = yield* middleware === undefined
            ? NodeHttpServer.makeHandler(app)
            : NodeHttpServer.makeHandler(app, middleware)
          const listener = config.httpFastLane
            ? (request: IncomingMessage, response: ServerResponse) => {
                if (!fastLane.handle(request, response)) effectApp(request, response)
              }
            : effectApp
          server.on("request", listener)
          yield* Effect.addFinalizer(() => Effect.sync(() => server.off("request", listener)))
        }),
    })
  }),
).pipe(Layer.merge(NodeHttpServer.layerContext), Layer.provide(TrackerFastLane.Default))

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
