import { ConfigProvider, Layer } from "effect"
import { AppConfig } from "../../src/Config.ts"
import { SqlLive } from "../../src/persistence/Sql.ts"
import type { StorageMode } from "./StorageModes.ts"

/**
 * The service's own migrated database layer (and its config) over a test storage mode, configured from the
 * mode's environment exactly as the server would be. For the embedded mode, no server may have it open.
 */
export const storageLayer = (storage: StorageMode) =>
  SqlLive.pipe(
    Layer.provideMerge(AppConfig.Default),
    Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(storage.env))))),
  )
