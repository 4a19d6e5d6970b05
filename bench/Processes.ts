import { type ChildProcess, spawn } from "node:child_process"
import { existsSync, readFileSync } from "node:fs"
import { copyFile, cp, readFile, rm } from "node:fs/promises"
import { createServer } from "node:net"
import { fileURLToPath } from "node:url"
import { Data, Effect, type Scope } from "effect"

export class BenchError extends Data.TaggedError("BenchError")<{ readonly message: string }> {}

/** The repository's root, whatever the working directory. */
export const root = fileURLToPath(new URL("..", import.meta.url))

/** Where the harness builds the service: apart from `dist/`, which other work may be rebuilding meanwhile. */
export const buildDir = `${root}bench-results/dist`

/**
 * The children get a clean environment plus what the scenario sets: a `DATABASE_URL` or `DATA_DIR` of the
 * caller's shell must not turn an embedded-database measurement into a Postgres one.
 */
const baseEnv = (): Record<string, string> => {
  const env: Record<string, string> = {}
  for (const name of ["PATH", "HOME", "TMPDIR", "LANG"]) {
    const value = process.env[name]
    if (value !== undefined) env[name] = value
  }
  return env
}

interface Exited {
  readonly code: number | null
  readonly output: string
}

/** Runs a command to its end and answers its exit code and output. */
const runCommand = (command: string, args: ReadonlyArray<string>) =>
  Effect.async<Exited>((resume) => {
    const child = spawn(command, args, { cwd: root, env: baseEnv(), stdio: ["ignore", "pipe", "pipe"] })
    let output = ""
    child.stdout.on("data", (d: Buffer) => {
      output += d.toString()
    })
    child.stderr.on("data", (d: Buffer) => {
      output += d.toString()
    })
    child.on("close", (code) => resume(Effect.succeed({ code, output })))
    return Effect.sync(() => child.kill("SIGKILL"))
  })

/**
 * Compiles the service with `tsc` into `bench-results/dist` (esbuild bundles break `ws`, see DESIGN.md). Type
 * errors elsewhere in the tree (someone's work in progress) do not stop tsc from emitting: they are reported as a
 * warning and the run goes on, since the harness measures whatever the tree does.
 */
export const buildService = Effect.gen(function* () {
  yield* Effect.promise(() => rm(buildDir, { recursive: true, force: true }))
  const started = performance.now()
  const tsc = `${root}node_modules/typescript/bin/tsc`
  const result = yield* runCommand(process.execPath, [tsc, "-p", "tsconfig.build.json", "--outDir", buildDir])
  if (!existsSync(`${buildDir}/main.js`))
    return yield* new BenchError({ message: `the build emitted no main.js:\n${result.output}` })
  // The service reads its version from the package.json beside its build directory (dist/../package.json).
  yield* Effect.promise(() => copyFile(`${root}package.json`, `${buildDir}/../package.json`))
  // The browser files (tracker.js, map.html) are read from beside the compiled server, as `npm run build` copies them.
  yield* Effect.promise(() => cp(`${root}src/http/browser`, `${buildDir}/http/browser`, { recursive: true }))
  const seconds = ((performance.now() - started) / 1000).toFixed(1)
  if (result.code !== 0) {
    yield* Effect.logWarning(`tsc reported errors (emitted anyway):\n${result.output.slice(0, 2000)}`)
    return { seconds, typeErrors: true }
  }
  return { seconds, typeErrors: false }
})

/** A child process the harness started, stopped when its scope closes. */
export interface Child {
  readonly pid: number
  readonly url: string
  readonly logs: () => string
  /** Resident set size now, from /proc (Linux). */
  readonly rssBytes: Effect.Effect<number, BenchError>
  readonly signal: (signal: NodeJS.Signals) => void
  /** Stops it now (SIGTERM, SIGKILL after a grace period); closing the scope then does nothing more. */
  readonly stop: Effect.Effect<void>
}

const stopChild = (child: ChildProcess) =>
  Effect.async<void>((resume) => {
    if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
    const kill = setTimeout(() => child.kill("SIGKILL"), 20_000)
    child.once("exit", () => {
      clearTimeout(kill)
      resume(Effect.void)
    })
    child.kill("SIGTERM")
  })

