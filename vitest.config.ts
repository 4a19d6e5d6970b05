import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Server-process suites each start their own database; running files one after another keeps the
    // two cores of a CI machine from timing out a server start.
    fileParallelism: false,
  },
})
