import { createHash } from "node:crypto"
import { gzipSync } from "node:zlib"
import { HttpServerResponse } from "@effect/platform"
import type { Headers } from "@effect/platform/Headers"

/** Whether an Accept-Encoding header allows gzip (`gzip` or `*` with a non-zero quality). */
const acceptsGzip = (header: string | undefined): boolean => {
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

/** A fixed body served as it is or gzipped, with an entity tag per encoding and 304 on a matching If-None-Match. */
export interface StaticAsset {
  /** The gzipped body's size in bytes. */
  readonly gzippedBytes: number
  /** The answer to a GET with these request headers. */
  readonly answer: (headers: Headers) => HttpServerResponse.HttpServerResponse
}

/** Prepares a fixed body once (hash and gzip when prepared, not per request). */
export const staticAsset = (
  body: Uint8Array,
  options: { readonly contentType: string; readonly cacheControl: string },
): StaticAsset => {
  const hash = createHash("sha256").update(body).digest("base64url").slice(0, 27)
  const identityTag = `"${hash}"`
  const gzip = gzipSync(body, { level: 9 })
  const gzipTag = `"${hash}-gz"`
  return {
    gzippedBytes: gzip.byteLength,
    answer: (headers) => {
      const gzipped = acceptsGzip(headers["accept-encoding"])
      const common = {
        etag: gzipped ? gzipTag : identityTag,
        "cache-control": options.cacheControl,
        vary: "accept-encoding",
      }
      // Either encoding's tag names the same content.
      if (matchesAny(headers["if-none-match"], [identityTag, gzipTag]))
        return HttpServerResponse.empty({ status: 304, headers: common })
      return HttpServerResponse.uint8Array(gzipped ? gzip : body, {
        contentType: options.contentType,
        headers: gzipped ? { ...common, "content-encoding": "gzip" } : common,
      })
    },
  }
}
