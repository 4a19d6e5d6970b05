import { request } from "node:http"

/** An answer as the client sees it. */
export interface Answer {
  readonly status: number
  readonly contentType: string | undefined
  readonly requestId: string | undefined
  readonly connection: string | undefined
  readonly body: string
}

/**
 * POSTs a body. With a content length the request is one the fast lane takes; sent chunked (no length) the same
 * body goes to the HttpApi: the two lanes' answers can be compared. A header given as undefined is not sent
 * (`content-type` is application/json unless told otherwise). `chunks` splits a chunked body into that many writes.
 */
export const post = (
  url: string,
  path: string,
  body: string | Buffer,
  lane: "fast" | "api",
  headers: Record<string, string | undefined> = {},
  chunks = 1,
) =>
  new Promise<Answer>((resolve, reject) => {
    const sent: Record<string, string> = {}
    const all: Record<string, string | undefined> = {
      "content-type": "application/json",
      ...(lane === "fast" ? { "content-length": String(Buffer.byteLength(body)) } : {}),
      ...headers,
    }
    for (const [name, value] of Object.entries(all)) if (value !== undefined) sent[name] = value
    const req = request(`${url}${path}`, { method: "POST", headers: sent })
    req.on("error", reject)
    req.on("response", (response) => {
      let text = ""
      response.setEncoding("utf8")
      response.on("data", (chunk: string) => {
        text += chunk
      })
      response.on("end", () =>
        resolve({
          status: response.statusCode ?? 0,
          contentType: response.headers["content-type"],
          requestId: response.headers["x-request-id"]?.toString(),
          connection: response.headers.connection,
          body: text,
        }),
      )
    })
    if (lane === "fast") return void req.end(body)
    const bytes = Buffer.from(body)
    // Written even when empty: a first write is what makes Node send the body chunked.
    const size = Math.ceil(bytes.length / chunks)
    req.write(bytes.subarray(0, size))
    for (let i = 1; i < chunks; i++) {
      const part = bytes.subarray(i * size, (i + 1) * size)
      if (part.length > 0) req.write(part)
    }
    req.end()
  })

/** What both lanes must answer alike: everything but the request id and connection handling. */
export const comparable = (answer: Answer) => ({
  status: answer.status,
  contentType: answer.contentType,
  body: answer.body,
})

/** A click body with any values, well-typed or not. */
export const click = (page: unknown, x: unknown, y: unknown, extra: Record<string, unknown> = {}) =>
  JSON.stringify({ page_uuid: page, coordinates: { x, y }, ...extra })

/** A click body with `inner` inside `depth` arrays at one place (the body's own object adds a level, x two). */
export const nested = (depth: number, inner: string, where: "page_uuid" | "x" | "extra") => {
  const value = `${"[".repeat(depth)}${inner}${"]".repeat(depth)}`
  if (where === "page_uuid") return `{"page_uuid":${value},"coordinates":{"x":0.5,"y":0.5}}`
  if (where === "x") return `{"page_uuid":"p","coordinates":{"x":${value},"y":0.5}}`
  return `{"page_uuid":"p","coordinates":{"x":0.5,"y":0.5},"extra":${value}}`
}

/** Bodies no endpoint accepts: malformed JSON, wrong shapes, values out of range. */
export const refused: ReadonlyArray<string> = [
  "",
  "{",
  '{"page_uuid":',
  "null",
  "[]",
  '"text"',
  "42",
  "{}",
  click("", 0.5, 0.5),
  click(7, 0.5, 0.5),
  click("p".repeat(513), 0.5, 0.5),
  click("p", 1.5, 0.5),
  click("p", 0.5, -0.01),
  click("p", "0.5", 0.5),
  click("p", null, 0.5),
  '{"page_uuid":"p","coordinates":{"x":1e400,"y":0.5}}',
  '{"page_uuid":"p","coordinates":null}',
  '{"page_uuid":"p","coordinates":[0.5,0.5]}',
  // Page ids Postgres would not store as sent: lone surrogates and NUL, as JSON escapes.
  '{"page_uuid":"x\\ud800","coordinates":{"x":0.5,"y":0.5}}',
  '{"page_uuid":"x\\udfff","coordinates":{"x":0.5,"y":0.5}}',
  '{"page_uuid":"\\udc00\\ud800","coordinates":{"x":0.5,"y":0.5}}',
  '{"page_uuid":"x\\u0000","coordinates":{"x":0.5,"y":0.5}}',
  // Blank bodies: one answer, as for the empty one.
  " ",
  "\n\t\r ",
  // Nested deeper than the limit (32), at several depths and places; once a stack overflow (500/503).
  nested(33, '"p"', "page_uuid"),
  nested(3000, "", "page_uuid"),
  nested(8000, "", "page_uuid"),
  nested(33, "0.5", "x"),
  nested(3000, "0.5", "x"),
  nested(32, "1", "extra"),
  nested(5000, "1", "extra"),
  `{"extra":${'{"a":'.repeat(2500)}1${"}".repeat(2500)},"page_uuid":"p","coordinates":{"x":0.5,"y":0.5}}`,
  "[".repeat(6000),
]
/** Saves also refuse a request id that is not a UUID (a prediction ignores the field). */
export const refusedSaves: ReadonlyArray<string> = [
  ...refused,
  click("p", 0.5, 0.5, { request_id: "not-a-uuid" }),
]
