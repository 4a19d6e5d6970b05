import { SqlClient } from "@effect/sql"
import { Effect, Schema } from "effect"
import type { PageClustersSnapshot } from "../domain/PageClusters.ts"

const Column = Schema.Array(Schema.Number)

/** A snapshot as stored in `page_snapshots.clusters`; `format` changes when the layout does. */
const SnapshotDocument = Schema.Struct({
  format: Schema.Literal(1),
  radius: Schema.Number,
  sumX: Column,
  sumY: Column,
  count: Column,
  firstAt: Column,
  lastAt: Column,
}).pipe(
  Schema.filter((s) => {
    const n = s.count.length
    return (
      (s.sumX.length === n && s.sumY.length === n && s.firstAt.length === n && s.lastAt.length === n) ||
      "snapshot columns differ in length"
    )
  }),
)

const decodeDocument = Schema.decodeUnknown(Schema.parseJson(SnapshotDocument))

/** A page's state after click `seq`. */
export interface PageSnapshot {
  readonly seq: number
  readonly radius: number
  readonly clusters: PageClustersSnapshot
}

/** A stored `clusters` document (as text) read back; fails with a ParseError for one this store did not write. */
export const decodeSnapshot = (seq: number, document: string) =>
  decodeDocument(document).pipe(
    Effect.map(({ format: _format, radius, ...clusters }): PageSnapshot => ({ seq, radius, clusters })),
  )

/**
 * A stored snapshot for replay: decoded, or undefined (with a warning) when it cannot be read, so that the page is
 * rebuilt from its clicks. Page recovery and the export read snapshots so.
 */
export const readableSnapshot = (page: string, seq: number, document: string) =>
  decodeSnapshot(seq, document).pipe(
    Effect.catchTag("ParseError", (error) =>
      Effect.logWarning("unreadable snapshot ignored; the page is rebuilt from its clicks").pipe(
        Effect.annotateLogs({ page, error: error.message }),
        Effect.as(undefined),
      ),
    ),
  )

/** Per-page snapshots: the latest state of a page and the last click it covers. */
export class SnapshotStore extends Effect.Service<SnapshotStore>()("persistence/SnapshotStore", {
  effect: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    return {
      /** Stores a snapshot unless a newer one is already there. */
      save: Effect.fn("SnapshotStore.save")((page: string, snapshot: PageSnapshot) =>
        sql`
          INSERT INTO page_snapshots (page_uuid, seq, clusters, taken_at)
          VALUES (${page}, ${snapshot.seq}, ${JSON.stringify({ format: 1, radius: snapshot.radius, ...snapshot.clusters })}::jsonb, now())
          ON CONFLICT (page_uuid) DO UPDATE SET seq = excluded.seq, clusters = excluded.clusters, taken_at = excluded.taken_at
          WHERE page_snapshots.seq < excluded.seq
        `.pipe(Effect.asVoid),
      ),
    }
  }),
}) {}
