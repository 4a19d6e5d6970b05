import { cpSync, mkdirSync, mkdtempSync, rmSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { build } from "esbuild"
import type { TestProject } from "vitest/node"

declare module "vitest" {
  export interface ProvidedContext {
    /** This run's bundles of the scripts tests start as processes (see `bundled`), by script: `src/main.ts`, … */
    serverBundles: Record<string, string>
  }
}

const root = fileURLToPath(new URL("../..", import.meta.url))

/** The scripts tests run as child processes. */
const scripts = ["src/main.ts", "src/cli/export.ts", "src/cli/genClicks.ts"]

/**
 * Vitest global setup: bundles the service's own code (not its packages) once per run, so a child process loads
 * one compiled file instead of compiling every module through tsx's loader hooks: about 3 of the 9 s of CPU a
 * server process took to serve its first request here. The same esbuild transform tsx applies, from the same
 * sources, done once.
 */
export default async function setup(project: TestProject) {
  // Inside node_modules, so the bundles' package imports resolve as the sources' do; one directory per run.
  const parent = join(root, "node_modules", ".cache", "click-clusters-test")
  mkdirSync(parent, { recursive: true })
  const dir = mkdtempSync(join(parent, "run-"))
  await build({
    entryPoints: scripts,
    outbase: "src",
    outdir: dir,
    outExtension: { ".js": ".mjs" },
    bundle: true,
    packages: "external",
    platform: "node",
    format: "esm",
    target: "node20",
    logLevel: "warning",
  })
  // Read beside the module that serves them (BrowserHttp.ts, bundled into main.mjs).
  cpSync(join(root, "src/http/browser"), join(dir, "browser"), { recursive: true })
  project.provide(
    "serverBundles",
    Object.fromEntries(
      scripts.map((script) => [script, join(dir, script.replace(/^src\//, "").replace(/\.ts$/, ".mjs"))]),
    ),
  )
  return () => rmSync(dir, { recursive: true, force: true })
}
