import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/support/EmbeddedTemplate.ts"],
    // Server-process tests start real databases; a loaded two-core CI machine needs generous bounds.
    testTimeout: 180_000,
    hookTimeout: 120_000,
    // Server-process suites each start their own database; running files one after another keeps the
    // two cores of a CI machine from timing out a server start.
    fileParallelism: false,
  },
})
