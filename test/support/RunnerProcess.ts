import type { ChildProcess } from "node:child_process"
import { once } from "node:events"
import { afterAll } from "@effect/vitest"
import { freePort, spawnScript, untilServing } from "./ServerProcess.ts"

/**
 * One runner of a cluster (cluster mode: RUNNER_ADDRESS set) as a child process on loopback, with its own HTTP port
 * and cluster socket port: for the tests where a runner must die (SIGKILL), stop (SIGTERM) or pause (SIGSTOP).
 */
export class RunnerProcess {
  private constructor(
    readonly url: string,
    readonly runnerAddress: string,
    private readonly child: ChildProcess,
    private readonly output: { text: string },
  ) {}

  /** Starts `src/main.ts` as a runner and resolves once it answers `GET /` (not yet holding its shards). */
  static async start(env: Record<string, string>): Promise<RunnerProcess> {
    const [port, socket] = [await freePort(), await freePort()]
    const runnerAddress = `127.0.0.1:${socket}`
    const output = { text: "" }
    const child = spawnScript("src/main.ts", [], {
      LOG_LEVEL: "warn",
      ...env,
      HOST: "127.0.0.1",
      PORT: String(port),
      RUNNER_ADDRESS: runnerAddress,
    })
    const collect = (d: Buffer) => {
      output.text += d.toString()
    }
    child.stdout?.on("data", collect)
    child.stderr?.on("data", collect)
    const runner = new RunnerProcess(`http://127.0.0.1:${port}`, runnerAddress, child, output)
    try {
      await untilServing(
        runner.url,
        () => child.exitCode !== null,
        () => output.text,
      )
    } catch (error) {
      child.kill("SIGKILL")
      throw error
    }
    return runner
  }

  /** Resolves once `/readyz` answers 200 (the runner holds every shard assigned to it); the wait in ms. */
  async untilReady(timeoutMs = 60_000): Promise<number> {
    const start = Date.now()
    while (Date.now() - start < timeoutMs) {
      if (this.child.exitCode !== null) throw new Error(`the runner exited:\n${this.logs}`)
      const ok = await fetch(`${this.url}/readyz`).then(
        (r) => r.ok,
        () => false,
      )
      if (ok) return Date.now() - start
      await new Promise((r) => setTimeout(r, 100))
    }
    throw new Error(`the runner was not ready within ${timeoutMs} ms:\n${this.logs}`)
  }

  get logs(): string {
    return this.output.text
  }

  get exited(): boolean {
    return this.child.exitCode !== null || this.child.signalCode !== null
  }

  /** Sends a signal without waiting (SIGSTOP, SIGCONT). */
  signal(signal: NodeJS.Signals) {
    this.child.kill(signal)
  }

  /** Sends a signal and waits for the exit; resolves to the exit code (null when killed by the signal). */
  async stop(signal: NodeJS.Signals = "SIGTERM"): Promise<number | null> {
    if (this.exited) return this.child.exitCode
    const exited = once(this.child, "exit")
    this.child.kill(signal)
    const [code] = await exited
    return code
  }
}

/** Starts runners for the enclosing `describe` and kills, after its tests, any still running (resumed first). */
export const runnerProcesses = () => {
  const running = new Set<RunnerProcess>()
  afterAll(async () => {
    for (const runner of running) {
      runner.signal("SIGCONT")
      await runner.stop("SIGKILL")
    }
  })
  return {
    start: async (env: Record<string, string>) => {
      const runner = await RunnerProcess.start(env)
      running.add(runner)
      return runner
    },
  }
}
