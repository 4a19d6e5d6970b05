import { createHash, timingSafeEqual } from "node:crypto"
import { BlockList, isIPv6 } from "node:net"
import { HttpServerRequest } from "@effect/platform"
import { Effect, Layer, Option, Redacted } from "effect"
import { AppConfig } from "../Config.ts"
import { AdminAuth, Forbidden, Unauthorized } from "./AdminAuth.ts"

const digest = (text: string) => createHash("sha256").update(text).digest()

/** Compares in constant time (over fixed-length digests), so the answer's timing says nothing about the token. */
const sameToken = (given: string, expected: string) => timingSafeEqual(digest(given), digest(expected))

const loopback = new BlockList()
loopback.addSubnet("127.0.0.0", 8, "ipv4")
loopback.addAddress("::1", "ipv6")

/** Whether a client address is this machine's loopback: 127.0.0.0/8, ::1, or 127.x mapped into IPv6. */
export const isLoopback = (address: string): boolean =>
  // BlockList matches IPv4-mapped IPv6 addresses (::ffff:127.0.0.1) against IPv4 rules.
  loopback.check(address, isIPv6(address) ? "ipv6" : "ipv4")

const loopbackOnly =
  "admin endpoints answer only clients on this machine (loopback) while the server has no ADMIN_TOKEN; " +
  "start it with ADMIN_TOKEN and send Authorization: Bearer <token>"

/**
 * The admin check. With ADMIN_TOKEN: the bearer token, from anywhere. Without: loopback clients only (403 for the
 * rest), so a server listening on 0.0.0.0 does not hand its export to the network; said at start-up.
 */
export const AdminAuthLive = Layer.effect(
  AdminAuth,
  Effect.gen(function* () {
    const { adminToken } = yield* AppConfig
    if (Option.isNone(adminToken)) {
      yield* Effect.logWarning(
        "ADMIN_TOKEN is not set: admin endpoints (/snapshots/export) answer only loopback clients (127.0.0.0/8, ::1); " +
          "behind a proxy on this machine every client looks local, so set ADMIN_TOKEN there",
      )
    }
    return AdminAuth.of({
      bearer: (token) =>
        Option.match(adminToken, {
          onNone: () =>
            Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) =>
              Option.exists(request.remoteAddress, isLoopback)
                ? Effect.void
                : Effect.fail(new Forbidden({ message: loopbackOnly })),
            ),
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
