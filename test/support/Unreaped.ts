import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import { once } from "node:events"
import { readFileSync } from "node:fs"
import { afterAll } from "@effect/vitest"
import { root } from "./ServerProcess.ts"

/** The process state as `ps` reports it (`Z` for a zombie), or "" once no such process exists. */
export const psState = (pid: number) => {
  try {
    return execFileSync("ps", ["-o", "stat=", "-p", String(pid)])
      .toString()
      .trim()
  } catch {
    return ""
  }
}

export const waitFor = async (what: string, ok: () => boolean) => {
  const deadline = Date.now() + 30_000
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

/**
 * Runs `command` under a parent that never reaps its children (a shell that execs `sleep`): once killed, the
 * command's process stays a zombie for as long as that parent lives. Resolves to the command's pid.
 */
export const underNonReapingParent = async (
  command: string,
  args: ReadonlyArray<string>,
  env = process.env,
) => {
  const parent = spawn("sh", ["-c", '"$@" & echo $!; exec sleep 600', "sh", command, ...args], {
    cwd: root,
    env,
    stdio: ["ignore", "pipe", "pipe"],
  })
  const output = { text: "" }
  parent.stderr?.on("data", (d: Buffer) => {
    output.text += d.toString()
  })
  const [first] = await once(parent.stdout!, "data")
  const pid = Number(String(first).split("\n")[0])
  parent.stdout?.on("data", (d: Buffer) => {
    output.text += d.toString()
  })
  // Until the shell has become `sleep`, it would reap its child itself (the shell waits for finished jobs): a
  // child killed before then leaves no zombie. On a busy machine the shell can be that slow.
  await waitFor("the parent to become sleep", () => {
    try {
      return readFileSync(`/proc/${parent.pid}/comm`, "utf8").trim() === "sleep"
    } catch {
      return false
    }
  })
  return { pid, parent, output }
}

/**
 * Registers, in the enclosing file or `describe`, the end of the non-reaping parents its tests start: their
 * zombies go to init with them.
 */
export const nonReapingParents = () => {
  const parents: Array<ChildProcess> = []
  afterAll(() => {
    for (const p of parents) p.kill("SIGKILL")
  })
  return parents
}
