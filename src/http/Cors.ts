import type { IncomingHttpHeaders } from "node:http"
import { type HttpApp, HttpMiddleware, HttpServerRequest } from "@effect/platform"
import { Effect } from "effect"
import { AppConfig } from "../Config.ts"
import { BrowserApi, TrackerApi } from "./Api.ts"
import { DocsPaths, makeRouteOf } from "./Routes.ts"

/** How long a browser may cache a preflight's answer (seconds): a day, as most browsers cap it lower anyway. */
export const PREFLIGHT_MAX_AGE = 86_400

/** The routes a page on another origin calls: the trackers' (saves, batches, predictions) and the browser group's. */
const routeOf = makeRouteOf([TrackerApi, BrowserApi])
const docs = new Set<string>(Object.values(DocsPaths))
const isCorsRoute = (url: string) => {
  const route = routeOf(url)
  return route !== "unmatched" && !docs.has(route)
}

/** Whether CORS_ORIGINS enables CORS at all (empty: no CORS headers, preflights answer 404 as any OPTIONS). */
export const corsEnabled = (origins: ReadonlyArray<string>) => origins.length > 0

/**
 * Whether the fast lane leaves a request to the HttpApi for CORS: with CORS on, every request with an Origin header
 * (what browsers send cross-origin) goes through the HttpApi, whose CORS middleware answers its headers; the lane
 * keeps the server-to-server saves, which send no Origin.
 */
export const leftForCors = (origins: ReadonlyArray<string>) =>
  corsEnabled(origins)
    ? (headers: IncomingHttpHeaders) => headers.origin !== undefined
    : (_headers: IncomingHttpHeaders) => false

/**
 * CORS for the tracker and browser routes (CORS_ORIGINS), by the platform's middleware: a preflight (`OPTIONS`) is
 * answered 204 with the allowed methods and headers and `Access-Control-Max-Age`; every answer (errors too: the
 * headers are set by a pre-response handler) carries `Access-Control-Allow-Origin`: `*` for any origin, or the
 * request's origin when it is listed (none when it is not, so the browser refuses). No credentials: the routes
 * read no cookies. The admin, ops and analysts' routes get no CORS headers.
 */
export const corsForBrowsers = Effect.map(AppConfig, (config) => {
  const origins = config.corsOrigins
  if (!corsEnabled(origins)) return <E, R>(app: HttpApp.Default<E, R>) => app
  const listed = new Set(origins)
  const cors = HttpMiddleware.cors({
    // None listed: the middleware answers `*`; a predicate: it echoes an allowed origin, with Vary: Origin.
    allowedOrigins: listed.has("*") ? [] : (origin: string) => listed.has(origin),
    allowedMethods: ["GET", "POST", "OPTIONS"],
    allowedHeaders: ["content-type", "idempotency-key", "x-request-id"],
    exposedHeaders: ["retry-after", "x-request-id"],
    maxAge: PREFLIGHT_MAX_AGE,
  })
  return <E, R>(app: HttpApp.Default<E, R>) => {
    const withCors = cors(app)
    return Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) =>
      isCorsRoute(request.url) ? withCors : app,
    )
  }
})
