import { HttpMiddleware, HttpServerRequest } from "@effect/platform"
import { Effect } from "effect"
import { type StaticAsset, staticAsset } from "./StaticAsset.ts"

// Keyed by the body: the docs handler answers the same response (and body) every time, so it is prepared once.
const prepared = new WeakMap<Uint8Array, StaticAsset>()

/**
 * A fixed GET page (the Swagger UI at /docs, about 1.9 MB) made cheap to fetch again: gzip when the client
 * accepts it, an ETag per encoding, `cache-control: no-cache` (revalidate each time) and 304 on If-None-Match.
 */
export const cacheableDocs = (path: string) =>
  HttpMiddleware.make((app) =>
    Effect.gen(function* () {
      const request = yield* HttpServerRequest.HttpServerRequest
      const q = request.url.indexOf("?")
      if (request.method !== "GET" || (q === -1 ? request.url : request.url.slice(0, q)) !== path)
        return yield* app
      const response = yield* app
      if (response.status !== 200 || response.body._tag !== "Uint8Array") return response
      const body = response.body.body
      const asset =
        prepared.get(body) ??
        staticAsset(body, { contentType: response.body.contentType, cacheControl: "no-cache" })
      prepared.set(body, asset)
      return asset.answer(request.headers)
    }),
  )