const readRss = (pid: number) =>
  Effect.tryPromise({
    try: () => readFile(`/proc/${pid}/status`, "utf8"),
    catch: () => new BenchError({ message: `cannot read /proc/${pid}/status` }),
  }).pipe(
    Effect.flatMap((status) => {
      const match = /^VmRSS:\s+(\d+) kB$/m.exec(status)
      return match?.[1] === undefined
        ? new BenchError({ message: "no VmRSS line in /proc status" })
        : Effect.succeed(Number(match[1]) * 1024)
    }),
  )

/** Polls `GET /` until it answers 200 (or the child exits, or a minute passes). */
const waitUntilReady = (child: ChildProcess, url: string, logs: () => string) =>
  Effect.gen(function* () {
    const deadline = Date.now() + 120_000
    while (Date.now() < deadline) {
      if (child.exitCode !== null)
        return yield* new BenchError({ message: `process exited with ${child.exitCode}:\n${logs()}` })
      const ok = yield* Effect.promise(() =>
        fetch(`${url}/`).then(
          (r) => r.ok,
          () => false,
        ),
      )
      if (ok) return
      yield* Effect.sleep("100 millis")
    }
    return yield* new BenchError({ message: `no answer on ${url}/ within 120 s:\n${logs()}` })
  })

const startChild = (
  args: ReadonlyArray<string>,
  env: Record<string, string>,
  port: number,
): Effect.Effect<Child, BenchError, Scope.Scope> =>
  Effect.gen(function* () {
    let output = ""
    const child = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const c = spawn(process.execPath, args, {
          cwd: root,
          env: { ...baseEnv(), ...env },
          stdio: ["ignore", "pipe", "pipe"],
        })
        const keep = (d: Buffer) => {
          // The tail is what explains a crash; a long run must not keep every log line.
          output = (output + d.toString()).slice(-20_000)
        }
        c.stdout?.on("data", keep)
        c.stderr?.on("data", keep)
        return c
      }),
      stopChild,
    )
    const logs = () => output
    const url = `http://127.0.0.1:${port}`
    yield* waitUntilReady(child, url, logs)
    const pid = child.pid ?? 0
    return {
      pid,
      url,
      logs,
      rssBytes: readRss(pid).pipe(
        Effect.mapError(
          (e) =>
            new BenchError({
              message: `${e.message} (exit code ${child.exitCode}, signal ${child.signalCode}):\n${logs()}`,
            }),
        ),
      ),
      signal: (signal: NodeJS.Signals) => child.kill(signal),
      stop: stopChild(child),
    }
  })

/** A port nobody listens on right now. */
export const freePort = Effect.async<number>((resume) => {
  const server = createServer()
  server.listen(0, "127.0.0.1", () => {
    const address = server.address()
    const port = typeof address === "object" && address !== null ? address.port : 0
    server.close(() => resume(Effect.succeed(port)))
  })
})

/**
 * The V8 flags the service runs with, as `npm start` gives them (package.json; the Dockerfile sets the same in
 * NODE_OPTIONS): measured as it is run.
 */
const serviceV8Flags: ReadonlyArray<string> = (
  JSON.parse(readFileSync(`${root}package.json`, "utf8")) as { scripts: { start: string } }
).scripts.start
  .split(" ")
  .filter((word) => /^--max-[a-z-]+-size=/.test(word))

/**
 * The built service as a child process on its own port, with LOG_LEVEL=warn and the given environment, run with
 * the service's V8 flags. `nodeArgs` go before the script (the memory script uses them to let a signal trigger a
 * garbage collection).
 */
export const startService = (env: Record<string, string>, nodeArgs: ReadonlyArray<string> = []) =>
  Effect.flatMap(freePort, (port) =>
    startChild(
      [...serviceV8Flags, ...nodeArgs, `${buildDir}/main.js`],
      { LOG_LEVEL: "warn", ...env, HOST: "127.0.0.1", PORT: String(port) },
      port,
    ),
  )

/** The raw `node:http` ceiling (bench/rawServer.ts) as a child process. */
export const startRawServer = Effect.flatMap(freePort, (port) =>
  startChild(["--import", "tsx", `${root}bench/rawServer.ts`, String(port)], {}, port),
)
