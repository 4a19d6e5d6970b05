import type { Counter, LabelValues } from "prom-client"

/** One label set's increments not yet added to its counter. */
export interface TallyCell {
  count: number
}

/**
 * Increments of a prom-client counter kept as plain numbers, one cell per label set, and added to the counter each
 * time it is collected (a scrape, any read of it): a hot path adds one to a number instead of prom-client hashing
 * the labels on every increment. The counter's `collect` calls `fold`, so what it reports is always complete.
 */
export class CounterTally<L extends string> {
  private readonly cells: Array<{ readonly labels: LabelValues<L>; readonly cell: TallyCell }> = []

  /** A new cell for a label set; callers keep it (one per label set in use). */
  cell(labels: LabelValues<L>): TallyCell {
    const cell = { count: 0 }
    this.cells.push({ labels, cell })
    return cell
  }

  /** Adds the cells' counts to the counter. */
  fold(counter: Counter<L>): void {
    for (const { labels, cell } of this.cells) {
      if (cell.count === 0) continue
      counter.inc(labels, cell.count)
      cell.count = 0
    }
  }
}
