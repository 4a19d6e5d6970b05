import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/support/EmbeddedTemplate.ts", "test/support/ServerBundle.ts"],
    // Server-process tests start real databases; a loaded two-core CI machine needs generous bounds.
    testTimeout: 180_000,
    hookTimeout: 120_000,
    // Two files at a time, also on two cores (Vitest's default would be one): most files serve in-process and wait
    // on their database as much as they compute, so a second file fills the gaps.
    maxWorkers: 2,
    // The young generation the service runs with (`npm start`): the in-process servers allocate as it does. Fresh
    // runs back to back: 135.2 s wall, 217 s CPU without; 127.9 s, 203.5 s with.
    poolOptions: { forks: { execArgv: ["--max-semi-space-size=32"] } },
    minWorkers: 1,
    // Files share modules within a worker (a quarter of the suite's CPU went to loading them again per file). The
    // one state that leaked between files, @effect/vitest's `it` methods rebound by `layer(...)`, is reset before
    // each file (PristineIt.ts).
    isolate: false,
    setupFiles: ["test/support/PristineIt.ts"],
  },
})
