import { request as httpRequest } from "node:http"
import { describe, expect, it } from "@effect/vitest"
import fc from "fast-check"
import { loadCases, replay, runId } from "../support/Cases.ts"
import { freshStorage, inProcessServers } from "../support/ServedStorage.ts"
import { storageModes } from "../support/StorageModes.ts"

const REQUESTS = Number(process.env.FUZZ_REQUESTS ?? 10_000)
const seed = Number(process.env.FUZZ_SEED ?? Date.now() % 2 ** 31)
/** A request not answered by then counts as not answered at all (well past every server-side timeout). */
const ANSWER_TIMEOUT_MS = 60_000

const paths = [
  "/save_click_and_predict_cluster",
  "/new_click",
  "/predict_cluster",
  "/predict_click",
  "/get_best_cluster",
  "/",
  "/pages/fuzz%2F1/clusters",
  "/pages/fuzz%2F1/activity",
  "/healthz",
  "/readyz",
  "/metrics",
  "/openapi.json",
  "/nowhere",
  "/save_click_and_predict_cluster/extra",
  "/%",
  "//",
]
const savePaths = new Set(["/save_click_and_predict_cluster", "/new_click"])

// ---------------------------------------------------------------------------------------------------------------
// Hostile pieces: each once answered a client 5xx or nothing (issue 9), so the fuzzer must keep producing them.

/** Code units Postgres text cannot hold as such: lone surrogates (either half, or two highs) and NUL. */
const illFormed = fc.constantFrom("\ud800", "\udfff", "\udbff", "\udc00", "\ud800\ud800", "\u0000")
/** Strings with an ill-formed code unit somewhere (and the odd but valid BOM, U+FFFF, astral pairs). */
const hostileString = fc
  .tuple(
    fc.string({ maxLength: 20 }),
    fc.oneof(illFormed, fc.constantFrom("\ufeff", "\uffff", "😀", "\u2028")),
    fc.string({ unit: "binary", maxLength: 20 }),
  )
  .map(([a, b, c]) => `${a}${b}${c}`)
/** Ids around the lengths that matter: the router's old 100-character cap and the 512 a save accepts. */
const longPageId = fc
  .tuple(fc.integer({ min: 90, max: 700 }), fc.constantFrom("a", "é", "/", "😀", "%", " "))
  // cut by code points, never inside a surrogate pair
  .map(([n, c]) =>
    Array.from(`long/${c.repeat(n)}`)
      .slice(0, n)
      .join(""),
  )
const wellFormedPageId = fc.oneof(
  fc.constantFrom("fuzz/1", "fuzz/2", "fuzz/3"),
  fc.string({ unit: "grapheme", minLength: 1, maxLength: 80 }),
  longPageId,
)

/** Numbers JSON can spell and a double cannot hold, or barely. */
const hugeNumber = fc.oneof(
  fc.constantFrom("1e400", "-1e400", "1e-400", "4.9e-324", "1.7976931348623157e308", "-0", "0e999999999"),
  fc.integer({ min: 20, max: 6_000 }).map((n) => `0.${"9".repeat(n)}`),
  fc.integer({ min: 20, max: 6_000 }).map((n) => "1".repeat(n)),
)
/** JSON nested up to a few thousand levels (under the body size limit), closed or not, where fields go. */
const deeplyNested = fc
  .record({
    depth: fc.integer({ min: 100, max: 5_000 }),
    shape: fc.constantFrom("extra", "coordinates", "page_uuid", "object", "top", "unclosed"),
  })
  .map(({ depth, shape }) => {
    const arrays = `${"[".repeat(depth)}${"]".repeat(depth)}`
    const click = (field: string, value: string) =>
      `{"page_uuid":"fuzz/1","coordinates":{"x":0.5,"y":0.5},"${field}":${value}}`
    switch (shape) {
      case "extra":
        return click("extra", arrays)
      case "coordinates":
        return click("coordinates", arrays)
      case "page_uuid":
        return click("page_uuid", arrays)
      case "object": {
        const levels = Math.min(depth, 2_500)
        return click("extra", `${'{"a":'.repeat(levels)}1${"}".repeat(levels)}`)
      }
      case "top":
        return arrays
      default:
        return "[".repeat(depth)
    }
  })

