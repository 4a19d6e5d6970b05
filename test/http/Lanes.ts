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
