import { FileSystem } from "@effect/platform"
import { PGlite } from "@electric-sql/pglite"
import { PGLiteSocketServer } from "@electric-sql/pglite-socket"
import { Context, Data, Effect, Layer, Option } from "effect"

export class EmbeddedPostgresError extends Data.TaggedError("EmbeddedPostgresError")<{
  readonly message: string
  readonly cause: unknown
}> {}

/** What Linux says of a process in `/proc/<pid>/stat`; none on other systems or when no such process exists. */
interface ProcStat {
  /** `R`, `S`, `D`, …; `Z` (zombie) and `X` (dead) are processes that have exited. */
  readonly state: string
  /** The kernel's PF_EXITING flag: the process is inside exit (after a SIGKILL, say) and runs no code of its own. */
  readonly exiting: boolean
  /** Clock ticks since boot at which it started: with the pid, names one process even once pids are recycled. */
  readonly startTime: string
}

const PF_EXITING = 0x4

/** The process name (field 2) is in parentheses and may hold spaces and ')': the other fields follow the last ')'. */
export const parseProcStat = (text: string): Option.Option<ProcStat> => {
  // fields from 3 (state) on: field n is at n - 3
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ")
  const state = fields[0]
  const flags = Number(fields[6])
  const startTime = fields[19]
  return state === undefined || startTime === undefined || !Number.isInteger(flags)
    ? Option.none()
    : Option.some({ state, exiting: (flags & PF_EXITING) !== 0, startTime })
}

const procStat = (fs: FileSystem.FileSystem, pid: number) =>
  fs.readFileString(`/proc/${pid}/stat`).pipe(Effect.option, Effect.map(Option.flatMap(parseProcStat)))

const signalZero = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    // EPERM: the process exists but belongs to someone else
    return error instanceof Error && "code" in error && error.code === "EPERM"
  }
}

/**
 * Whether the process that wrote a lock could still touch the database. `kill(pid, 0)` alone is not enough: a
 * killed process its parent has not reaped yet (a zombie) still answers it, so a restart the instant after a
 * SIGKILL was refused. On Linux `/proc/<pid>/stat` tells a zombie, or a process already inside exit, from a live
 * one, and its start time tells a recycled pid (some unrelated process) from the writer. An OS file lock the kernel
 * drops with its holder would do the same, but Node has no flock and the native addons for it need a compiler in
 * the image; the lock file only has to work where the service runs. Elsewhere (no /proc) `kill(pid, 0)` decides.
 */
export const isHolderAlive = Effect.fn("EmbeddedPostgres.isHolderAlive")(function* (
  fs: FileSystem.FileSystem,
  pid: number,
  startTime: Option.Option<string>,
) {
  const procExists = yield* fs.exists("/proc/self/stat").pipe(Effect.orElseSucceed(() => false))
  if (!procExists) return signalZero(pid)
  const stat = yield* procStat(fs, pid)
  if (Option.isNone(stat)) return false
  const { state, exiting } = stat.value
  if (state === "Z" || state === "X" || exiting) return false
  return Option.match(startTime, { onNone: () => true, onSome: (t) => t === stat.value.startTime })
})

/** The lock file holds `<pid> <start time>` (the start time only where /proc tells it). */
const parseHolder = (text: string) => {
  const [pid = "", startTime] = text.trim().split(/\s+/)
  return { pid: Number(pid), startTime: Option.fromNullable(startTime) }
}

/**
 * PGlite does not notice a second process opening its files, and two would damage the database: the first opener
 * writes its pid to a lock file and removes it when it closes. A lock left by a process that is gone is taken over.
 */
const lockDataDir = (fs: FileSystem.FileSystem, dataDir: string) => {
  const lockFile = `${dataDir}/click-clusters.pid`
  return Effect.acquireRelease(
    Effect.gen(function* () {
      const self = yield* procStat(fs, process.pid)
      const mine = Option.match(self, {
        onNone: () => String(process.pid),
        onSome: ({ startTime }) => `${process.pid} ${startTime}`,
      })
      const holder = yield* fs.readFileString(lockFile).pipe(Effect.option)
      if (holder._tag === "Some") {
        const { pid, startTime } = parseHolder(holder.value)
        if (
          Number.isInteger(pid) &&
          pid > 0 &&
          pid !== process.pid &&
          (yield* isHolderAlive(fs, pid, startTime))
        ) {
          return yield* new EmbeddedPostgresError({
            message: `the embedded database in ${dataDir} is in use by process ${pid} (stop it first; if no such process of ours runs, delete ${lockFile})`,
            cause: undefined,
          })
        }
        yield* fs.remove(lockFile, { force: true })
      }
      // Created exclusively: of two processes starting at the same moment, one gets the lock, the other an error.
      yield* fs.writeFileString(lockFile, mine, { flag: "wx" }).pipe(
        Effect.mapError((error) =>
          error._tag === "SystemError" && error.reason === "AlreadyExists"
            ? new EmbeddedPostgresError({
                message: `the embedded database in ${dataDir} is being opened by another process`,
                cause: error,
              })
            : error,
        ),
      )
      return mine
    }).pipe(
      Effect.mapError((e) =>
        e._tag === "EmbeddedPostgresError"
          ? e
          : new EmbeddedPostgresError({ message: `cannot lock ${lockFile}`, cause: e }),
      ),
    ),
    (mine) =>
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
      }).pipe(Effect.withSpan("EmbeddedPostgres.open", { attributes: { dataDir } })),
    )
}
