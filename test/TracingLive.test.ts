import * as http from "node:http"
import type { AddressInfo } from "node:net"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Effect, Layer } from "effect"
import { AppConfig } from "../src/Config.ts"
import { TracingLive, tracesUrl } from "../src/Tracing.ts"

/** A stand-in OTLP/HTTP collector on loopback: keeps every request it receives. */
interface Received {
  readonly path: string
  readonly body: string
}

let server: http.Server
let received: Array<Received> = []
let endpoint = ""

beforeAll(async () => {
  server = http.createServer((request, response) => {
    const chunks: Array<Buffer> = []
    request.on("data", (chunk: Buffer) => chunks.push(chunk))
    request.on("end", () => {
      if (request.method === "POST")
        received.push({ path: request.url ?? "", body: Buffer.concat(chunks).toString("utf8") })
      response.writeHead(200, { "content-type": "application/json" }).end("{}")
    })
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  const { port } = server.address() as AddressInfo
  endpoint = `http://127.0.0.1:${port}`
})
afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()))
})

/** The tracing layer as the server builds it, from the given environment. */
const tracing = (env: Record<string, string>) =>
  TracingLive.pipe(
    Layer.provide(AppConfig.Default),
    Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env))))),
  )

/** A traced service method, as the services declare them. */
const tracedWork = Effect.fn("TracingTest.work")(function* (n: number) {
  yield* Effect.sleep("1 millis")
  return n * 2
})

/**
 * Runs the traced effect with the layer, which closes (flushing its spans) before this returns; also tells whether
 * the layer replaced the tracer the effect would otherwise run with.
 */
const runTraced = (env: Record<string, string>) =>
  Effect.gen(function* () {
    received = []
    const before = yield* Effect.tracer
    const [result, during] = yield* Effect.scoped(
      Effect.zip(tracedWork(21), Effect.tracer).pipe(Effect.provide(tracing(env))),
    )
    return { result, tracerReplaced: during !== before }
  })

describe("TracingLive", () => {
  it.live("exports the spans of a traced effect to the OTLP endpoint when one is configured", () =>
    Effect.gen(function* () {
      const { result, tracerReplaced } = yield* runTraced({
        OTEL_EXPORTER_OTLP_ENDPOINT: endpoint,
        OTEL_SERVICE_NAME: "tracing-test",
      })
      expect(result).toBe(42)
      expect(tracerReplaced).toBe(true)
      const traces = received.filter((r) => r.path === "/v1/traces")
      expect(traces.length).toBeGreaterThan(0)
      const bodies = traces.map((r) => r.body).join("\n")
      expect(bodies).toContain("TracingTest.work")
      expect(bodies).toContain("tracing-test")
    }),
  )

  it.live("exports nothing when no endpoint is configured", () =>
    Effect.gen(function* () {
      const { result, tracerReplaced } = yield* runTraced({})
      expect(result).toBe(42)
      expect(tracerReplaced).toBe(false)
      expect(received).toEqual([])
    }),
  )

  it("appends the signal path to the endpoint, with or without a trailing slash", () => {
    expect(tracesUrl(new URL("http://collector:4318")).href).toBe("http://collector:4318/v1/traces")
    expect(tracesUrl(new URL("http://collector:4318/otlp/")).href).toBe(
      "http://collector:4318/otlp/v1/traces",
    )
    expect(tracesUrl(new URL("http://collector:4318/otlp")).href).toBe("http://collector:4318/otlp/v1/traces")
  })
})
