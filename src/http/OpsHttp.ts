import { HttpApiBuilder } from "@effect/platform"
import { Effect, Option } from "effect"
import { RunnerReadiness } from "../actors/PageSharding.ts"
import { Metrics } from "../Metrics.ts"
import { Readiness } from "../persistence/Readiness.ts"
import { Api, NotReady } from "./Api.ts"

/** Probes and the Prometheus scrape endpoint; in cluster mode /readyz also needs the runner's shards held. */
export const OpsHttpLive = HttpApiBuilder.group(Api, "ops", (handlers) =>
  Effect.gen(function* () {
    const readiness = yield* Readiness
    // Cluster mode: ready once this runner also holds every shard the runner list assigns it.
    const runner = yield* Effect.serviceOption(RunnerReadiness)
    const check = Option.match(runner, {
      onNone: () => readiness.check,
      onSome: (r) => Effect.zipRight(readiness.check, r.check),
    })
    const metrics = yield* Metrics
    return handlers
      .handle("health", () => Effect.succeed({ status: "ok" as const }))
      .handle("ready", () =>
        check.pipe(
          Effect.as({ status: "ready" as const }),
          Effect.mapError((message) => new NotReady({ message })),
        ),
      )
      .handle("metrics", () => Effect.promise(() => metrics.registry.metrics()))
  }),
)
