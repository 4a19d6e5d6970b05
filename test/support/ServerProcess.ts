import { type ChildProcess, spawn } from "node:child_process"
import { once } from "node:events"
import { createServer } from "node:net"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("../..", import.meta.url))

/**
 * The test runner's environment without the service's own settings: a server gets exactly the storage (and the
 * rest) its test gives it, never the DATABASE_URL the suite itself was started with.
 */
const inherited = () => {
  const env = { ...process.env }
  for (const name of ["DATABASE_URL", "DATA_DIR", "PORT", "HOST", "LOG_LEVEL", "ADMIN_TOKEN"])
    delete env[name]
  return env
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

/** The real service as a child process, on its own port, with the environment the test gives it. */
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
    const child = spawn(process.execPath, ["--import", "tsx", "src/main.ts"], {
      cwd: root,
      env: { ...inherited(), LOG_LEVEL: "warn", ...env, HOST: "127.0.0.1", PORT: String(listen) },
      stdio: ["ignore", "pipe", "pipe"],
    })
    child.stdout?.on("data", (d: Buffer) => {
      output.text += d.toString()
    })
    child.stderr?.on("data", (d: Buffer) => {
      output.text += d.toString()
    })
    const server = new ServerProcess(`http://127.0.0.1:${listen}`, child, output)
    const deadline = Date.now() + 60_000
    while (Date.now() < deadline) {
      if (child.exitCode !== null) throw new Error(`server exited with ${child.exitCode}:\n${output.text}`)
      try {
        const response = await fetch(`${server.url}/`)
        if (response.ok) return server
      } catch {
        // not listening yet
      }
      await new Promise((r) => setTimeout(r, 100))
    }
    child.kill("SIGKILL")
    throw new Error(`server did not start within 60 s:\n${output.text}`)
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
