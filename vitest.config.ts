import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/support/EmbeddedTemplate.ts"],
    // Server-process tests start real databases; a loaded two-core CI machine needs generous bounds.
    testTimeout: 180_000,
    hookTimeout: 120_000,
    // Two files at a time, also on two cores (Vitest's default would be one): most files serve in-process and wait
    // on their database as much as they compute, so a second file fills the gaps.
    maxWorkers: 2,
    minWorkers: 1,
    // Each file gets fresh modules. Sharing them (isolate: false) saved a quarter of the suite's CPU, but made a
    // TestClock test fail when another file had run first in its worker (`testClock.adjust is not a function`):
    // order-dependent, so off until that is understood.
    isolate: true,
  },
})
