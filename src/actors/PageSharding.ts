import {
  EntityId,
  MessageStorage,
  RunnerAddress,
  RunnerStorage,
  ShardId,
  Sharding,
  ShardingConfig,
  SqlRunnerStorage,
} from "@effect/cluster"
import { NodeClusterSocket } from "@effect/platform-node"
import { Context, Duration, Effect, Equal, HashRing, Layer, Option, Schedule } from "effect"
import { AppConfig } from "../Config.ts"
import { Metrics } from "../Metrics.ts"
import { PageActorHost } from "./PageActorHost.ts"
import { entityIdOf } from "./PageEntityId.ts"
import { PageOwnership } from "./PageOwnership.ts"
import { Page } from "./PageProtocol.ts"

/** Cluster mode's settings (Config.ts). */
export type ClusterSettings = Option.Option.Value<AppConfig["cluster"]>

/**
 * The engine's configuration, every value that matters given explicitly: the engine also reads the environment,
 * where our own PORT and HOST would otherwise become its runner address.
 */
const shardingOptions = (
  cluster: ClusterSettings,
  shutdownTimeout: Duration.Duration,
): Partial<ShardingConfig.ShardingConfig["Type"]> => ({
  runnerAddress: Option.some(RunnerAddress.make(cluster.runnerAddress.host, cluster.runnerAddress.port)),
  runnerListenAddress: Option.map(cluster.listenAddress, (a) => RunnerAddress.make(a.host, a.port)),
  shardsPerGroup: cluster.shards,
  shardLockRefreshInterval: cluster.lockRefresh,
  shardLockExpiration: cluster.lockExpiration,
  refreshAssignmentsInterval: cluster.assignmentsRefresh,
  runnerHealthCheckInterval: cluster.healthCheck,
  sendRetryInterval: cluster.sendRetry,
  entityTerminationTimeout: shutdownTimeout,
})

/** Whether this runner holds the whole shard assignment the runner list gives it; fails with why not. */
export class RunnerReadiness extends Context.Tag("actors/RunnerReadiness")<
  RunnerReadiness,
  { readonly check: Effect.Effect<void, string> }
>() {}

/**
 * The cluster engine on this runner: `@effect/cluster` Sharding over a socket between runners, runners and shard
 * locks in the service's Postgres (SqlRunnerStorage: a `cluster_runners` table, advisory locks per shard), no
 * message tables (page messages are volatile: a page's state lives in the click log, not in the engine). Provides
 * which pages are ours (PageOwnership) and whether we hold our assignment (RunnerReadiness).
 */
