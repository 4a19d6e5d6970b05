import { SqlClient } from "@effect/sql"
import { Effect, Option } from "effect"

/** A click stored under a request id, with whether it founded its cluster (the answer it was given). */
export interface KeyedClick {
  readonly page_uuid: string
  readonly x: number
  readonly y: number
  readonly cluster_idx: number
  readonly is_new: boolean
}

/** Reads of the clicks table (writes go through the ClickLog writer). */
export class ClickRepository extends Effect.Service<ClickRepository>()("persistence/ClickRepository", {
  effect: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    return {
      /**
       * The click stored under a request id, with whether it founded its cluster (the answer it was given).
       */
      byRequestId: Effect.fn("ClickRepository.byRequestId")((requestId: string) =>
        sql<KeyedClick>`
          SELECT c.page_uuid, c.x, c.y, c.cluster_idx,
                 NOT EXISTS (
                   SELECT 1 FROM clicks e
                   WHERE e.page_uuid = c.page_uuid AND e.cluster_idx = c.cluster_idx AND e.seq < c.seq
                 ) AS is_new
          FROM clicks c WHERE c.request_id = ${requestId}
        `.pipe(Effect.map((rows) => Option.fromNullable(rows[0]))),
      ),

      /**
       * The clicks stored under any of the request ids (lower-case UUIDs), by request id, in one round trip: a
       * batch's keys looked up at once rather than one query per click.
       */
      byRequestIds: Effect.fn("ClickRepository.byRequestIds")((requestIds: ReadonlyArray<string>) =>
        sql<KeyedClick & { request_id: string }>`
          SELECT c.request_id::text AS request_id, c.page_uuid, c.x, c.y, c.cluster_idx,
                 NOT EXISTS (
                   SELECT 1 FROM clicks e
                   WHERE e.page_uuid = c.page_uuid AND e.cluster_idx = c.cluster_idx AND e.seq < c.seq
                 ) AS is_new
          FROM clicks c WHERE c.request_id = ANY(${requestIds}::uuid[])
        `.pipe(Effect.map((rows) => new Map(rows.map((row) => [row.request_id, row] as const)))),
      ),

      /** Every click of one cluster of a page, in the order they were made. */
      clusterCoordinates: Effect.fn("ClickRepository.clusterCoordinates")(
        (page: string, clusterIdx: number) =>
          sql<{ x: number; y: number }>`
          SELECT x, y FROM clicks WHERE page_uuid = ${page} AND cluster_idx = ${clusterIdx} ORDER BY seq
        `,
      ),
    }
  }),
}) {}
