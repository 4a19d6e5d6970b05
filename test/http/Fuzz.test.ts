import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import fc from "fast-check"
import { loadCases, replay, runId } from "../support/Cases.ts"
import { ServerProcess } from "../support/ServerProcess.ts"
import { type StorageMode, storageModes } from "../support/StorageModes.ts"

const REQUESTS = Number(process.env.FUZZ_REQUESTS ?? 10_000)
const seed = Number(process.env.FUZZ_SEED ?? Date.now() % 2 ** 31)

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
  fc.constantFrom("fuzz/1", "fuzz/2", "fuzz/3"),
  fc.string({ maxLength: 600 }),
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
const validClick = fc.record({
  page_uuid: fc.constantFrom("fuzz/1", "fuzz/2", "fuzz/3"),
  coordinates: fc.record({
    x: fc.double({ min: 0, max: 1, noNaN: true }),
    y: fc.double({ min: 0, max: 1, noNaN: true }),
  }),
  request_id: fc.option(fc.uuid(), { nil: undefined }),
})
const body = fc.oneof(
  { arbitrary: validClick.map((v) => JSON.stringify(v)), weight: 4 },
  mutatedClick.map((v) => JSON.stringify(v)),
  fc.json(),
  fc.string({ maxLength: 200 }),
  mutatedClick.map((v) => JSON.stringify(v).slice(0, -1)),
  fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b).toString("latin1")),
  fc.constant(""),
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
const headers = fc.record(
  {
    "content-type": fc.constantFrom(
      "application/json",
      "application/json",
      "application/json; charset=utf-8",
      "text/plain",
      "application/x-www-form-urlencoded",
      "multipart/form-data; boundary=x",
      "application/octet-stream",
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
const request = fc.record({
  method: fc.oneof(
    { arbitrary: fc.constant("POST"), weight: 6 },
    { arbitrary: fc.constant("GET"), weight: 2 },
    { arbitrary: fc.constantFrom("PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"), weight: 1 },
  ),
  path: fc.oneof(
    { arbitrary: fc.constantFrom(...savePaths, "/predict_cluster", "/predict_click"), weight: 6 },
    { arbitrary: fc.constantFrom(...paths), weight: 3 },
  ),
  query,
  body,
  headers,
})

type FuzzRequest = typeof request extends fc.Arbitrary<infer A> ? A : never

const send = async (url: string, r: FuzzRequest) => {
  const hasBody = r.method !== "GET" && r.method !== "HEAD"
  const response = await fetch(`${url}${r.path}${r.query}`, {
    method: r.method,
    headers: r.headers,
    ...(hasBody ? { body: r.body } : {}),
  })
  const text = await response.text()
  return { status: response.status, text }
}

describe.each(storageModes())("fuzzing every endpoint, $name storage", ({ make }) => {
  let storage: StorageMode
  let server: ServerProcess

  beforeAll(async () => {
    storage = await make()
  })
  afterAll(async () => {
    await server?.stop("SIGKILL")
    await storage?.dispose()
  })

  it(`answers ${REQUESTS} generated and mutated requests without a 5xx, storing only accepted saves`, async () => {
    server = await ServerProcess.start(storage.env)
    const requests = fc.sample(request, { numRuns: REQUESTS, seed })
    const statuses = new Map<number, number>()
    const failures: Array<string> = []
    let acceptedSaves = 0
    const keys = new Set<string>()
    let next = 0
    const worker = async () => {
      while (next < requests.length) {
        const r = requests[next++]!
        const { status, text } = await send(server.url, r).catch((e: unknown) => ({
          status: 599,
          text: String(e),
        }))
        statuses.set(status, (statuses.get(status) ?? 0) + 1)
        if (status >= 500)
          failures.push(
            `${status} ${r.method} ${r.path}${r.query} ${r.body.slice(0, 120)} → ${text.slice(0, 200)}`,
          )
        if (status === 200 && r.method === "POST" && savePaths.has(r.path)) {
          const parsed: unknown = JSON.parse(r.body)
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
    console.log(
      `fuzz (${storage.name}, seed ${seed}): ${REQUESTS} requests, statuses ${JSON.stringify(Object.fromEntries(statuses))}, ${acceptedSaves} saves accepted`,
    )
    if (failures.length > 0) console.log(failures.slice(0, 8).join("\n"))
    expect(failures.slice(0, 8)).toEqual([])
    expect(Array.from(statuses.values()).reduce((a, b) => a + b, 0)).toBe(REQUESTS)

    expect(await server.stop("SIGTERM")).toBe(0)
    const rows = await storage.query<{ n: number }>("SELECT count(*)::int AS n FROM clicks")
    expect(rows[0]?.n).toBe(acceptedSaves)

    server = await ServerProcess.start(storage.env)
    const cases = loadCases()
    const results = await Promise.all(cases.map(({ steps }) => replay(server.url, steps, runId())))
    expect(results.filter((r) => r !== null)).toEqual([])
  }, 300_000)
})
