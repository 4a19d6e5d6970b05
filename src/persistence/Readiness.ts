import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import { AppConfig } from "../Config.ts"
import { withDeadline } from "./DatabaseDeadline.ts"
import { latestMigration } from "./Sql.ts"

/** Whether the database can serve the service now: reachable, and migrated to the schema this build expects. */
export class Readiness extends Effect.Service<Readiness>()("persistence/Readiness", {
  effect: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const config = yield* AppConfig
    const latest = yield* latestMigration
    return {
      /** Succeeds when ready; fails with the reason otherwise. */
      check: sql<{ id: number | null }>`SELECT max(migration_id)::int AS id FROM effect_sql_migrations`.pipe(
        withDeadline(config.dbTimeout),
        Effect.mapError((e) =>
          e._tag === "TimeoutException"
            ? "the database did not answer in time (DB_TIMEOUT)"
            : `the database is unreachable: ${e.message}`,
        ),
        Effect.flatMap(([row]) =>
          (row?.id ?? 0) >= latest
            ? Effect.void
            : Effect.fail(`the schema is at migration ${row?.id ?? 0}, this build needs ${latest}`),
        ),
        Effect.withSpan("Readiness.check"),
      ),
    }
  }),
}) {}
