import { createHash } from "node:crypto"
import { gzipSync } from "node:zlib"
import { HttpMiddleware, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Effect } from "effect"

/** A fixed body in both encodings, with an entity tag for each. */
interface Variants {
  readonly identity: Uint8Array
  readonly identityTag: string
  readonly gzip: Uint8Array
  readonly gzipTag: string
}

// Keyed by the body: the docs handler answers the same response (and body) every time, so this is computed once.
const prepared = new WeakMap<Uint8Array, Variants>()

const variantsOf = (body: Uint8Array): Variants => {
  const known = prepared.get(body)
  if (known !== undefined) return known
  const hash = createHash("sha256").update(body).digest("base64url").slice(0, 27)
  const variants = { identity: body, identityTag: `"${hash}"`, gzip: gzipSync(body), gzipTag: `"${hash}-gz"` }
  prepared.set(body, variants)
  return variants
}

/** Whether an Accept-Encoding header allows gzip (`gzip` or `*` with a non-zero quality). */
export const acceptsGzip = (header: string | undefined): boolean => {
  if (header === undefined) return false
  const quality = new Map<string, number>()
  for (const part of header.split(",")) {
    const [coding = "", ...params] = part.trim().toLowerCase().split(";")
    const q = params.map((p) => p.trim()).find((p) => p.startsWith("q="))
    quality.set(coding.trim(), q === undefined ? 1 : Number(q.slice(2)))
  }
  const q = quality.get("gzip") ?? quality.get("x-gzip") ?? quality.get("*") ?? 0
  return q > 0
}

/** Whether an If-None-Match header names one of the tags (weak comparison, as RFC 9110 asks for GET). */
const matchesAny = (header: string | undefined, tags: ReadonlyArray<string>) =>
  header !== undefined &&
  (header.trim() === "*" ||
    header.split(",").some((given) => tags.includes(given.trim().replace(/^W\//, ""))))

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
      const variants = variantsOf(response.body.body)
      const gzip = acceptsGzip(request.headers["accept-encoding"])
      const headers = {
        etag: gzip ? variants.gzipTag : variants.identityTag,
        "cache-control": "no-cache",
        vary: "accept-encoding",
      }
      if (matchesAny(request.headers["if-none-match"], [variants.identityTag, variants.gzipTag]))
        return HttpServerResponse.empty({ status: 304, headers })
      return HttpServerResponse.uint8Array(gzip ? variants.gzip : variants.identity, {
        status: 200,
        contentType: response.body.contentType,
        headers: gzip ? { ...headers, "content-encoding": "gzip" } : headers,
      })
    }),
  )
