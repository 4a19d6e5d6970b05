import { createHash, timingSafeEqual } from "node:crypto"
import { Effect, Layer, Option, Redacted } from "effect"
import { AppConfig } from "../Config.ts"
import { AdminAuth, Unauthorized } from "./AdminAuth.ts"

const digest = (text: string) => createHash("sha256").update(text).digest()

/** Compares in constant time (over fixed-length digests), so the answer's timing says nothing about the token. */
const sameToken = (given: string, expected: string) => timingSafeEqual(digest(given), digest(expected))

/** The admin check against the configured ADMIN_TOKEN; without one, every admin call is let through. */
export const AdminAuthLive = Layer.effect(
  AdminAuth,
  Effect.gen(function* () {
    const { adminToken } = yield* AppConfig
    return AdminAuth.of({
      bearer: (token) =>
        Option.match(adminToken, {
          onNone: () => Effect.void,
          onSome: (expected) => {
            const given = Redacted.value(token)
            if (given !== "" && sameToken(given, Redacted.value(expected))) return Effect.void
            return Effect.fail(
              new Unauthorized({
                message:
                  given === ""
                    ? "this endpoint needs the header Authorization: Bearer <ADMIN_TOKEN>"
                    : "the bearer token is not the admin token",
              }),
            )
          },
        }),
    })
  }),
)
