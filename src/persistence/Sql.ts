import { NodeContext } from "@effect/platform-node"
import { Migrator } from "@effect/sql"
import { PgClient, PgMigrator } from "@effect/sql-pg"
import { Effect, Layer, Option } from "effect"
import { AppConfig } from "../Config.ts"
import { EmbeddedPostgres } from "./EmbeddedPostgres.ts"
import createClicks from "./migrations/0001_create_clicks.ts"
import createPageSnapshots from "./migrations/0002_create_page_snapshots.ts"
import createWebhooks from "./migrations/0003_create_webhooks.ts"
import createExportJobs from "./migrations/0004_create_export_jobs.ts"

/** The schema's history: one numbered migration per concern, run in the order of their numbers. */
const migrations = Migrator.fromRecord({
  "0001_create_clicks": createClicks,
  "0002_create_page_snapshots": createPageSnapshots,
  "0003_create_webhooks": createWebhooks,
  "0004_create_export_jobs": createExportJobs,
})

/** Id of the newest migration (readiness requires the database to have it), read from the record as the migrator reads it. */
export const latestMigration = Effect.map(migrations, (all) => Math.max(0, ...all.map(([id]) => id)))

/** The Postgres client: `DATABASE_URL` when set, else the embedded database under `DATA_DIR`. */
const ClientLive = Layer.unwrapEffect(
  Effect.gen(function* () {
    const config = yield* AppConfig
    const common = { connectTimeout: config.dbTimeout, applicationName: "click-clusters" } as const
    if (Option.isSome(config.databaseUrl)) {
      yield* Effect.logInfo("storage: Postgres at DATABASE_URL")
      return PgClient.layer({ ...common, url: config.databaseUrl.value, maxConnections: config.dbPoolSize })
    }
    yield* Effect.logInfo(`storage: embedded Postgres (PGlite) in ${config.dataDir}`)
    return Layer.unwrapEffect(
      Effect.map(EmbeddedPostgres, ({ host, port }) =>
        PgClient.layer({
          ...common,
          host,
          port,
          database: "postgres",
          username: "postgres",
          maxConnections: EmbeddedPostgres.maxConnections,
        }),
      ),
    ).pipe(Layer.provide(EmbeddedPostgres.layer(config.dataDir)))
  }),
)

/** The client with the schema migrated: nothing uses the database before the migrations ran. */
export const SqlLive = PgMigrator.layer({ loader: migrations }).pipe(
  Layer.provideMerge(ClientLive),
  Layer.provide(NodeContext.layer),
)
