import { ConfigProvider, Effect, Layer } from "effect"
import { PageBehaviour } from "../../src/actors/PageBehaviour.ts"
import { PageEvents } from "../../src/actors/PageEvents.ts"
import { AppConfig } from "../../src/Config.ts"
import { Metrics } from "../../src/Metrics.ts"
import { ClickLog } from "../../src/persistence/ClickLog.ts"
import { ClickRepository } from "../../src/persistence/ClickRepository.ts"
import { PageHistory } from "../../src/persistence/PageHistory.ts"
import { SnapshotStore } from "../../src/persistence/SnapshotStore.ts"
import { storageLayer } from "./StorageLayer.ts"
import type { storageModes } from "./StorageModes.ts"

/** One migrated database of a storage mode, for a whole test file (each test uses pages of its own). */
export const sharedDatabase = (mode: ReturnType<typeof storageModes>[number]) =>
  Layer.unwrapScoped(
    Effect.acquireRelease(Effect.promise(mode.make), (storage) =>
      Effect.promise(() => storage.dispose()),
    ).pipe(
      Effect.map((storage) => storageLayer({ ...storage, env: { ...storage.env, LOG_LEVEL: "error" } })),
    ),
  )

/**
 * Everything a page host uses but the database in context (behaviour, live events, click log writer,
 * repositories, metrics), configured from `env` as the environment would be: one "life" of the service per build,
 * so a test that restarts the service builds a second one over the same database.
 */
export const pageServices = (env: Record<string, string> = {}) =>
  PageBehaviour.Default.pipe(
    Layer.provideMerge(PageEvents.Default),
    Layer.provideMerge(
      Layer.mergeAll(ClickLog.Default, ClickRepository.Default, SnapshotStore.Default, PageHistory.Default),
    ),
    Layer.provideMerge(Metrics.Default),
    Layer.provideMerge(AppConfig.Default),
    Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env))))),
  )
