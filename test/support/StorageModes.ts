import { cpSync, mkdtempSync, rmSync } from "node:fs"
import { join } from "node:path"
import { PGlite } from "@electric-sql/pglite"
import pg from "pg"
import { inject } from "vitest"

/**
 * Where a test's server keeps its clicks: the embedded database in a fresh directory, and, when the environment
 * names a Postgres server (DATABASE_URL), a fresh database on it. Each gives the server's environment and a way
 * to count stored clicks while the server is stopped.
 */
export interface StorageMode {
  readonly name: string
  /** Environment for the server. */
  readonly env: Record<string, string>
  /** Runs a query against the stored data; for the embedded database the server must be stopped. */
  query<A>(text: string, params?: ReadonlyArray<unknown>): Promise<ReadonlyArray<A>>
  dispose(): Promise<void>
}

/**
 * A fresh directory holding an empty, initialised embedded database (a copy of the run's template, in the run's
 * directory, see EmbeddedTemplate.ts): the server finds no tables and migrates it as on first start.
 */
export const freshDataDir = (): string => {
  const dir = mkdtempSync(join(inject("embeddedRoot"), "db-"))
  cpSync(inject("embeddedTemplate"), dir, { recursive: true })
  return dir
}

const embedded = (): StorageMode => {
  const dir = freshDataDir()
  return {
    name: "embedded",
    env: { DATA_DIR: dir },
    async query<A>(text: string, params: ReadonlyArray<unknown> = []) {
      const db = await PGlite.create(dir)
      try {
        return (await db.query<A>(text, [...params])).rows
      } finally {
        await db.close()
      }
    },
    async dispose() {
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

const external = async (baseUrl: string): Promise<StorageMode> => {
  const name = `click_clusters_test_${process.pid}_${Date.now()}_${Math.floor(Math.random() * 1e6)}`
  const admin = new pg.Client({ connectionString: baseUrl })
  await admin.connect()
  await admin.query(`CREATE DATABASE ${name}`)
  await admin.end()
  const url = new URL(baseUrl)
  url.pathname = `/${name}`
  return {
    name: "postgres",
    env: { DATABASE_URL: url.toString() },
    async query<A>(text: string, params: ReadonlyArray<unknown> = []) {
      const client = new pg.Client({ connectionString: url.toString() })
      await client.connect()
      try {
        return (await client.query(text, [...params])).rows as Array<A>
      } finally {
        await client.end()
      }
    },
    async dispose() {
      const client = new pg.Client({ connectionString: baseUrl })
      await client.connect()
      await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
      await client.end()
    },
  }
}

/** The Postgres server of the development machine, used where a test needs one and DATABASE_URL names none. */
export const LOCAL_POSTGRES = "postgres://postgres@127.0.0.1:5432/postgres"

/** A fresh database on DATABASE_URL's server, or on the local one: for tests that only make sense outside the process. */
export const externalStorage = (): Promise<StorageMode> =>
  external(process.env.DATABASE_URL || LOCAL_POSTGRES)

/** The storage modes to run server tests in: always the embedded one, and the named Postgres when given. */
export const storageModes = (): ReadonlyArray<{
  readonly name: string
  readonly make: () => Promise<StorageMode>
}> => {
  const url = process.env.DATABASE_URL
  const modes = [{ name: "embedded", make: async () => embedded() }]
  if (url !== undefined && url !== "") modes.push({ name: "postgres", make: () => external(url) })
  return modes
}
