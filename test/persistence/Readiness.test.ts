import { readdirSync } from "node:fs"
import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { Readiness } from "../../src/persistence/Readiness.ts"
import { latestMigration } from "../../src/persistence/Sql.ts"
import { storageLayer } from "../support/StorageLayer.ts"
import { storageModes } from "../support/StorageModes.ts"

/** The highest number among the migration files on disk (`0001_create_clicks.ts` → 1). */
const newestMigrationFile = () =>
  Math.max(
    ...readdirSync(new URL("../../src/persistence/migrations/", import.meta.url))
      .map((name) => /^(\d+)_.+\.ts$/.exec(name)?.[1])
      .filter((id) => id !== undefined)
      .map(Number),
  )

describe("latestMigration", () => {
  it.effect("is the newest migration file's number: every file is in the migration record", () =>
    Effect.gen(function* () {
      expect(yield* latestMigration).toBe(newestMigrationFile())
    }),
  )
})

for (const { name, make } of storageModes()) {
  /** A fresh migrated database of this mode, removed when the suite's layer closes. */
  const StorageLive = Layer.unwrapScoped(
    Effect.acquireRelease(
      Effect.promise(() => make()),
      (storage) => Effect.promise(() => storage.dispose()),
    ).pipe(
      Effect.map((storage) => storageLayer({ ...storage, env: { ...storage.env, LOG_LEVEL: "error" } })),
    ),
  )

  describe(`Readiness, ${name} storage`, () => {
    it.layer(Readiness.Default.pipe(Layer.provideMerge(StorageLive)), { timeout: 120_000 })((it) => {
      it.effect("is ready on a migrated database, and not once its newest migration is missing", () =>
        Effect.gen(function* () {
          const readiness = yield* Readiness
          const sql = yield* SqlClient.SqlClient
          const latest = yield* latestMigration
          yield* readiness.check
          yield* sql`DELETE FROM effect_sql_migrations WHERE migration_id = ${latest}`
          const error = yield* Effect.flip(readiness.check)
          expect(error).toBe(`the schema is at migration ${latest - 1}, this build needs ${latest}`)
        }),
      )
    })
  })
}
