import { createHash } from "node:crypto"
import { readFileSync } from "node:fs"
import { HttpApiBuilder, HttpServerResponse } from "@effect/platform"
import { Effect, Stream } from "effect"
import { PageWatch } from "../actors/PageWatch.ts"
import { Api } from "./Api.ts"
import { clusterEventStream } from "./ClusterEvents.ts"
import { notePage } from "./RequestObservability.ts"
import { ServerDraining } from "./ServerDraining.ts"
import { staticAsset } from "./StaticAsset.ts"

/** The browser files ship next to this module (the build copies src/http/browser into dist/http/browser). */
const browserFile = (name: string) => readFileSync(new URL(`./browser/${name}`, import.meta.url))

/**
 * The tracker, cached by browsers for an hour (it is loaded on every page view of the tracked sites) and then
 * revalidated by its ETag.
 */
export const tracker = staticAsset(browserFile("tracker.js"), {
  contentType: "text/javascript; charset=utf-8",
  cacheControl: "public, max-age=3600",
})

const mapHtml = browserFile("map.html").toString("utf8")

/** The CSP source for an inline element's exact text. */
const hashSource = (text: string) => `'sha256-${createHash("sha256").update(text, "utf8").digest("base64")}'`

/** The text of every inline `<tag>` element of the page, as a CSP hash covers it. */
const inline = (tag: string) =>
  [...mapHtml.matchAll(new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`, "g"))].map((m) => hashSource(m[1] ?? ""))

/** Exactly the page's own inline script and style may run; it may talk only to this service. */
const mapPolicy = [
  "default-src 'none'",
  `script-src ${inline("script").join(" ")}`,
  `style-src ${inline("style").join(" ")}`,
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
].join("; ")

/**
 * The images the map may load: its own origin, and the background's origin when one is given. An origin, not the
 * URL: a URL may hold `;` or `,`, which would end the directive.
 */
const imageSources = (background: string | undefined) => {
  if (background === undefined) return "'self'"
  try {
    const url = new URL(background)
    return url.protocol === "https:" || url.protocol === "http:" ? `'self' ${url.origin}` : "'self'"
  } catch {
    return "'self'" // relative: this origin
  }
}

/** How often a cluster may be told to a map, and how often an idle event stream says it is alive. */
export const EventTiming = { throttle: "250 millis", heartbeat: "15 seconds" } as const

/** The browser's routes: the tracker script, the cluster map and the page's event stream. */
export const BrowserHttpLive = HttpApiBuilder.group(Api, "browser", (handlers) =>
  Effect.gen(function* () {
    const watch = yield* PageWatch
    const draining = yield* ServerDraining
    return handlers
      .handle("tracker", ({ request }) => Effect.succeed(tracker.answer(request.headers)))
      .handle("map", ({ path, urlParams }) =>
        Effect.gen(function* () {
          yield* notePage(path.page_uuid)
          return HttpServerResponse.text(mapHtml, {
            contentType: "text/html; charset=utf-8",
            headers: {
              "content-security-policy": `${mapPolicy}; img-src ${imageSources(urlParams.background)}`,
              "cache-control": "no-cache",
              "referrer-policy": "no-referrer",
            },
          })
        }),
      )
      .handle("events", ({ path }) =>
        Effect.gen(function* () {
          yield* notePage(path.page_uuid)
          // Ends when the server drains: the browser reconnects (to another instance, or to this one restarted).
          const changes = yield* watch.changes(path.page_uuid)
          const body = clusterEventStream(changes, EventTiming).pipe(Stream.interruptWhen(draining.began))
          return HttpServerResponse.stream(Stream.encodeText(body), {
            contentType: "text/event-stream",
            // no-transform and x-accel-buffering: proxies must pass each event on as it comes.
            headers: { "cache-control": "no-cache, no-transform", "x-accel-buffering": "no" },
          })
        }),
      )
  }),
)
