import { NodeContext } from "@effect/platform-node"
import { Migrator, SqlClient } from "@effect/sql"
import { PgClient, PgMigrator } from "@effect/sql-pg"
import { Effect, Layer, Option } from "effect"
import { AppConfig } from "../Config.ts"
import { EmbeddedPostgres } from "./EmbeddedPostgres.ts"
import createClicks from "./migrations/0001_create_clicks.ts"
import createPageSnapshots from "./migrations/0002_create_page_snapshots.ts"
import createWebhooks from "./migrations/0003_create_webhooks.ts"
import createExportJobs from "./migrations/0004_create_export_jobs.ts"
import createClickLogAppend from "./migrations/0005_create_click_log_append.ts"
import clickLogAppendPlainInsert from "./migrations/0006_click_log_append_plain_insert.ts"
import webhookRetryOutOfLine from "./migrations/0007_webhook_retry_out_of_line.ts"

/** The schema's history: one numbered migration per concern, run in the order of their numbers. */
const migrations = Migrator.fromRecord({
  "0001_create_clicks": createClicks,
  "0002_create_page_snapshots": createPageSnapshots,
  "0003_create_webhooks": createWebhooks,
  "0004_create_export_jobs": createExportJobs,
  "0005_create_click_log_append": createClickLogAppend,
  "0006_click_log_append_plain_insert": clickLogAppendPlainInsert,
  "0007_webhook_retry_out_of_line": webhookRetryOutOfLine,
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

/** Key of the advisory lock that serialises migrations (arbitrary, fixed: "clickclu" in ASCII). */
const migrationLock = 0x636c69636b636c75n

/**
 * Runs the migrations under a session-level advisory lock, held on a connection of its own: processes starting
 * together on a fresh database (runners in cluster mode) migrate one after another. Without it, two concurrent
 * `CREATE TABLE IF NOT EXISTS` can both pass the check and one fails on Postgres's catalog (a duplicate key).
 */
const LockedMigrations = Layer.effectDiscard(
  Effect.scoped(
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const lockHolder = yield* sql.reserve
      const key = [migrationLock.toString()]
      yield* lockHolder.executeRaw("SELECT pg_advisory_lock($1)", key)
      // Unlocked whatever happens: the connection goes back to the pool, and the lock is its session's.
      yield* PgMigrator.run({ loader: migrations }).pipe(
        Effect.ensuring(Effect.ignore(lockHolder.executeRaw("SELECT pg_advisory_unlock($1)", key))),
      )
    }),
  ),
)

/**
 * The migrations: locked on a Postgres server, which other processes may share; on the embedded database, which one
 * process holds (the DATA_DIR lock) and whose socket serves one connection at a time, run as they are.
 */
const MigrateLive = Layer.unwrapEffect(
  Effect.map(AppConfig, (config) =>
    Option.isSome(config.databaseUrl) ? LockedMigrations : PgMigrator.layer({ loader: migrations }),
  ),
)

/** The client with the schema migrated: nothing uses the database before the migrations ran. */
export const SqlLive = MigrateLive.pipe(Layer.provideMerge(ClientLive), Layer.provide(NodeContext.layer))
