import { readFileSync } from "node:fs"
import { BaseSequencer, type TestSpecification } from "vitest/node"

/** Whether a test file starts processes of its own (servers, runners, command-line tools): seconds per start. */
const startsProcesses = (file: string) =>
  /\b(ServerProcess|RunnerProcess|spawnScript|node:child_process)\b/.test(readFileSync(file, "utf8"))

/**
 * Vitest sequencer: the files that start processes go first, each group in the base order (longest first when an
 * earlier run's timings are cached, else largest first). On a fresh clone (CI) the base order only knows file
 * sizes, and the process tests, the longest of the suite but small files, would start last and finish alone.
 */
export default class ProcessTestsFirst extends BaseSequencer {
  override async sort(files: Array<TestSpecification>): Promise<Array<TestSpecification>> {
    const base = await super.sort(files)
    const first = base.filter((spec) => startsProcesses(spec.moduleId))
    return [...first, ...base.filter((spec) => !first.includes(spec))]
  }
}