const coordinate = fc.oneof(
  fc.double(),
  fc.double({ min: 0, max: 1, noNaN: true }),
  fc.constantFrom(0, 1, -0, 1e-300, 1.0000001, -1e-9, Number.MAX_VALUE),
  fc.string(),
  fc.constant(null),
  fc.boolean(),
  fc.anything(),
)
const pageUuid = fc.oneof(
  wellFormedPageId,
  fc.string({ maxLength: 600 }),
  hostileString,
  fc.constantFrom("x\ud800", "x\udfff", "\u0000", "a\u0000b"),
  fc.constant(""),
  fc.anything(),
)
/** Click-shaped bodies with any part replaced, dropped or added. */
const mutatedClick = fc.record(
  {
    page_uuid: pageUuid,
    coordinates: fc.oneof(fc.record({ x: coordinate, y: coordinate }, { requiredKeys: [] }), fc.anything()),
    request_id: fc.oneof(fc.uuid(), fc.string(), fc.anything()),
    extra: fc.anything(),
  },
  { requiredKeys: [] },
)
const validCoordinates = fc.record({
  x: fc.double({ min: 0, max: 1, noNaN: true }),
  y: fc.double({ min: 0, max: 1, noNaN: true }),
})
const validClick = fc.record({
  page_uuid: fc.constantFrom("fuzz/1", "fuzz/2", "fuzz/3"),
  coordinates: validCoordinates,
  request_id: fc.option(fc.uuid(), { nil: undefined }),
})
/** A click valid in every other way, on a page id that is long, odd or ill-formed. */
const hostilePageClick = fc.record({
  page_uuid: fc.oneof(wellFormedPageId, hostileString, fc.constantFrom("x\ud800", "x\udfff", "\u0000")),
  coordinates: validCoordinates,
})
const body = fc.oneof(
  { arbitrary: validClick.map((v) => JSON.stringify(v)), weight: 4 },
  { arbitrary: hostilePageClick.map((v) => JSON.stringify(v)), weight: 2 },
  mutatedClick.map((v) => JSON.stringify(v)),
  deeplyNested,
  fc
    .tuple(hugeNumber, fc.oneof(hugeNumber, fc.constant("0.5")))
    .map(([x, y]) => `{"page_uuid":"fuzz/1","coordinates":{"x":${x},"y":${y}}}`),
  hugeNumber.map((n) => `{"page_uuid":${n},"coordinates":{"x":0.5,"y":0.5},"request_id":${n}}`),
  fc.json(),
  fc.string({ maxLength: 200 }),
  mutatedClick.map((v) => JSON.stringify(v).slice(0, -1)),
  fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b).toString("latin1")),
  fc.constantFrom("", " ", "\n\t ", "null", "[]", "{}", '"x"'),
  fc
    .integer({ min: 15_000, max: 40_000 })
    .map((n) => JSON.stringify({ page_uuid: "fuzz/1", pad: "x".repeat(n) })),
)
const query = fc.oneof(
  fc.constant(""),
  fc
    .dictionary(
      fc.constantFrom("page_uuid", "granularity", "from", "to", "cluster_idx", "format", "x"),
      fc.string(),
    )
    .map((d) => `?${new URLSearchParams(d)}`),
  fc.string({ maxLength: 100 }).map((s) => `?${encodeURIComponent(s)}`),
  fc.constant("?page_uuid=fuzz%2F1&granularity=day&from=2026-01-01T00:00:00Z&to=2027-01-01T00:00:00Z"),
)
/** Dates Postgres cannot hold (year 0, before 4713 BC, past 294276 AD), impossible ones and odd spellings. */
const date = fc.oneof(
  fc.constantFrom(
    "0000-01-01T00:00:00Z",
    "-000001-01-01T00:00:00Z",
    "+010000-01-01T00:00:00Z",
    "+275760-09-13T00:00:00Z",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59.999Z",
    "2026-02-30",
    "2026-13-01",
    "2026-01-01T00:00:00+99:00",
    "2026-01-01",
    "1e3",
    "",
  ),
  fc
    .date({ noInvalidDate: false })
    .map((d) => (Number.isNaN(d.getTime()) ? "Invalid Date" : d.toISOString())),
)
const clusterIdx = fc.oneof(
  fc.constantFrom(
    "2147483647",
    "2147483648",
    "4294967296",
    "99999999999999999999",
    "-1",
    "1e3",
    "0x10",
    " 1",
    "",
  ),
  fc.nat().map(String),
  fc.bigInt().map(String),
)
const activityQuery = fc
  .record(
    {
      granularity: fc.constantFrom("hour", "day", "week", "month", "year", ""),
      from: date,
      to: date,
      cluster_idx: clusterIdx,
    },
    { requiredKeys: [] },
  )
  .map((d) => `?${new URLSearchParams(d)}`)
