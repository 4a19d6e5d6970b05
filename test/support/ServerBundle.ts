import { cpSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from "node:fs"
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
 * Vitest global setup: bundles each script with the packages it uses, once per run, so a child process loads one
 * compiled file instead of compiling every module through tsx's loader hooks and resolving hundreds of package
 * files. A server's CPU to its first answer here: 8.4-10.1 s under tsx, 5.1-6.0 s with only our code bundled,
 * 3.6-3.7 s with the packages too (interleaved runs, load 2). The same esbuild transform tsx applies, from the same
 * sources. PGlite stays a package: it reads its WebAssembly and data files beside its own module.
 */
export default async function setup(project: TestProject) {
  // Inside node_modules, so the bundles' imports of PGlite resolve as the sources' do; one directory per run.
  const parent = join(root, "node_modules", ".cache", "click-clusters-test")
  mkdirSync(parent, { recursive: true })
  // A run killed before its teardown leaves its bundles behind: gone once a day old (no run lasts that long).
  for (const entry of readdirSync(parent)) {
    const path = join(parent, entry)
    if (Date.now() - statSync(path).mtimeMs > 86_400_000) rmSync(path, { recursive: true, force: true })
  }
  const dir = mkdtempSync(join(parent, "run-"))
  await build({
    entryPoints: scripts,
    outbase: "src",
    outdir: dir,
    outExtension: { ".js": ".mjs" },
    bundle: true,
    external: ["@electric-sql/pglite", "@electric-sql/pglite/*"],
    // Bundled CommonJS packages require Node's built-in modules, which an ES module has no `require` for.
    banner: {
      js: 'import { createRequire as __createRequire } from "node:module"; const require = __createRequire(import.meta.url);',
    },
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
