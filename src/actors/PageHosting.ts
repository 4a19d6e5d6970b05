import { Effect, Layer, Option } from "effect"
import { AppConfig } from "../Config.ts"
import { PageActorHost } from "./PageActorHost.ts"
import { PageBehaviour } from "./PageBehaviour.ts"
import { PageEntityOnHostLive } from "./PageEntityOnHost.ts"
import { PageRouter } from "./PageRouter.ts"
import { type ClusterSettings, PageShardingLive, ShardReleaseLive } from "./PageSharding.ts"

const HostLive = PageActorHost.Default.pipe(Layer.provide(PageBehaviour.Default))

/** One process: every page is served here; the router is the host. */
const SingleProcessLive = PageRouter.Default.pipe(Layer.provideMerge(HostLive))

/**
 * Cluster mode: this runner's host serves the pages of the shards it holds (asking the engine, PageOwnership), the
 * router forwards the others to their owners, the engine delivers other runners' forwards to the host through the
 * page entity, and pages whose shard moves away are let go.
 */
const ClusterLive = (cluster: ClusterSettings) =>
  Layer.mergeAll(PageRouter.Default, PageEntityOnHostLive, ShardReleaseLive).pipe(
    Layer.provideMerge(HostLive),
    Layer.provideMerge(PageShardingLive(cluster)),
  )

type Hosting = Layer.Layer<
  PageActorHost | PageRouter,
  Layer.Layer.Error<ReturnType<typeof ClusterLive>>,
  Layer.Layer.Context<ReturnType<typeof ClusterLive>>
>

/** Where pages are served: this process alone, or as one runner of a cluster when RUNNER_ADDRESS is set. */
export const PageHostingLive = Layer.unwrapEffect(
  Effect.map(AppConfig, (config) =>
    Option.match(config.cluster, {
      onNone: (): Hosting => SingleProcessLive,
      onSome: (cluster): Hosting => ClusterLive(cluster),
    }),
  ),
)
