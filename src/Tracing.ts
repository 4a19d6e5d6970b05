import { NodeSdk } from "@effect/opentelemetry"
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http"
import { BatchSpanProcessor } from "@opentelemetry/sdk-trace-base"
import { Effect, Layer, Option } from "effect"
import { AppConfig } from "./Config.ts"

/** The traces URL of an OTLP/HTTP collector: the standard variable names the base, the signal path is appended. */
export const tracesUrl = (endpoint: URL) =>
  new URL("v1/traces", endpoint.href.endsWith("/") ? endpoint : `${endpoint.href}/`)

/**
 * Exports the service's spans (`Effect.fn` / `Effect.withSpan`) over OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT
 * is set, in batches so a request never waits for the collector; pending spans are flushed when the layer closes.
 * Without an endpoint the layer is empty: spans stay with Effect's in-memory tracer and nothing leaves the process.
 */
export const TracingLive = Layer.unwrapEffect(
  Effect.map(AppConfig, (config) =>
    Option.match(config.otlpEndpoint, {
      onNone: () => Layer.empty,
      onSome: (endpoint) =>
        NodeSdk.layer(() => ({
          resource: { serviceName: config.otelServiceName },
          spanProcessor: new BatchSpanProcessor(new OTLPTraceExporter({ url: tracesUrl(endpoint).href })),
          shutdownTimeout: config.shutdownTimeout,
        })),
    }),
  ),
)
