/** Calendar periods in UTC, as analysts' activity series count them (weeks start on Monday, as date_trunc's). */
export type Granularity = "hour" | "day" | "week" | "month"

const HOUR = 3_600_000
const DAY = 24 * HOUR

const truncate = (t: Date, granularity: Granularity): Date => {
  const d = new Date(t.getTime())
  d.setUTCMinutes(0, 0, 0)
  if (granularity === "hour") return d
  d.setUTCHours(0)
  if (granularity === "day") return d
  if (granularity === "week") return new Date(d.getTime() - ((d.getUTCDay() + 6) % 7) * DAY)
  d.setUTCDate(1)
  return d
}

/** How many periods of the granularity overlap [from, to); 0 when from ≥ to. */
export const countPeriods = (from: Date, to: Date, granularity: Granularity): number => {
  if (from.getTime() >= to.getTime()) return 0
  const start = truncate(from, granularity)
  const last = new Date(to.getTime() - 1)
  if (granularity === "month") {
    return (
      (last.getUTCFullYear() - start.getUTCFullYear()) * 12 + (last.getUTCMonth() - start.getUTCMonth()) + 1
    )
  }
  const length = granularity === "hour" ? HOUR : granularity === "day" ? DAY : 7 * DAY
  return Math.floor((last.getTime() - start.getTime()) / length) + 1
}
