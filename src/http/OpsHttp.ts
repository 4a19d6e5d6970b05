import { HttpApiBuilder } from "@effect/platform"
import { Effect } from "effect"
import { Metrics } from "../Metrics.ts"
import { Readiness } from "../persistence/Readiness.ts"
import { Api, NotReady } from "./Api.ts"

/** Probes and the Prometheus scrape endpoint. */
export const OpsHttpLive = HttpApiBuilder.group(Api, "ops", (handlers) =>
  Effect.gen(function* () {
    const readiness = yield* Readiness
    const metrics = yield* Metrics
    return handlers
      .handle("health", () => Effect.succeed({ status: "ok" as const }))
      .handle("ready", () =>
        readiness.check.pipe(
          Effect.as({ status: "ready" as const }),
          Effect.mapError((message) => new NotReady({ message })),
        ),
      )
      .handle("metrics", () => Effect.promise(() => metrics.registry.metrics()))
  }),
)
