import { describe, expect, it } from "@effect/vitest"
import { loadCases, replay, runId } from "../support/Cases.ts"
import { servedStorage } from "../support/ServedStorage.ts"
import { storageModes } from "../support/StorageModes.ts"

const cases = loadCases()

describe.each(storageModes())("trackers' acceptance cases, $name storage", ({ make }) => {
  const served = servedStorage(make)

  it("has case files to replay", () => {
    expect(cases.length).toBeGreaterThanOrEqual(16)
  })

  // Each case on pages of its own, so the cases may run side by side (each still in order); the service's writer
  // then commits their clicks together instead of one round trip per click.
  it.concurrent.for(cases)("$name answers every step as the case expects", async ({ steps }, { expect }) => {
    expect(await replay(served.url, steps, runId())).toBeNull()
  })

  it("answers every case when all of them run at once", async () => {
    const results = await Promise.all(cases.map(({ steps }) => replay(served.url, steps, runId())))
    expect(results.filter((r) => r !== null)).toEqual([])
  })
})
