import { Cause, Chunk, Clock, Duration, Effect, Layer, Option, Sink, Stream } from "effect"
import { AppConfig } from "../Config.ts"
import { ClusterExport } from "../persistence/ClusterExport.ts"
import { type ExportJobRow, ExportJobStore } from "../persistence/ExportJobStore.ts"
import { encodeRows } from "./ExportFormat.ts"

/** A stored chunk of a job's file: about this many bytes (one row per insert would be one round trip per row). */
const CHUNK_BYTES = 256 * 1024
/** A running job's lease: renewed with every chunk; a job whose runner died is taken up again after it. */
const LEASE = Duration.seconds(60)
/** How often a runner looks for queued jobs (and purges expired results) when idle. */
const POLL = Duration.seconds(1)
const PURGE_EVERY = Duration.minutes(5)

/** What a failed job reports: the failure's message. */
const failure = (cause: Cause.Cause<unknown>) => {
  const error = Cause.squash(cause)
  return error instanceof Error ? error.message : String(error)
}

/**
 * Runs export jobs in the background, one at a time per process: claims a job (ExportJobStore.claim), reads the
 * clusters as the streamed export does (ClusterExport, ExportFormat), stores the file in chunks with the job's
 * progress, then marks it completed (or failed) with its webhook event. A process stopping gives its job back to
 * the queue; one that dies leaves a lease that runs out; either way the job is run again from the start.
 */
export const ExportJobRunnerLive = Layer.scopedDiscard(
  Effect.gen(function* () {
    const jobs = yield* ExportJobStore
    const clusters = yield* ClusterExport
    const config = yield* AppConfig
    const retentionMs = Duration.toMillis(config.exportRetention)
    const leaseMs = Duration.toMillis(LEASE)

    const run = Effect.fn("ExportJobRunner.run")(function* (job: ExportJobRow) {
      yield* Effect.annotateCurrentSpan({ job: job.id })
      const filter = { page: job.page ?? undefined }
      const pagesTotal = yield* clusters.countPages(filter)
      const rows = yield* clusters.rows(filter)
      let pagesDone = 0
      let lastPage: string | undefined
      let rowCount = 0
      let bytes = 0
      let n = 0
      const counted = rows.pipe(
        Stream.tap((row) =>
          Effect.sync(() => {
            rowCount++
            if (row.page_uuid !== lastPage) {
              pagesDone++
              lastPage = row.page_uuid
            }
          }),
        ),
      )
      const store = (parts: Chunk.Chunk<Uint8Array>) =>
        Effect.gen(function* () {
          const data = Buffer.concat(Chunk.toArray(parts))
          if (data.length === 0) return
          bytes += data.length
          const now = yield* Clock.currentTimeMillis
          yield* jobs.appendChunk(
            job.id,
            n++,
            data,
            { pagesTotal, pagesDone, rows: rowCount, bytes },
            now + leaseMs,
          )
        })
      yield* counted.pipe(
        encodeRows(job.format),
        // Groups the encoded pieces into chunks of about CHUNK_BYTES.
        Stream.aggregate(
          Sink.foldWeighted({
            initial: Chunk.empty<Uint8Array>(),
            maxCost: CHUNK_BYTES,
            cost: (_, bytes) => bytes.length,
            body: (acc, bytes) => Chunk.append(acc, bytes),
          }),
        ),
        Stream.runForEach(store),
      )
      const now = yield* Clock.currentTimeMillis
      yield* jobs.finish(job.id, { state: "completed", pagesTotal, rows: rowCount, bytes }, now, retentionMs)
      yield* Effect.logInfo("export job completed").pipe(
        Effect.annotateLogs({ job: job.id, rows: rowCount, bytes }),
      )
    })

    /** Runs a claimed job; a failure marks it failed (with its event); stopping gives it back to the queue. */
    const runClaimed = (job: ExportJobRow) =>
      run(job).pipe(
        Effect.catchAllCause((cause) =>
          Cause.isInterruptedOnly(cause)
            ? Effect.failCause(cause)
            : Effect.gen(function* () {
                yield* Effect.logWarning("export job failed", cause).pipe(
                  Effect.annotateLogs({ job: job.id }),
                )
                const now = yield* Clock.currentTimeMillis
                yield* jobs.finish(
                  job.id,
                  {
                    state: "failed",
                    error: failure(cause),
                  },
                  now,
                  retentionMs,
                )
              }),
        ),
        Effect.onInterrupt(() => jobs.release(job.id).pipe(Effect.ignore)),
      )

    const turn = Effect.gen(function* () {
      const now = yield* Clock.currentTimeMillis
      const claimed = yield* jobs.claim(now, leaseMs)
      if (Option.isSome(claimed)) yield* runClaimed(claimed.value)
      else yield* Effect.sleep(POLL)
    }).pipe(
      Effect.catchAllCause((cause) =>
        Cause.isInterruptedOnly(cause)
          ? Effect.failCause(cause)
          : Effect.logWarning("export job pass failed", cause).pipe(Effect.zipRight(Effect.sleep(POLL))),
      ),
    )
    const purge = Effect.gen(function* () {
      const removed = yield* jobs.purgeExpired(yield* Clock.currentTimeMillis)
      if (removed > 0) yield* Effect.logInfo(`${removed} expired export jobs removed`)
    }).pipe(Effect.catchAll((error) => Effect.logWarning("expired export jobs not removed", error)))

    yield* Effect.forkScoped(Effect.forever(turn))
    yield* Effect.forkScoped(Effect.forever(Effect.zipRight(purge, Effect.sleep(PURGE_EVERY))))
  }),
)