/** Ids in a path: well-formed ones of any length, and percent-encodings that are not UTF-8 (a lone surrogate, NUL). */
const pagePath = fc
  .tuple(
    fc.oneof(
      { arbitrary: wellFormedPageId.map(encodeURIComponent), weight: 4 },
      fc.constantFrom("%ED%A0%80", "x%ED%BF%BF", "%00", "a%00b", "x%C3", "%FF", "%2F", "%"),
    ),
    fc.constantFrom("clusters", "activity"),
  )
  .map(([id, what]) => `/pages/${id}/${what}`)
const headers = fc.record(
  {
    "content-type": fc.constantFrom(
      "application/json",
      "application/json",
      "application/json; charset=utf-8",
      "APPLICATION/JSON",
      "application/json;charset=utf-16",
      "application/vnd.api+json",
      "text/json",
      "text/plain",
      "text/plain;charset=UTF-8",
      "application/x-www-form-urlencoded",
      "multipart/form-data; boundary=x",
      "application/octet-stream",
      "*/*",
      "",
      "garbage/;;",
    ),
    "idempotency-key": fc.oneof(
      fc.uuid(),
      fc.string({ maxLength: 60 }).filter((s) => /^[\x21-\x7e]*$/.test(s)),
    ),
    "x-request-id": fc.string({ maxLength: 200 }).filter((s) => /^[\x21-\x7e]*$/.test(s)),
  },
  { requiredKeys: [] },
)
const method = fc.oneof(
  { arbitrary: fc.constant("POST"), weight: 6 },
  { arbitrary: fc.constant("GET"), weight: 2 },
  { arbitrary: fc.constantFrom("PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"), weight: 1 },
)
/** Sent with `transfer-encoding: chunked` (no content-length) now and then, the large bodies included. */
const chunked = fc.oneof(
  { arbitrary: fc.constant(false), weight: 7 },
  { arbitrary: fc.constant(true), weight: 1 },
)
const request = fc.oneof(
  {
    weight: 8,
    arbitrary: fc.record({
      method,
      path: fc.oneof(
        { arbitrary: fc.constantFrom(...savePaths, "/predict_cluster", "/predict_click"), weight: 6 },
        { arbitrary: fc.constantFrom(...paths), weight: 3 },
      ),
      query,
      body,
      headers,
      chunked,
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      method: fc.constantFrom("GET", "GET", "GET", "HEAD", "POST"),
      path: pagePath,
      query: fc.oneof(activityQuery, query),
      body: fc.constant(""),
      headers,
      chunked: fc.constant(false),
    }),
  },
)

type FuzzRequest = typeof request extends fc.Arbitrary<infer A> ? A : never

const hasBody = (r: FuzzRequest) => r.method !== "GET" && r.method !== "HEAD"

const send = async (url: string, r: FuzzRequest) => {
  const response = await fetch(`${url}${r.path}${r.query}`, {
    method: r.method,
    headers: r.headers,
    signal: AbortSignal.timeout(ANSWER_TIMEOUT_MS),
    ...(hasBody(r) ? { body: r.body } : {}),
  })
  const text = await response.text()
  return { status: response.status, text }
}

/**
 * The body in chunks of `transfer-encoding: chunked` (fetch cannot be made to send those reliably). An answer that
 * arrives before the body is all sent counts, even if the server then closes the connection under the writes.
 */
