import { MalformedRequest, PayloadTooLarge, TrackerEndpoints } from "./Api.ts"
import { mediaTypeProblem } from "./RequestBody.ts"

/**
 * The body rules of the batch route (POST /clicks), on top of the tracker routes' (RequestBody.ts): a larger limit
 * (MAX_BATCH_BYTES), and besides a JSON array, NDJSON (one click a line) as `application/x-ndjson`, or as
 * `text/plain` (what `navigator.sendBeacon` sends for a string), where a body starting with `[` is an array. The
 * body gate (BodyGate.ts) hands the API the body as one JSON array, whichever form it came in.
 */

export const isBatchPost = (method: string, path: string) =>
  method === TrackerEndpoints.saveClicks.method && path === TrackerEndpoints.saveClicks.path

const mediaTypeOf = (contentType: string | undefined) =>
  (contentType ?? "").split(";", 1)[0]?.trim().toLowerCase() ?? ""

const isNdjson = (contentType: string | undefined) => mediaTypeOf(contentType) === "application/x-ndjson"

/** A media type the batch route does not read: the tracker routes' JSON types, and NDJSON. */
export const batchMediaTypeProblem = (contentType: string | undefined) =>
  isNdjson(contentType) ? undefined : mediaTypeProblem(contentType)

export const batchTooLarge = () =>
  new PayloadTooLarge({ message: "the batch's body is larger than the limit (MAX_BATCH_BYTES)" })

/** Whether a text/plain body is a JSON array (its first non-blank character is `[`) rather than NDJSON. */
const startsAsArray = (text: string) => /^[ \t\n\r]*\[/.test(text)

/**
 * The batch as the text of one JSON array: a JSON body as it is (the API refuses one that is not an array), NDJSON
 * lines (blank ones skipped) joined into an array once each line is known to be one JSON value; a line that is not
 * is the whole body's 400, as a body that is not JSON is.
 */
export const batchJsonText = (text: string, contentType: string | undefined): string | MalformedRequest => {
  const ndjson = isNdjson(contentType) || (mediaTypeOf(contentType) === "text/plain" && !startsAsArray(text))
  if (!ndjson) return text
  const lines: Array<string> = []
  let n = 0
  for (const line of text.split("\n")) {
    n++
    const trimmed = line.trim()
    if (trimmed === "") continue
    try {
      JSON.parse(trimmed)
    } catch {
      return new MalformedRequest({
        message: `line ${n} of the NDJSON body is not a JSON value (send one click per line, or a JSON array)`,
      })
    }
    lines.push(trimmed)
  }
  return `[${lines.join(",")}]`
}
