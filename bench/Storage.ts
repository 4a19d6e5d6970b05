import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { PGlite } from "@electric-sql/pglite"
import { Effect, type Scope } from "effect"
import pg from "pg"
import { BenchError } from "./Processes.ts"

/**
 * Where a measured server keeps its clicks, made fresh for one scenario and removed after it, with a way to load
 * rows straight into it (the server stopped, for the embedded database: PGlite is one process's files).
 */
export interface Storage {
  readonly name: "embedded" | "postgres"
  /** Environment for the service. */
  readonly env: Record<string, string>
  /** Runs SQL against the database the service uses. */
  readonly exec: (sql: string, params?: ReadonlyArray<unknown>) => Effect.Effect<void, BenchError>
  /** The number in the first column of the first row a query answers (the server stopped, when embedded). */
  readonly count: (sql: string) => Effect.Effect<number, BenchError>
}

const failure = (what: string) => (cause: unknown) =>
  new BenchError({ message: `${what}: ${cause instanceof Error ? cause.message : String(cause)}` })

const firstNumber = (rows: ReadonlyArray<Record<string, unknown>>) =>
  Number(Object.values(rows[0] ?? {})[0] ?? Number.NaN)

/** A fresh directory for the embedded database, deleted afterwards. */
export const embeddedStorage: Effect.Effect<Storage, BenchError, Scope.Scope> = Effect.gen(function* () {
  const dir = yield* Effect.acquireRelease(
    Effect.tryPromise({
      try: () => mkdtemp(join(tmpdir(), "bench-data-")),
      catch: failure("cannot make a data directory"),
    }),
    (d) => Effect.promise(() => rm(d, { recursive: true, force: true })),
  )
  return {
    name: "embedded",
    env: { DATA_DIR: dir },
    exec: (sql, params = []) =>
      Effect.tryPromise({
        try: async () => {
          const db = await PGlite.create(dir)
          try {
            await db.query(sql, [...params])
          } finally {
            await db.close()
          }
        },
        catch: failure("embedded database query failed"),
      }),
    count: (sql) =>
      Effect.tryPromise({
        try: async () => {
          const db = await PGlite.create(dir)
          try {
            return firstNumber((await db.query<Record<string, unknown>>(sql)).rows)
          } finally {
            await db.close()
          }
        },
        catch: failure("embedded database query failed"),
      }),
  }
})

const withClient = <A>(url: string, use: (client: pg.Client) => Promise<A>) =>
  Effect.tryPromise({
    try: async () => {
      const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3000 })
      await client.connect()
      try {
        return await use(client)
      } finally {
        await client.end()
      }
    },
    catch: failure(`Postgres at ${url}`),
  })

/** Whether the machine's Postgres answers; the reason when it does not. */
export const postgresReachable = (adminUrl: string) =>
  withClient(adminUrl, (c) => c.query("SELECT 1")).pipe(
    Effect.as({ ok: true, reason: "" }),
    Effect.catchAll((e) => Effect.succeed({ ok: false, reason: e.message })),
  )

/** A fresh database on the machine's Postgres, dropped afterwards (connections still open are ended). */
export const postgresStorage = (adminUrl: string): Effect.Effect<Storage, BenchError, Scope.Scope> =>
  Effect.gen(function* () {
    const name = `bench_${process.pid}_${Date.now()}`
    yield* Effect.acquireRelease(
      withClient(adminUrl, (c) => c.query(`CREATE DATABASE ${name}`)),
      () =>
        withClient(adminUrl, (c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)).pipe(
          Effect.catchAll((e) => Effect.logWarning(`could not drop ${name}: ${e.message}`)),
        ),
    )
    const url = new URL(adminUrl)
    url.pathname = `/${name}`
    const databaseUrl = url.toString()
    return {
      name: "postgres",
      env: { DATABASE_URL: databaseUrl },
      exec: (sql, params = []) => Effect.asVoid(withClient(databaseUrl, (c) => c.query(sql, [...params]))),
      count: (sql) => withClient(databaseUrl, async (c) => firstNumber((await c.query(sql)).rows)),
    }
  })
