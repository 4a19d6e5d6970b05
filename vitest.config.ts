import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/support/EmbeddedTemplate.ts", "test/support/ServerBundle.ts"],
    // Server-process tests start real databases; a loaded two-core CI machine needs generous bounds.
    testTimeout: 180_000,
    hookTimeout: 120_000,
    // Three files at a time on two cores: most files serve in-process and wait on their database or on child
    // processes as much as they compute, so two workers left a fifth of the machine idle (1.6 cores busy). Fresh-cache
    // embedded runs: 116.0 and 120.9 s against 127.9 and 129.0 s with two. All three kept from the start: with
    // minWorkers 1 and three workers, two runs of two ended in tinypool's "Terminating worker thread", two files
    // never reported and their workers left running; with three from the start, none of four runs did.
    maxWorkers: 3,
    minWorkers: 3,
    // The young generation the service runs with (`npm start`): the in-process servers allocate as it does. Fresh
    // runs back to back: 135.2 s wall, 217 s CPU without; 127.9 s, 203.5 s with (two workers).
    poolOptions: { forks: { execArgv: ["--max-semi-space-size=32"] } },
    // Files share modules within a worker (a quarter of the suite's CPU went to loading them again per file). The
    // one state that leaked between files, @effect/vitest's `it` methods rebound by `layer(...)`, is reset before
    // each file (PristineIt.ts).
    isolate: false,
    setupFiles: ["test/support/PristineIt.ts"],
  },
})
