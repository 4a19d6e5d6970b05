import { FileSystem } from "@effect/platform"
import { PGlite } from "@electric-sql/pglite"
import { PGLiteSocketServer } from "@electric-sql/pglite-socket"
import { Context, Data, Effect, Layer } from "effect"

export class EmbeddedPostgresError extends Data.TaggedError("EmbeddedPostgresError")<{
  readonly message: string
  readonly cause: unknown
}> {}

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