export const PageShardingLive = (cluster: ClusterSettings) =>
  Layer.unwrapEffect(
    Effect.map(AppConfig, (config) => {
      const options = shardingOptions(cluster, config.shutdownTimeout)
      const self = RunnerAddress.make(cluster.runnerAddress.host, cluster.runnerAddress.port)
      const shards = Array.from({ length: cluster.shards }, (_, i) => ShardId.make("default", i + 1))

      const ownership = Layer.effect(
        PageOwnership,
        Effect.map(Sharding.Sharding, (sharding) => {
          // A page's shard is fixed for the process's life (the shard count is): asked of the engine once per
          // page and remembered, since the fast path asks on every request (the engine's id encoding and string
          // hash were ~5 % of a local predict's CPU). Bounded by dropping the lot when full.
          const shardOfPage = new Map<string, ShardId.ShardId>()
          return {
            isLocal: (page: string) => {
              let shard = shardOfPage.get(page)
              if (shard === undefined) {
                const id = EntityId.make(entityIdOf(page))
                shard = sharding.getShardId(id, Page.getShardGroup(id))
                if (shardOfPage.size >= config.maxActivePages) shardOfPage.clear()
                shardOfPage.set(page, shard)
              }
              return sharding.hasShardId(shard)
            },
          }
        }),
      )

      const readiness = Layer.effect(
        RunnerReadiness,
        Effect.gen(function* () {
          const sharding = yield* Sharding.Sharding
          const runners = yield* RunnerStorage.RunnerStorage
          return {
            // The same ring the engine builds from the healthy runners (Sharding.ts), asked which shards are ours.
            check: Effect.gen(function* () {
              const listed = yield* Effect.mapError(
                runners.getRunners,
                (e) => `the runner list is unavailable: ${e.message}`,
              )
              if (!listed.some(([runner]) => Equal.equals(runner.address, self)))
                return yield* Effect.fail("this runner is not registered yet")
              const ring = HashRing.make<RunnerAddress.RunnerAddress>()
              for (const [runner, healthy] of listed)
                if (healthy && runner.groups.includes("default"))
                  HashRing.add(ring, runner.address, { weight: runner.weight })
              const owners = HashRing.getShards(ring, cluster.shards) ?? []
              let mine = 0
              let missing = 0
              owners.forEach((owner, i) => {
                if (!Equal.equals(owner, self)) return
                mine++
                const shard = shards[i]
                if (shard !== undefined && !sharding.hasShardId(shard)) missing++
              })
              if (mine === 0) return yield* Effect.fail("no shard is assigned to this runner yet")
              if (missing > 0)
                return yield* Effect.fail(`waiting for the locks of ${missing} of its ${mine} shards`)
            }),
          }
        }),
      )

      // Runners started together on a fresh database race to create the runner table (a duplicate type error for
      // the losers): try again, the table is there by then.
      const runnerStorage = SqlRunnerStorage.layer.pipe(
        Layer.provide(ShardingConfig.layer(options)),
        Layer.retry(Schedule.intersect(Schedule.recurs(5), Schedule.spaced("200 millis"))),
      )
      const engine = NodeClusterSocket.layer({ storage: "byo", shardingConfig: options }).pipe(
        Layer.provide(MessageStorage.layerNoop),
        Layer.provideMerge(runnerStorage),
      )
      return Layer.mergeAll(ownership, readiness).pipe(Layer.provideMerge(engine))
    }),
  )

/**
 * Lets go of the pages whose shard this runner no longer holds (it moved to another runner): each is dropped from
 * the host and snapshotted once what it accepted is committed, so a page is served from one state at a time, and if
 * its shard comes back it is recovered afresh. Checks the held shards every CLUSTER_ASSIGNMENTS_REFRESH / 5 (the
 * host also declines a page it no longer owns on every request, so this only frees memory and snapshots), and
 * reports the shards and the engine's entities to /metrics.
 */
export const ShardReleaseLive = Layer.scopedDiscard(
  Effect.gen(function* () {
    const sharding = yield* Sharding.Sharding
    const ownership = yield* PageOwnership
    const host = yield* PageActorHost
    const metrics = yield* Metrics
    const config = yield* AppConfig
    const count = Option.match(config.cluster, { onNone: () => 0, onSome: (c) => c.shards })
    const shards = Array.from({ length: count }, (_, i) => ShardId.make("default", i + 1))
    let held = new Set<number>()
    let entities = 0
    metrics.observeCluster({ shardsOwned: () => held.size, entitiesActive: () => entities })

    const check = Effect.gen(function* () {
      const now = new Set<number>()
      shards.forEach((shard, i) => {
        if (sharding.hasShardId(shard)) now.add(i)
      })
      const lost = [...held].filter((i) => !now.has(i)).length
      held = now
      entities = yield* sharding.activeEntityCount
      if (lost === 0) return
      const released = yield* host.release(ownership.isLocal)
      metrics.pagesReleased.inc(released)
      yield* Effect.logInfo(`${lost} shards moved away: ${released} pages released`)
    })
    const every = Option.match(config.cluster, {
      onNone: () => Duration.seconds(1),
      onSome: (c) => Duration.max(Duration.millis(20), Duration.unsafeDivide(c.assignmentsRefresh, 5)),
    })
    yield* Effect.forkScoped(Effect.repeat(check, Schedule.spaced(every)))
  }),
)
