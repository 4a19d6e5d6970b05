import { afterAll, beforeAll } from "@effect/vitest"
import { InProcessServer, type RunningServer } from "./InProcessServer.ts"
import type { StorageMode } from "./StorageModes.ts"

/** A value a `beforeAll` makes, read inside a test (fails clearly when read while registering). */
export const started = <A>(value: A | undefined): A => {
  if (value === undefined) throw new Error("made by beforeAll: read it inside a test")
  return value
}

/**
 * Registers, in the enclosing `describe`, fresh storage (from `make`): made before its tests, disposed after them
 * (after the servers registered later in the `describe` stopped). Read `current` inside tests.
 */
export const freshStorage = (make: () => Promise<StorageMode>): { readonly current: StorageMode } => {
  let storage: StorageMode | undefined
  beforeAll(async () => {
    storage = await make()
  })
  afterAll(async () => {
    await storage?.dispose()
  })
  return {
    get current() {
      return started(storage)
    },
  }
}

/**
 * Serves the service in this process for the enclosing `describe`, and stops, after its tests, any server a test
 * left running (a failed test among them).
 */
export const inProcessServers = () => {
  const running = new Set<RunningServer>()
  afterAll(async () => {
    for (const server of running) await server.stop()
  })
  return {
    start: async (env: Record<string, string>) => {
      const server = await InProcessServer.run(env)
      running.add(server)
      return server
    },
  }
}

/** A server on fresh storage, for the tests of one `describe`. */
export interface ServedStorage {
  readonly storage: StorageMode
  readonly server: RunningServer
  readonly url: string
}

/**
 * Registers, in the enclosing `describe`, fresh storage (from `make`) and the service served in this process on it
 * with `env` added, started before its tests and stopped and disposed after them. Read it inside tests, not while
 * registering.
 */
export const servedStorage = (
  make: () => Promise<StorageMode>,
  env: Record<string, string> = {},
): ServedStorage => {
  const storage = freshStorage(make)
  const servers = inProcessServers()
  let server: RunningServer | undefined
  beforeAll(async () => {
    server = await servers.start({ ...storage.current.env, ...env })
  })
  return {
    get storage() {
      return storage.current
    },
    get server() {
      return started(server)
    },
    get url() {
      return started(server).url
    },
  }
}
