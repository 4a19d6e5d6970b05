import { readdirSync, readFileSync } from "node:fs"
import { dirname, join, posix, relative } from "node:path"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "@effect/vitest"
import ts from "typescript"

/**
 * The layers point one way: domain ← persistence ← actors ← webhooks ← http ← main/cli. Each module may import its own layer
 * and the layers below it; the root's shared infrastructure (configuration, metrics, tracing) sits under
 * everything but the domain, which imports nothing outside itself.
 */
type Layer = "domain" | "infrastructure" | "persistence" | "actors" | "webhooks" | "http" | "main"

const infrastructure = new Set(["src/Config.ts", "src/Metrics.ts", "src/MetricTally.ts", "src/Tracing.ts"])

/** The layer of a file under src/, by its path relative to the repository (posix separators). */
const layerOf = (file: string): Layer => {
  if (infrastructure.has(file)) return "infrastructure"
  const area = file.split("/")[1]
  switch (area) {
    case "domain":
    case "persistence":
    case "actors":
    case "webhooks":
    case "http":
      return area
    default:
      // src/main.ts, src/ServiceLayers.ts (assembles actors with storage) and the command-line tools
      return "main"
  }
}

const allowed: Record<Layer, ReadonlySet<Layer>> = {
  domain: new Set(["domain"]),
  infrastructure: new Set(["infrastructure"]),
  persistence: new Set(["domain", "infrastructure", "persistence"]),
  actors: new Set(["domain", "infrastructure", "persistence", "actors"]),
  // Webhook delivery (outgoing HTTP) works on the stored outbox: it needs storage, never the page actors, and the
  // HTTP API manages it (subscriptions, deliveries), so it sits between the two.
  webhooks: new Set(["domain", "infrastructure", "persistence", "actors", "webhooks"]),
  http: new Set(["domain", "infrastructure", "persistence", "actors", "webhooks", "http"]),
  main: new Set(["domain", "infrastructure", "persistence", "actors", "webhooks", "http", "main"]),
}

/**
 * Every import of one file that goes to another file of src/ (static, type-only, re-exports and dynamic
 * `import()`), found by TypeScript's own scanner rather than a pattern, so comments and strings do not count.
 */
const importsOf = (file: string, text: string): ReadonlyArray<string> =>
  ts
    .preProcessFile(text, true, true)
    .importedFiles.map((ref) => ref.fileName)
    .filter((specifier) => specifier.startsWith("."))
    .map((specifier) => posix.normalize(posix.join(posix.dirname(file), specifier)))
    .filter((target) => target.startsWith("src/"))

/** The imports that break the direction, as "from → to (from layer → to layer)". */
const layerViolations = (files: ReadonlyMap<string, string>): ReadonlyArray<string> =>
  [...files].flatMap(([file, text]) => {
    const from = layerOf(file)
    return importsOf(file, text)
      .filter((target) => !allowed[from].has(layerOf(target)))
      .map((target) => `${file} → ${target} (${from} → ${layerOf(target)})`)
  })

const root = join(dirname(fileURLToPath(import.meta.url)), "..")

const sourceFiles = (dir: string): Array<string> =>
  readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) return sourceFiles(path)
    return entry.name.endsWith(".ts") ? [path] : []
  })

const readSources = () =>
  new Map(
    sourceFiles(join(root, "src")).map((path) => [
      relative(root, path).split("\\").join("/"),
      readFileSync(path, "utf8"),
    ]),
  )

describe("architecture", () => {
  it("no module of src/ imports from a layer above its own", () => {
    const files = readSources()
    expect(files.size).toBeGreaterThan(20)
    expect(layerViolations(files)).toEqual([])
  })

  it("finds the imports it forbids, and only those", () => {
    const files = new Map([
      ["src/domain/Shape.ts", `import { Metrics } from "../Metrics.ts"\nimport { grid } from "./Grid.ts"`],
      ["src/persistence/Store.ts", `import type { PageBusy } from "../actors/PageErrors.ts"`],
      [
        "src/persistence/Log.ts",
        `export { AppConfig } from "../Config.ts"\nimport { x } from "../domain/X.ts"`,
      ],
      ["src/actors/Host.ts", `const api = () => import("../http/Api.ts")`],
      [
        "src/http/Api.ts",
        `// import { run } from "../main.ts"\nimport { StorageLive } from "../ServiceLayers.ts"`,
      ],
      ["src/cli/export.ts", `import { encode } from "../http/ExportFormat.ts"`],
      ["src/Config.ts", `import { Effect } from "effect"`],
    ])
    expect(layerViolations(files)).toEqual([
      "src/domain/Shape.ts → src/Metrics.ts (domain → infrastructure)",
      "src/persistence/Store.ts → src/actors/PageErrors.ts (persistence → actors)",
      "src/actors/Host.ts → src/http/Api.ts (actors → http)",
      "src/http/Api.ts → src/ServiceLayers.ts (http → main)",
    ])
  })
})
