import { randomUUID } from "node:crypto"
import { HttpApiBuilder, HttpServerResponse } from "@effect/platform"
import { NodeHttpServerRequest } from "@effect/platform-node"
import { Effect, Layer, Option, Stream } from "effect"
import { AppConfig } from "../Config.ts"
import { ClusterExport } from "../persistence/ClusterExport.ts"
import { readOrUnavailable } from "../persistence/DatabaseDeadline.ts"
import { type ExportJobRow, ExportJobStore } from "../persistence/ExportJobStore.ts"
import { AdminAuthLive } from "./AdminAuthLive.ts"
import { Api } from "./Api.ts"
import { contentType } from "./ExportFormat.ts"
import { ExportJobRunnerLive } from "./ExportJobRunner.ts"
import { ExportJobNotFound, ExportNotReady } from "./WebhookSchemas.ts"

/** A job as answered: its row, with the download's path once there is one. */
const answer = (job: ExportJobRow) => ({
  ...job,
  download: job.state === "completed" ? `/exports/${job.id}/download` : null,
})

/** Export jobs (README, Export jobs): submitted, watched, downloaded; run by ExportJobRunner. */
export const ExportJobsHttpLive = HttpApiBuilder.group(Api, "exportJobs", (handlers) =>
  Effect.gen(function* () {
    const jobs = yield* ExportJobStore
    const config = yield* AppConfig
    /** Every call is one short statement, bounded as the other database reads are. */
    const bounded = (what: string) => readOrUnavailable(config.dbTimeout, what)
    const job = (id: string) =>
      jobs.get(id).pipe(
        bounded("reading the export job"),
        Effect.flatMap(
          Option.match({
            onNone: () =>
              Effect.fail(new ExportJobNotFound({ message: `no export job ${id} (or it expired)` })),
            onSome: Effect.succeed,
          }),
        ),
      )

    return handlers
      .handle("createExportJob", ({ payload }) =>
        jobs
          .create(randomUUID(), payload.format, payload.page ?? null)
          .pipe(bounded("storing the export job"), Effect.map(answer)),
      )
      .handle("getExportJob", ({ path }) => Effect.map(job(path.id), answer))
      .handle("downloadExportJob", ({ path, request }) =>
        Effect.gen(function* () {
          const found = yield* job(path.id)
          if (found.state !== "completed")
            return yield* new ExportNotReady({
              message: `export job ${found.id} is ${found.state}${found.error === null ? "" : `: ${found.error}`}`,
              state: found.state,
            })
          const body = jobs.chunks(found.id).pipe(
            // The status line is gone by now: a failed read can only cut the connection (as the live export does).
            Stream.catchAllCause((cause) =>
              Stream.execute(
                Effect.logWarning("export job download aborted", cause).pipe(
                  Effect.zipRight(
                    Effect.sync(() => NodeHttpServerRequest.toServerResponse(request).destroy()),
                  ),
                ),
              ),
            ),
          )
          return HttpServerResponse.stream(body, {
            contentType: contentType[found.format],
            contentLength: found.byte_count,
            headers: { "content-disposition": `attachment; filename="export-${found.id}.${found.format}"` },
          })
        }),
      )
  }),
)

/** The export job routes and this process's job runner, over one job store. */
export const ExportJobsLive = Layer.merge(ExportJobsHttpLive, ExportJobRunnerLive).pipe(
  Layer.provide([ExportJobStore.Default, ClusterExport.Default, AdminAuthLive]),
)
