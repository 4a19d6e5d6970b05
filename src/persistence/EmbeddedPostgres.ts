import { FileSystem } from "@effect/platform"
import { PGlite } from "@electric-sql/pglite"
import { PGLiteSocketServer } from "@electric-sql/pglite-socket"
import { Context, Data, Effect, Layer } from "effect"

export class EmbeddedPostgresError extends Data.TaggedError("EmbeddedPostgresError")<{
  readonly message: string
  readonly cause: unknown
}> {}

const isAlive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    // EPERM: the process exists but belongs to someone else
    return error instanceof Error && "code" in error && error.code === "EPERM"
  }
}

/**
 * PGlite does not notice a second process opening its files, and two would damage the database: the first opener
 * writes its pid to a lock file and removes it when it closes. A lock left by a killed process is taken over.
 */
const lockDataDir = (fs: FileSystem.FileSystem, dataDir: string) => {
  const lockFile = `${dataDir}/click-clusters.pid`
  const mine = String(process.pid)
  const take = fs.writeFileString(lockFile, mine)
  return Effect.acquireRelease(
    Effect.gen(function* () {
      const holder = yield* fs.readFileString(lockFile).pipe(Effect.option)
      if (holder._tag === "Some") {
        const pid = Number(holder.value.trim())
        if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && isAlive(pid)) {
          return yield* new EmbeddedPostgresError({
            message: `the embedded database in ${dataDir} is in use by process ${pid} (stop it first; if no such process of ours runs, delete ${lockFile})`,
            cause: undefined,
          })
        }
      }
      yield* take
    }).pipe(
      Effect.mapError((e) =>
        e._tag === "EmbeddedPostgresError"
          ? e
          : new EmbeddedPostgresError({ message: `cannot lock ${lockFile}`, cause: e }),
      ),
    ),
    () =>
      fs.readFileString(lockFile).pipe(
        Effect.flatMap((holder) => (holder.trim() === mine ? fs.remove(lockFile) : Effect.void)),
        Effect.ignore,
      ),
  )
}

/**
 * PGlite (Postgres compiled to WebAssembly) kept under a directory and served in-process on a loopback port,
 * so the same Postgres client and the same SQL serve both storage modes.
 */
export class EmbeddedPostgres extends Context.Tag("persistence/EmbeddedPostgres")<
  EmbeddedPostgres,
  { readonly host: string; readonly port: number; readonly dataDir: string }
>() {
  /**
   * PGlite is one Postgres session: the socket server queues every client's protocol messages into it, so two
   * clients could interleave the parts of their extended-protocol queries. One connection keeps them whole.
   */
  static readonly maxConnections = 1

  static readonly layer = (dataDir: string) =>
    Layer.scoped(
      EmbeddedPostgres,
      Effect.gen(function* () {
        const fs = yield* FileSystem.FileSystem
        yield* fs.makeDirectory(dataDir, { recursive: true })
        yield* lockDataDir(fs, dataDir)
        const db = yield* Effect.acquireRelease(
          Effect.tryPromise({
            try: () => PGlite.create(dataDir),
            catch: (cause) =>
              new EmbeddedPostgresError({
                message: `cannot open the embedded database in ${dataDir}`,
                cause,
              }),
          }),
          (db) => Effect.promise(() => db.close()).pipe(Effect.ignore),
        )
        const server = new PGLiteSocketServer({
          db,
          host: "127.0.0.1",
          port: 0,
          maxConnections: EmbeddedPostgres.maxConnections,
        })
        yield* Effect.acquireRelease(
          Effect.tryPromise({
            try: () => server.start(),
            catch: (cause) =>
              new EmbeddedPostgresError({ message: "cannot serve the embedded database", cause }),
          }),
          () => Effect.promise(() => server.stop()).pipe(Effect.ignore),
        )
        const [host = "127.0.0.1", port = "0"] = server.getServerConn().split(":")
        return { host, port: Number(port), dataDir }
      }),
    )
}
