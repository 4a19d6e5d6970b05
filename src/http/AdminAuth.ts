import { HttpApiMiddleware, HttpApiSchema, HttpApiSecurity, OpenApi } from "@effect/platform"
import { Schema } from "effect"

/** An admin endpoint called without the admin token (or with another one). */
export class Unauthorized extends Schema.TaggedError<Unauthorized>()(
  "Unauthorized",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 401 }),
) {}

/** An admin endpoint called from another machine while the server has no ADMIN_TOKEN. */
export class Forbidden extends Schema.TaggedError<Forbidden>()(
  "Forbidden",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 403 }),
) {}

/**
 * Guards the admin endpoints: `Authorization: Bearer <ADMIN_TOKEN>` when ADMIN_TOKEN is set; without one, only
 * clients on this machine (loopback addresses) are let through.
 * A group opts in with `.middleware(AdminAuth)`; the implementation is AdminAuthLive.
 */
export class AdminAuth extends HttpApiMiddleware.Tag<AdminAuth>()("http/AdminAuth", {
  failure: Schema.Union(Unauthorized, Forbidden),
  security: {
    bearer: HttpApiSecurity.bearer.pipe(
      HttpApiSecurity.annotate(
        OpenApi.Description,
        "The server's ADMIN_TOKEN. A server started without one answers admin endpoints only to loopback clients (403 to others).",
      ),
    ),
  },
}) {}