const sendChunked = (url: string, r: FuzzRequest) =>
  new Promise<{ status: number; text: string }>((resolve, reject) => {
    let answer: { status: number; text: string } | undefined
    const req = httpRequest(`${url}${r.path}${r.query}`, {
      method: r.method,
      headers: { ...r.headers, "transfer-encoding": "chunked" },
    })
    req.setTimeout(ANSWER_TIMEOUT_MS, () =>
      req.destroy(new Error(`no answer within ${ANSWER_TIMEOUT_MS / 1000} s`)),
    )
    req.on("response", (response) => {
      const current = { status: response.statusCode ?? 0, text: "" }
      answer = current
      response.setEncoding("utf8")
      response.on("data", (d: string) => {
        current.text += d
      })
      response.on("end", () => resolve(current))
      response.on("error", () => resolve(current))
    })
    req.on("error", (error) => (answer === undefined ? reject(error) : resolve(answer)))
    const bytes = Buffer.from(r.body)
    for (let i = 0; i < bytes.length; i += 1024) req.write(bytes.subarray(i, i + 1024))
    req.end()
  })

/** The route a request went to, page ids left out: failures are summed up by it. */
const route = (r: FuzzRequest) =>
  `${r.method} ${r.path.replace(/^\/pages\/[^/]*\//, "/pages/{id}/")}${r.chunked && hasBody(r) ? " (chunked)" : ""}`

const clip = (text: string, max: number) =>
  text.length > max ? `${text.slice(0, max)}…(${text.length})` : text

const describeRequest = (i: number, r: FuzzRequest) =>
  `#${i} ${r.method} ${clip(r.path, 160)}${clip(r.query, 160)}${r.chunked && hasBody(r) ? " (chunked)" : ""} ` +
  `content-type ${JSON.stringify(r.headers["content-type"] ?? null)}, ${r.body.length} chars: ` +
  JSON.stringify(r.body.slice(0, 120))

const describeError = (error: unknown) =>
  error instanceof Error
    ? `${error.name}: ${error.message}${error.cause instanceof Error ? ` (${error.cause.message})` : ""}`
    : String(error)

/** What a 4xx must carry: `{"_tag": ..., "message": ...}`. */
const errorTag = (text: string): string | undefined => {
  try {
    const parsed: unknown = JSON.parse(text)
    return typeof parsed === "object" &&
      parsed !== null &&
      "_tag" in parsed &&
      typeof parsed._tag === "string" &&
      "message" in parsed &&
      typeof parsed.message === "string"
      ? parsed._tag
      : undefined
  } catch {
    return undefined
  }
}

/** A lone surrogate: in Unicode mode a well-formed pair is one code point, not Cs. */
const illFormedText = /\p{Cs}/u

/**
 * A page id every read route must find a route for (it may still be a page without clicks: 404 PageNotFound).
 * Not "." or "..", even percent-encoded: a URL client resolves those segments away before sending
 * (`/pages/./activity` is sent as `/pages/activity`), so no such request reaches the server.
 */
const readablePageId = (path: string) => {
  const match = /^\/pages\/([^/]+)\/(clusters|activity)$/.exec(path)
  if (match === null) return false
  try {
    const id = decodeURIComponent(match[1]!)
    if (id === "." || id === "..") return false
    return id.length >= 1 && id.length <= 512 && !illFormedText.test(id) && !id.includes("\u0000")
  } catch {
    return false
  }
}

