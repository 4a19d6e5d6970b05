import { randomUUID } from "node:crypto"
import { expect, layer } from "@effect/vitest"
import { Context, Effect, Layer, Schedule } from "effect"
import { InProcessServer } from "../support/InProcessServer.ts"
import { externalStorage, type StorageMode } from "../support/StorageModes.ts"

/** The value of one sample line of the exposition (0 when absent). */
const sample = (text: string, name: string) => {
  const line = text.split("\n").find((l) => l.startsWith(`${name} `))
  return line === undefined ? 0 : Number(line.slice(name.length + 1))
}

/** The database the server runs on, for the test to reach behind its back. */
class Storage extends Context.Tag("test/Metrics/Storage")<Storage, StorageMode>() {}

// External Postgres: the test renames the snapshot table under the running server to make snapshots fail.
const StorageLive = Layer.scoped(
  Storage,
  Effect.acquireRelease(Effect.promise(externalStorage), (storage) =>
    Effect.promise(() => storage.dispose()),
  ),
)

/** The service in-process on that database, snapshotting every second click; with its typed client. */
const ServedLive = Layer.unwrapEffect(
  Effect.map(Storage, (storage) => InProcessServer.layer({ ...storage.env, SNAPSHOT_EVERY: "2" })),
).pipe(Layer.provideMerge(StorageLive))

// The real clock: snapshots are written off the request path, in real time, and polled for.
layer(ServedLive, { excludeTestServices: true })("snapshot metrics move", (it) => {
  it.effect("counts stored snapshots with their duration, and failed ones as database errors", () =>
    Effect.gen(function* () {
      const api = yield* InProcessServer.client
      const storage = yield* Storage
      const metrics = api.ops.metrics()
      const save = (page: string, x: number) =>
        api.tracker.saveClick({ payload: { page_uuid: page, coordinates: { x, y: 0.5 } }, headers: {} })
      /** Polls the exposition until `ready` holds, for up to 10 s; then the exposition as it is. */
      const eventually = (ready: (text: string) => boolean) =>
        metrics.pipe(
          Effect.filterOrFail(ready),
          Effect.retry({ schedule: Schedule.spaced("100 millis"), times: 100 }),
          Effect.orElse(() => metrics),
        )
      const query = (text: string) => Effect.promise(() => storage.query(text))

      const before = yield* metrics
      const written = sample(before, "snapshots_written_total")
      const timed = sample(before, "snapshot_duration_seconds_count")
      const page = `metrics-${randomUUID()}`
      for (const x of [0.1, 0.2, 0.3, 0.4]) yield* save(page, x)
      const after = yield* eventually((t) => sample(t, "snapshots_written_total") >= written + 2)
      expect(sample(after, "snapshots_written_total")).toBeGreaterThanOrEqual(written + 2)
      expect(sample(after, "snapshot_duration_seconds_count")).toBeGreaterThanOrEqual(timed + 2)

      const failing = 'database_errors_total{operation="snapshot"}'
      const errorsBefore = sample(after, failing)
      yield* query("ALTER TABLE page_snapshots RENAME TO page_snapshots_away")
      const failed = yield* Effect.gen(function* () {
        for (const x of [0.5, 0.6]) yield* save(page, x)
        return yield* eventually((t) => sample(t, failing) > errorsBefore)
      }).pipe(Effect.ensuring(query("ALTER TABLE page_snapshots_away RENAME TO page_snapshots")))
      expect(sample(failed, failing)).toBe(errorsBefore + 1)
      expect(sample(failed, "snapshots_written_total")).toBe(sample(after, "snapshots_written_total"))
    }),
  )
})
