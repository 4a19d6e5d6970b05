import { HttpApiMiddleware, HttpApiSchema, HttpApiSecurity, OpenApi } from "@effect/platform"
import { Schema } from "effect"

/** An admin endpoint called without the admin token (or with another one). */
export class Unauthorized extends Schema.TaggedError<Unauthorized>()(
  "Unauthorized",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 401 }),
) {}

/**
 * Guards the admin endpoints: `Authorization: Bearer <ADMIN_TOKEN>` when ADMIN_TOKEN is set, open otherwise.
 * A group opts in with `.middleware(AdminAuth)`; the implementation is AdminAuthLive.
 */
export class AdminAuth extends HttpApiMiddleware.Tag<AdminAuth>()("http/AdminAuth", {
  failure: Unauthorized,
  security: {
    bearer: HttpApiSecurity.bearer.pipe(
      HttpApiSecurity.annotate(
        OpenApi.Description,
        "The server's ADMIN_TOKEN; required only when the server was started with one.",
      ),
    ),
  },
}) {}
