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
    // Files share a worker's modules: Effect, the service and PGlite's compiled WebAssembly load once per worker
    // rather than once per file (a quarter of the suite's CPU). Every test makes its own databases and servers.
    isolate: false,
  },
})
