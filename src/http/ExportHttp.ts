import { HttpApiBuilder, HttpServerResponse } from "@effect/platform"
import { NodeHttpServerRequest } from "@effect/platform-node"
import { Effect, Layer, Stream } from "effect"
import { AppConfig } from "../Config.ts"
import { ClusterExport } from "../persistence/ClusterExport.ts"
import { readOrUnavailable } from "../persistence/DatabaseDeadline.ts"
import { AdminAuthLive } from "./AdminAuthLive.ts"
import { Api } from "./Api.ts"
import { contentType, encodeRows } from "./ExportFormat.ts"

/** The admin endpoints: the cluster export, streamed as it is read. */
export const ExportHttpLive = HttpApiBuilder.group(Api, "admin", (handlers) =>
  Effect.gen(function* () {
    const clusters = yield* ClusterExport
    const config = yield* AppConfig

    return handlers.handle("exportSnapshots", ({ urlParams, request }) =>
      Effect.gen(function* () {
        const rows = yield* clusters
          .rows({ page: urlParams.page_uuid })
          .pipe(readOrUnavailable(config.dbTimeout, "reading the clusters"))
        const body = rows.pipe(
          encodeRows(urlParams.format),
          // The status line is gone by now: a read that fails mid-export can only cut the connection, so the
          // client sees an incomplete response instead of a well-terminated, silently truncated file.
          Stream.catchAllCause((cause) =>
            Stream.execute(
              Effect.logWarning("cluster export aborted", cause).pipe(
                Effect.zipRight(Effect.sync(() => NodeHttpServerRequest.toServerResponse(request).destroy())),
              ),
            ),
          ),
        )
        return HttpServerResponse.stream(body, {
          contentType: contentType[urlParams.format],
          headers: { "content-disposition": `attachment; filename="snapshots.${urlParams.format}"` },
        })
      }),
    )
  }),
).pipe(Layer.provide([ClusterExport.Default, AdminAuthLive]))