describe.each(storageModes())("fuzzing every endpoint, $name storage", ({ make }) => {
  const fresh = freshStorage(make)
  const servers = inProcessServers()

  it(`answers ${REQUESTS} generated, mutated and hostile requests, each with a non-5xx answer, storing only accepted saves`, async () => {
    const storage = fresh.current
    // The fuzz judges answers to inputs, not the machine's speed: a commit slowed past the default DB_TIMEOUT (5 s)
    // by a loaded machine would answer 503. This bound still answers a commit that hangs, within ANSWER_TIMEOUT_MS.
    const env = { ...storage.env, DB_TIMEOUT: "30 seconds" }
    let server = await servers.start(env)
    const requests = fc.sample(request, { numRuns: REQUESTS, seed })
    const statuses = new Map<number, number>()
    const failures: Array<{ readonly kind: string; readonly detail: string }> = []
    const fail = (kind: string, detail: string) => failures.push({ kind, detail })
    let answered = 0
    let acceptedSaves = 0
    const keys = new Set<string>()
    let next = 0
    const worker = async () => {
      while (next < requests.length) {
        const i = next++
        const r = requests[i]!
        const sent = r.chunked && hasBody(r) ? sendChunked(server.url, r) : send(server.url, r)
        const outcome = await sent.then(
          (answer) => ({ _tag: "Answered" as const, ...answer }),
          (error: unknown) => ({ _tag: "NoAnswer" as const, error: describeError(error) }),
        )
        if (outcome._tag === "NoAnswer") {
          fail(`no answer: ${route(r)}`, `no answer (${outcome.error}) to ${describeRequest(i, r)}`)
          continue
        }
        const { status, text } = outcome
        answered++
        statuses.set(status, (statuses.get(status) ?? 0) + 1)
        if (status >= 500)
          fail(`${status}: ${route(r)}`, `${status} ${clip(text, 200)} to ${describeRequest(i, r)}`)
        else if (status >= 400 && r.method !== "HEAD" && errorTag(text) === undefined)
          fail(
            `${status} without a JSON error body: ${route(r)}`,
            `${status} ${clip(text, 100)} to ${describeRequest(i, r)}`,
          )
        else if (r.method === "GET" && readablePageId(r.path) && errorTag(text) === "RouteNotFound")
          fail(`no route for a page id a save accepts: ${route(r)}`, describeRequest(i, r))
        if (status === 200 && r.method === "POST" && savePaths.has(r.path)) {
          const parsed: unknown = JSON.parse(r.body)
          if (
            typeof parsed === "object" &&
            parsed !== null &&
            "page_uuid" in parsed &&
            typeof parsed.page_uuid === "string" &&
            (illFormedText.test(parsed.page_uuid) || parsed.page_uuid.includes("\u0000"))
          )
            fail(`saved an ill-formed page_uuid: ${route(r)}`, describeRequest(i, r))
          const id =
            typeof parsed === "object" &&
            parsed !== null &&
            "request_id" in parsed &&
            typeof parsed.request_id === "string"
              ? parsed.request_id.toLowerCase()
              : r.headers["idempotency-key"]?.toLowerCase()
          // a repeated key stores nothing new
          if (id === undefined || !keys.has(id)) acceptedSaves++
          if (id !== undefined) keys.add(id)
        }
      }
    }
    await Promise.all(Array.from({ length: 16 }, worker))
    const replayWith = `FUZZ_SEED=${seed} FUZZ_REQUESTS=${REQUESTS}`
    console.log(
      `fuzz (${storage.name}, ${replayWith}): ${answered} of ${REQUESTS} requests answered, statuses ` +
        `${JSON.stringify(Object.fromEntries(statuses))}, ${acceptedSaves} saves accepted, ${failures.length} failures`,
    )
    const byKind = new Map<string, Array<string>>()
    for (const { kind, detail } of failures) byKind.set(kind, [...(byKind.get(kind) ?? []), detail])
    for (const [kind, details] of byKind)
      console.log(`${details.length} × ${kind}, e.g.\n  ${details.slice(0, 3).join("\n  ")}`)
    expect(
      { failures: failures.length, kinds: Object.fromEntries([...byKind].map(([k, d]) => [k, d.length])) },
      replayWith,
    ).toEqual({
      failures: 0,
      kinds: {},
    })
    expect(answered, replayWith).toBe(REQUESTS)

    await server.stop()
    const rows = await storage.query<{ n: number }>("SELECT count(*)::int AS n FROM clicks")
    expect(rows[0]?.n, replayWith).toBe(acceptedSaves)

    server = await servers.start(env)
    const cases = loadCases()
    const results = await Promise.all(cases.map(({ steps }) => replay(server.url, steps, runId())))
    expect(results.filter((r) => r !== null)).toEqual([])
  }, 300_000)
})
