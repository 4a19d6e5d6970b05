import { afterAll, beforeAll } from "@effect/vitest"
import { InProcessServer, type RunningServer } from "./InProcessServer.ts"
import type { StorageMode } from "./StorageModes.ts"

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
  let storage: StorageMode | undefined
  let server: RunningServer | undefined
  beforeAll(async () => {
    storage = await make()
    server = await InProcessServer.run({ ...storage.env, ...env })
  })
  afterAll(async () => {
    await server?.stop()
    await storage?.dispose()
  })
  const started = <A>(value: A | undefined): A => {
    if (value === undefined) throw new Error("the server is started by beforeAll; read it inside a test")
    return value
  }
  return {
    get storage() {
      return started(storage)
    },
    get server() {
      return started(server)
    },
    get url() {
      return started(server).url
    },
  }
}
