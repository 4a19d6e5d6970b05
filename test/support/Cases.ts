import { readdirSync, readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { isDeepStrictEqual } from "node:util"

/** One step of a trackers' acceptance case (CONTRACT.md, "Case files"). */
export interface CaseStep {
  readonly req_name: string
  readonly method: "GET" | "POST"
  readonly page_id: string
  readonly body: Record<string, unknown>
  readonly response_code: number
  readonly response_data: unknown
}

const casesDir = fileURLToPath(new URL("../fixtures/cases", import.meta.url))

/** Every case file of the fixtures, by file name. */
export const loadCases = (): ReadonlyArray<{
  readonly name: string
  readonly steps: ReadonlyArray<CaseStep>
}> =>
  readdirSync(casesDir)
    .filter((f) => f.endsWith(".json"))
    .sort()
    .map((name) => ({ name, steps: JSON.parse(readFileSync(`${casesDir}/${name}`, "utf8")).sequence }))

/** A fresh run id, so a replay's pages never meet an earlier run's. */
export const runId = () => Math.random().toString(36).slice(2, 14)

/** Sends one step as a tracker client would; the response's status and parsed JSON body (null when none). */
export const send = async (url: string, step: CaseStep, run: string) => {
  const body = { page_uuid: `${run}/${step.page_id}`, ...step.body }
  const response =
    step.method === "GET"
      ? await fetch(
          `${url}/${step.req_name}?${new URLSearchParams(Object.entries(body).map(([k, v]): [string, string] => [k, String(v)]))}`,
        )
      : await fetch(`${url}/${step.req_name}`, {
          method: step.method,
          headers: { "content-type": "application/json" },
          body: JSON.stringify(body),
        })
  const text = await response.text()
  return { status: response.status, data: text === "" ? null : (JSON.parse(text) as unknown) }
}

/**
 * Replays steps in order and returns the first mismatch (status, and for 200 the JSON body, compared exactly),
 * or null when every answer matched.
 */
export const replay = async (
  url: string,
  steps: ReadonlyArray<CaseStep>,
  run: string,
): Promise<string | null> => {
  for (const [i, step] of steps.entries()) {
    const { status, data } = await send(url, step, run)
    if (status !== step.response_code)
      return `step ${i} ${step.req_name}: status ${status}, expected ${step.response_code}`
    if (status === 200 && !isDeepStrictEqual(data, step.response_data)) {
      return `step ${i} ${step.req_name}: got ${JSON.stringify(data)}, expected ${JSON.stringify(step.response_data)}`
    }
  }
  return null
}
