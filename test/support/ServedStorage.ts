import { afterAll, beforeAll } from "@effect/vitest"
import { ServerProcess } from "./ServerProcess.ts"
import type { StorageMode } from "./StorageModes.ts"

/** A server process on fresh storage, for the tests of one `describe`. */
export interface ServedStorage {
  readonly storage: StorageMode
  readonly server: ServerProcess
  readonly url: string
}

/**
 * Registers, in the enclosing `describe`, fresh storage (from `make`) and a server process on it with `env` added,
 * started before its tests and stopped and disposed after them. Read it inside tests, not while registering.
 */
export const servedStorage = (
  make: () => Promise<StorageMode>,
  env: Record<string, string> = {},
): ServedStorage => {
  let storage: StorageMode | undefined
  let server: ServerProcess | undefined
  beforeAll(async () => {
    storage = await make()
    server = await ServerProcess.start({ ...storage.env, ...env })
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
