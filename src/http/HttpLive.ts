import { createServer, type IncomingMessage, type ServerResponse } from "node:http"
import {
  HttpApiBuilder,
  HttpApiSwagger,
  HttpMiddleware,
  HttpRouter,
  HttpServer,
  HttpServerError,
} from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { Duration, Effect, Layer, Option } from "effect"
import { rateLimitsConfigured } from "../actors/IngestLimits.ts"
import { AppConfig } from "../Config.ts"
import { Api } from "./Api.ts"
import { BrowserHttpLive } from "./BrowserHttp.ts"
import { notServing } from "./ConnectionErrors.ts"
import { corsForBrowsers, leftForCors } from "./Cors.ts"
import { cacheableDocs } from "./DocsCache.ts"
import { ErrorResponsesLive } from "./ErrorResponses.ts"
import { ExportHttpLive } from "./ExportHttp.ts"
import { ExportJobsLive } from "./ExportJobsHttp.ts"
import { OpsHttpLive } from "./OpsHttp.ts"
import { PagesHttpLive } from "./PagesHttp.ts"
import { observeRequests, RequestObserver } from "./RequestObservability.ts"
import { DocsPaths } from "./Routes.ts"
import { answerClosing, ServerConnections, securityHeaders } from "./ServerConnections.ts"
import { ServerDraining } from "./ServerDraining.ts"
import { TrackerFastLane } from "./TrackerFastLane.ts"
import { TrackerHttpLive } from "./TrackerHttp.ts"
import { WebhooksHttpLive } from "./WebhooksHttp.ts"

const securityHeaderList = Object.entries(securityHeaders)

/** The API with its handlers and error mapping. */
export const ApiLive = HttpApiBuilder.api(Api).pipe(
  Layer.provide([
    TrackerHttpLive,
    PagesHttpLive,
    BrowserHttpLive,
    OpsHttpLive,
    ExportHttpLive,
    WebhooksHttpLive,
    ExportJobsLive,
    ErrorResponsesLive,
  ]),
)

/**
 * The Node server, with the trackers' fast lane in front of the Effect app: each request goes to the lane first and
 * to the HttpApi when the lane leaves it. Node's timeouts come from the configuration, and what Node would answer
 * itself (unparseable requests, timeouts) is answered with JSON (ServerConnections).
 *
 * Shutdown drains: the serving scope closes first (before the page actors, the writer and the pool), stops
 * listening, finishes what is in flight, answers what still arrives 503 with `connection: close`, and returns as
 * soon as the last connection is closed; connections still open after SHUTDOWN_TIMEOUT are cut (and logged).
 */
