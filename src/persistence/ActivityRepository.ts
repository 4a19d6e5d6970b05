import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import type { Granularity } from "../domain/Periods.ts"

/** Click counts per period, computed in SQL. */
export class ActivityRepository extends Effect.Service<ActivityRepository>()(
  "persistence/ActivityRepository",
  {
    effect: Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      return {
        /**
         * Clicks of a page (or of one of its clusters) per UTC period overlapping [from, to), every period listed
         * (zero when empty). Periods come from generate_series over date_trunc'd bounds; clicks are counted by range
         * on created_at so the (page_uuid, …) index narrows the scan to the page.
         */
        series: Effect.fn("ActivityRepository.series")(
          (page: string, granularity: Granularity, from: Date, to: Date, clusterIdx: number | null) =>
            sql<{ period_start: string; clicks: number }>`
          WITH periods AS (
            SELECT generate_series(
              date_trunc(${granularity}, ${from.toISOString()}::timestamptz, 'UTC'),
              ${to.toISOString()}::timestamptz - interval '1 microsecond',
              ('1 ' || ${granularity})::interval
            ) AS period_start
          )
          SELECT to_char(p.period_start AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS period_start,
                 count(c.seq)::int AS clicks
          FROM periods p
          LEFT JOIN clicks c
            ON c.page_uuid = ${page}
           AND c.created_at >= greatest(p.period_start, ${from.toISOString()}::timestamptz)
           AND c.created_at < least(p.period_start + ('1 ' || ${granularity})::interval, ${to.toISOString()}::timestamptz)
           AND (${clusterIdx}::int IS NULL OR c.cluster_idx = ${clusterIdx}::int)
          GROUP BY p.period_start
          ORDER BY p.period_start
        `,
        ),
      }
    }),
  },
) {}
