import { existsSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { PGlite } from "@electric-sql/pglite"
import type { TestProject } from "vitest/node"

declare module "vitest" {
  export interface ProvidedContext {
    /** An embedded database directory just initialised by PGlite (no tables): copied, never opened, by tests. */
    embeddedTemplate: string
    /** The run's directory for embedded databases, removed with all it holds when the run ends. */
    embeddedRoot: string
  }
}

/**
 * Where tests keep embedded databases: memory (/dev/shm) where the machine has it. The databases live only as long
 * as their test; a killed server's writes survive in memory as they would in the page cache.
 */
const scratchRoot = () => (existsSync("/dev/shm") ? "/dev/shm" : tmpdir())

/**
 * Vitest global setup: initialises one empty embedded database for the whole run. PGlite's initdb costs seconds
 * of CPU each time; a copy of its result is the same fresh database (our migrations still run on it) in a fraction.
 */
export default async function setup(project: TestProject) {
  // One directory per run: what a killed worker or a failed test leaves in it goes when the run ends.
  const root = mkdtempSync(join(scratchRoot(), "click-clusters-run-"))
  const template = join(root, "template")
  const db = await PGlite.create(template)
  await db.close()
  project.provide("embeddedTemplate", template)
  project.provide("embeddedRoot", root)
  return () => rmSync(root, { recursive: true, force: true })
}
