import { execFile } from "node:child_process"
import { readFileSync } from "node:fs"
import { promisify } from "node:util"
import { describe, expect, it } from "@effect/vitest"
import { servedStorage } from "../support/ServedStorage.ts"
import { storageModes } from "../support/StorageModes.ts"

const run = promisify(execFile)

interface Example {
  readonly command: string
  readonly expected: ReadonlyArray<string>
}

/**
 * The README's curl examples in order: each command (with its continuation lines) and the output lines shown after
 * it, up to a blank line or the next command. A `# …` after an output line is the README's remark, not output.
 */
const readmeExamples = (markdown: string): ReadonlyArray<Example> => {
  const examples: Array<{ command: string; expected: Array<string> }> = []
  for (const block of markdown.matchAll(/```sh\n([\s\S]*?)```/g)) {
    const lines = (block[1] ?? "").split("\n")
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i] ?? ""
      if (!line.startsWith("curl ")) continue
      let command = line
      while (command.endsWith("\\")) command = `${command.slice(0, -1)} ${lines[++i] ?? ""}`
      const expected: Array<string> = []
      while (
        i + 1 < lines.length &&
        (lines[i + 1] ?? "") !== "" &&
        !(lines[i + 1] ?? "").startsWith("curl ")
      ) {
        const next = lines[++i] ?? ""
        if (next.startsWith("# ")) break
        expected.push(next.replace(/\s+# .*$/, ""))
      }
      examples.push({ command, expected })
    }
  }
  return examples
}

/** Times and dates differ from run to run: compared as placeholders. */
const normalise = (text: string) =>
  text
    .replace(/\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3})?Z/g, "<time>")
    .replace(/\d{4}-\d{2}-\d{2}/g, "<date>")

describe("the README's examples", () => {
  const embedded = storageModes()[0]
  if (embedded === undefined) throw new Error("no embedded storage mode")
  const served = servedStorage(embedded.make)

  it("answer, run in order on a fresh server, exactly what the README shows", async () => {
    const examples = readmeExamples(readFileSync(new URL("../../README.md", import.meta.url), "utf8"))
    expect(examples.length).toBeGreaterThanOrEqual(10)
    const host = new URL(served.url).host
    for (const example of examples) {
      const command = example.command.replaceAll("localhost:8000", host)
      const { stdout } = await run("bash", ["-c", command], { env: { ...process.env, ADMIN_TOKEN: "" } })
      const shown = example.expected.join("\n")
      expect(normalise(stdout.trimEnd()), example.command).toBe(normalise(shown))
    }
  })
})
