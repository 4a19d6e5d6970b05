import { type ChildProcess, spawn } from "node:child_process"
import { once } from "node:events"
import { createServer } from "node:net"
import { fileURLToPath } from "node:url"
import { afterAll } from "@effect/vitest"
import { inject } from "vitest"

/** The repository's root: where `src/…` scripts are run from. */
export const root = fileURLToPath(new URL("../..", import.meta.url))

/**
 * The test runner's environment without the service's own settings: a process gets exactly the storage (and the
 * rest) its test gives it, never the DATABASE_URL the suite itself was started with.
 */
export const inheritedEnv = () => {
  const env = { ...process.env }
  for (const name of ["DATABASE_URL", "DATA_DIR", "PORT", "HOST", "LOG_LEVEL", "ADMIN_TOKEN"])
    delete env[name]
  return env
}

/**
 * Runs `src/<script>` with the inherited environment plus `env`: this run's bundle of it (ServerBundle.ts) where
 * there is one, else under tsx as `npm run …` would.
 */
export const spawnScript = (
  script: string,
  args: ReadonlyArray<string>,
  env: Record<string, string>,
  stdio: "pipe" | "ignore" = "pipe",
) =>
  spawn(process.execPath, [...scriptArgs(script), ...args], {
    cwd: root,
    env: { ...inheritedEnv(), ...env },
    stdio: ["ignore", stdio, "pipe"],
  })

/** The node arguments that run `script` (`src/…`). */
export const scriptArgs = (script: string): ReadonlyArray<string> => {
  const bundle = inject("serverBundles")?.[script]
  return bundle === undefined ? ["--import", "tsx", script] : [bundle]
}

/** A port nobody listens on right now. */
export const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })

/**
 * Waits until the server at `url` answers `GET /` with 200; fails with `output()` once `exited()` says the process
 * is gone or 60 s have passed.
 */
export const untilServing = async (url: string, exited: () => boolean, output: () => string) => {
  const deadline = Date.now() + 60_000
  while (Date.now() < deadline) {
    if (exited()) throw new Error(`the server exited:\n${output()}`)
    const ok = await fetch(`${url}/`).then(
      (response) => response.ok,
      () => false, // not listening yet
    )
    if (ok) return
    await new Promise((r) => setTimeout(r, 100))
  }
  throw new Error(`the server did not start within 60 s:\n${output()}`)
}

/**
 * The real service as a child process, on its own port, with the environment the test gives it: for the tests
 * where a process must die (SIGKILL, SIGTERM, a lock held by another process). Everything else serves the service
 * in-process (InProcessServer), which costs no process start.
 */
export class ServerProcess {
  private constructor(
    readonly url: string,
    private readonly child: ChildProcess,
    private readonly output: { text: string },
  ) {}

  /** Starts `src/main.ts` and resolves once it answers `GET /`. */
  static async start(env: Record<string, string>, port?: number): Promise<ServerProcess> {
    const listen = port ?? (await freePort())
    const output = { text: "" }
    const child = spawnScript("src/main.ts", [], {
      LOG_LEVEL: "warn",
      ...env,
      HOST: "127.0.0.1",
      PORT: String(listen),
    })
    const collect = (d: Buffer) => {
      output.text += d.toString()
    }
    child.stdout?.on("data", collect)
    child.stderr?.on("data", collect)
    const server = new ServerProcess(`http://127.0.0.1:${listen}`, child, output)
    try {
      await untilServing(
        server.url,
        () => child.exitCode !== null,
        () => output.text,
      )
    } catch (error) {
      child.kill("SIGKILL")
      throw error
    }
    return server
  }

  /** What the process printed so far. */
  get logs(): string {
    return this.output.text
  }

  /** Sends a signal and waits for the exit; resolves to the exit code (null when killed by the signal). */
  async stop(signal: NodeJS.Signals = "SIGTERM"): Promise<number | null> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return this.child.exitCode
    const exited = once(this.child, "exit")
    this.child.kill(signal)
    const [code] = await exited
    return code
  }
}

/**
 * Starts server processes for the enclosing `describe` and kills, after its tests, any a test left running (a
 * failed test among them). Registered after the storage it uses, it runs before that storage is disposed.
 */
export const serverProcesses = () => {
  const running = new Set<ServerProcess>()
  afterAll(async () => {
    for (const server of running) await server.stop("SIGKILL")
  })
  return {
    start: async (env: Record<string, string>) => {
      const server = await ServerProcess.start(env)
      running.add(server)
      return server
    },
  }
}
