import { createHash } from "node:crypto"
import { gzipSync } from "node:zlib"
import { HttpServerResponse } from "@effect/platform"
import type { Headers } from "@effect/platform/Headers"
import { acceptsGzip } from "./DocsCache.ts"

/** A fixed body served as it is or gzipped, with an entity tag per encoding and 304 on a matching If-None-Match. */
export interface StaticAsset {
  /** The gzipped body's size in bytes. */
  readonly gzippedBytes: number
  /** The answer to a GET with these request headers. */
  readonly answer: (headers: Headers) => HttpServerResponse.HttpServerResponse
}

/** Prepares a fixed body once (hash and gzip at start-up, not per request). */
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
      const ifNoneMatch = headers["if-none-match"]
      // Weak comparison, as RFC 9110 asks for GET; either encoding's tag names the same content.
      if (
        ifNoneMatch !== undefined &&
        (ifNoneMatch.trim() === "*" ||
          ifNoneMatch
            .split(",")
            .some((tag) => [identityTag, gzipTag].includes(tag.trim().replace(/^W\//, ""))))
      )
        return HttpServerResponse.empty({ status: 304, headers: common })
      return HttpServerResponse.uint8Array(gzipped ? gzip : body, {
        contentType: options.contentType,
        headers: gzipped ? { ...common, "content-encoding": "gzip" } : common,
      })
    },
  }
}
