import { isUtf8 } from "node:buffer"
import { InvalidRequest, MalformedRequest, PayloadTooLarge, TrackerApi, UnsupportedMediaType } from "./Api.ts"
import { endpointsOf } from "./Routes.ts"

/**
 * What a request must be before its JSON body is decoded, checked alike by both lanes (the fast lane and the
 * HttpApi's body gate, BodyGate.ts) so that they answer the same bytes. The checks run in this order: URL, media
 * type, size, UTF-8, blank, depth; then JSON.parse (400) and the endpoint's schema (422).
 */

/** The trackers' routes that take a body (a click), as declared: the only routes that read a body. */
const trackerBodyRoutes = new Set<string>(
  endpointsOf(TrackerApi)
    .filter((endpoint) => endpoint.payloadSchema._tag === "Some")
    .map((endpoint) => `${endpoint.method} ${endpoint.path}`),
)
export const isTrackerPost = (method: string, path: string) => trackerBodyRoutes.has(`${method} ${path}`)

/** The path of a request URL, without its query. */
export const pathOf = (url: string) => {
  const q = url.indexOf("?")
  return q === -1 ? url : url.slice(0, q)
}

/**
 * A URL whose percent-escapes are not UTF-8 (`%ED%A0%80`, `%ZZ`, a lone `%`). The router and the query parser keep
 * such a part undecoded, so `x%ED%A0%80` would name a page literally called that: refused instead. Decoding the
 * whole URL fails exactly when one of its parts does (`&`, `=`, `/` and `?` are no part of an escape).
 */
export const urlProblem = (url: string): MalformedRequest | undefined => {
  if (url.indexOf("%") === -1) return undefined
  try {
    decodeURIComponent(url)
    return undefined
  } catch {
    return new MalformedRequest({ message: "the URL is not valid percent-encoded UTF-8" })
  }
}

const mediaTypeOf = (contentType: string | undefined) => {
  if (contentType === undefined) return ""
  const semicolon = contentType.indexOf(";")
  return (semicolon === -1 ? contentType : contentType.slice(0, semicolon)).trim().toLowerCase()
}

export const isMultipart = (contentType: string | undefined) =>
  mediaTypeOf(contentType).startsWith("multipart/")

/**
 * A body the tracker routes do not read: JSON comes as `application/json` (any parameters) or `application/*+json`,
 * and, on these routes only, as `text/plain`, which is what `navigator.sendBeacon` sends for a string. Anything
 * else (form encoding, multipart, octet-stream, `*\/*`, none) is refused rather than decoded as something else.
 */
export const mediaTypeProblem = (contentType: string | undefined): UnsupportedMediaType | undefined => {
  if (contentType === "application/json") return undefined
  const type = mediaTypeOf(contentType)
  if (
    type === "application/json" ||
    type === "text/plain" ||
    (type.startsWith("application/") && type.endsWith("+json"))
  )
    return undefined
  return unsupportedMediaType(contentType)
}

export const unsupportedMediaType = (contentType: string | undefined) => {
  const type = mediaTypeOf(contentType)
  return new UnsupportedMediaType({
    message: `${type === "" ? "a body without a content type" : `content type ${type}`} is not accepted: send JSON with content-type application/json`,
  })
}

/** A body that could not be read as JSON, as the 400 answer; `reason` is what the reader said. */
export const malformedJson = (reason: string) =>
  new MalformedRequest({ message: `the request body could not be read as JSON (${reason})` })

export const payloadTooLarge = () =>
  new PayloadTooLarge({ message: "the request body is larger than the limit (MAX_BODY_BYTES)" })

const notUtf8 = () => new MalformedRequest({ message: "the request body is not valid UTF-8" })

/** The body as text; JSON is UTF-8, and bytes that are not would each become U+FFFD (another page id). */
export const bodyText = (bytes: Buffer): string | MalformedRequest =>
  isUtf8(bytes) ? bytes.toString("utf8") : notUtf8()

/** How deep a body's arrays and objects may nest: a click needs 2. Deeper values once overflowed the stack. */
export const MAX_JSON_DEPTH = 32

const bodyProblem = (message: string) =>
  new InvalidRequest({ message: `(body): ${message}`, issues: [{ path: "(body)", message }] })

const blank = /^[ \t\n\r]*$/

/**
 * True when arrays and objects nest deeper than `limit`, counted on the text (strings skipped) so that no parser or
 * formatter ever walks a deeper value. Malformed text gets a count too; JSON.parse refuses it afterwards.
 */
const nestsDeeper = (text: string, limit: number) => {
  let depth = 0
  let inString = false
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (inString) {
      // A backslash escapes the next character.
      if (c === 92) i++
      else if (c === 34) inString = false
    } else if (c === 34) inString = true
    else if (c === 123 || c === 91) {
      if (++depth > limit) return true
    } else if (c === 125 || c === 93) depth--
  }
  return false
}

/** A body that is blank (empty or JSON whitespace: one answer for both) or nested too deep. */
export const textProblem = (text: string): InvalidRequest | undefined => {
  if (blank.test(text)) return bodyProblem("the request body is empty; expected a JSON click")
  if (nestsDeeper(text, MAX_JSON_DEPTH))
    return bodyProblem(`the JSON is nested deeper than ${MAX_JSON_DEPTH} levels`)
  return undefined
}