const NodeServerLive = Layer.scoped(
  HttpServer.HttpServer,
  Effect.gen(function* () {
    const config = yield* AppConfig
    const fastLane = yield* TrackerFastLane
    const draining = yield* ServerDraining
    const timeouts = config.httpTimeouts
    const headersTimeout = Duration.toMillis(timeouts.headers)
    const server = createServer({
      headersTimeout,
      requestTimeout: Duration.toMillis(timeouts.request),
      keepAliveTimeout: Duration.toMillis(timeouts.keepAlive),
      // How often Node looks for requests past their timeouts (its default, 30 s, would overshoot short ones).
      connectionsCheckingInterval: Math.min(1000, headersTimeout),
      // A request without Host is refused by ServerConnections, with a JSON body (Node's own 400 has none).
      requireHostHeader: false,
    })
    const connections = new ServerConnections(server)
    let app: ((request: IncomingMessage, response: ServerResponse) => void) | undefined
    server.on("request", (request: IncomingMessage, response: ServerResponse) => {
      if (!connections.admit(request, response)) return
      if (app !== undefined) app(request, response)
      else answerClosing(response, notServing())
    })

    /** Stops listening and waits for the connections to finish; cuts them after SHUTDOWN_TIMEOUT. */
    // Interruptible: finalizers run uninterruptibly, and the timeout could not otherwise stop the wait.
    const drain = Effect.async<void>((resume) => connections.drain(() => resume(Effect.void))).pipe(
      Effect.interruptible,
      Effect.timeoutOption(config.shutdownTimeout),
      Effect.flatMap(
        Option.match({
          onSome: () => Effect.void,
          onNone: () =>
            Effect.logWarning("shutdown: connections cut after SHUTDOWN_TIMEOUT").pipe(
              Effect.annotateLogs({ connections: connections.cutAll() }),
              Effect.zipRight(Effect.async<void>((resume) => connections.drain(() => resume(Effect.void)))),
            ),
        }),
      ),
    )

    yield* Effect.acquireRelease(
      Effect.async<void, HttpServerError.ServeError>((resume) => {
        const onError = (cause: Error) => resume(Effect.fail(new HttpServerError.ServeError({ cause })))
        server.once("error", onError)
        server.listen({ host: config.host, port: config.port }, () => {
          server.off("error", onError)
          resume(Effect.void)
        })
      }),
      () => drain,
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
      serve: (httpApp, middleware) =>
        Effect.gen(function* () {
          const effectApp = yield* middleware === undefined
            ? NodeHttpServer.makeHandler(httpApp)
            : NodeHttpServer.makeHandler(httpApp, middleware)
          // Requests the lane leaves: those a browser sends cross-origin (CORS, Cors.ts), and every one when
          // ingestion rate limits are configured (the HttpApi applies them, RateLimit.ts).
          const leaves = leftForCors(config.corsOrigins)
          // The lane writes its headers in one go; the framework's answers get the security headers here.
          const framework = (request: IncomingMessage, response: ServerResponse) => {
            for (const [name, value] of securityHeaderList) response.setHeader(name, value)
            effectApp(request, response)
          }
          app =
            config.httpFastLane && !rateLimitsConfigured(config)
              ? (request, response) => {
                  if (leaves(request.headers) || !fastLane.handle(request, response))
                    framework(request, response)
                }
              : framework
          // This scope closes before the services the app uses: drain here, while they still serve.
          yield* Effect.addFinalizer(() =>
            draining.begin.pipe(
              Effect.zipRight(drain),
              Effect.ensuring(
                Effect.sync(() => {
                  app = undefined
                }),
              ),
            ),
          )
        }),
    })
  }),
).pipe(Layer.merge(NodeHttpServer.layerContext), Layer.provide(TrackerFastLane.Default))

/**
 * A span per request only when a trace exporter is configured (OTEL_EXPORTER_OTLP_ENDPOINT, Tracing.ts): without
 * one the spans would be built for nobody, at a measurable cost per request on the HttpApi's path
 * (docs/benchmarks.md). The fast lane builds none either way.
 */
const serverSpansWhenExported = <A, E, R>(layer: Layer.Layer<A, E, R>) =>
  Layer.unwrapEffect(
    Effect.map(AppConfig, (config) =>
      Option.isSome(config.otlpEndpoint) ? layer : HttpMiddleware.withTracerDisabledWhen(layer, () => true),
    ),
  )

/** The HTTP server: the API, its OpenAPI document at /openapi.json and a docs UI at /docs. */
export const HttpLive = HttpApiBuilder.serve(observeRequests).pipe(
  Layer.provide(HttpApiSwagger.layer({ path: DocsPaths.docs })),
  // Around the router, so it sees the docs page's response before it is written.
  Layer.provide(HttpApiBuilder.middleware(cacheableDocs(DocsPaths.docs))),
  Layer.provide(HttpApiBuilder.middlewareOpenApi({ path: DocsPaths.openApi })),
  // CORS around the API's own middleware (the body gate among it), so that its refusals carry the headers too.
  Layer.provide(HttpApiBuilder.middleware(corsForBrowsers)),
  Layer.provide(ApiLive),
  // The router's own cap on a path parameter (100 characters) would answer 404 to page ids that saves accept (up
  // to 512): lift it so every id reaches PageUuid's checks. Node's header size limit still bounds the URL.
  // Case-sensitive, as paths are: matching a lower-cased path would misplace a parameter whose lower case has
  // another length ("İ" becomes two characters) and answer 404 for a page that exists.
  Layer.provide(HttpRouter.setRouterConfig({ maxParamLength: 16_384, caseSensitive: true })),
  HttpServer.withLogAddress,
  serverSpansWhenExported,
  // Merged, so the server (its address) is reachable by whoever builds this layer, e.g. an in-process test.
  Layer.provideMerge(NodeServerLive),
  // One account of requests for the HttpApi's middleware and the fast lane; one drain signal for the server and
  // the event streams.
  Layer.provide([RequestObserver.Default, ServerDraining.Default]),
)
