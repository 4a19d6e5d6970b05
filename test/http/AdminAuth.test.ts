import { HttpRouter, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Effect, Either, Layer, Redacted } from "effect"
import { AppConfig } from "../../src/Config.ts"
import { AdminAuth } from "../../src/http/AdminAuth.ts"
import { AdminAuthLive, isLoopback } from "../../src/http/AdminAuthLive.ts"

/** The admin check as the server builds it from these environment variables. */
const adminAuth = (env: Record<string, string>) =>
  AdminAuthLive.pipe(
    Layer.provide(AppConfig.Default),
    Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env))))),
  )

/** Runs the check, inside a router as the API does, for a request from `address` with `token` (empty: none). */
const check = (address: string, token = "") =>
  Effect.gen(function* () {
    const auth = yield* AdminAuth
    const app = HttpRouter.empty.pipe(
      HttpRouter.get(
        "/snapshots/export",
        Effect.as(auth.bearer(Redacted.make(token)), HttpServerResponse.empty()),
      ),
    )
    const request = HttpServerRequest.fromWeb(
      new Request("http://service/snapshots/export?format=csv"),
    ).modify({
      remoteAddress: address,
    })
    return yield* app.pipe(
      Effect.provideService(HttpServerRequest.HttpServerRequest, request),
      Effect.scoped,
      Effect.either,
    )
  })

describe("admin auth", () => {
  it("knows loopback addresses: 127.0.0.0/8, ::1 and IPv4-mapped 127.x, nothing else", () => {
    for (const address of [
      "127.0.0.1",
      "127.1.2.3",
      "127.255.255.254",
      "::1",
      "::ffff:127.0.0.1",
      "::ffff:127.9.8.7",
    ])
      expect(isLoopback(address), address).toBe(true)
    for (const address of [
      "10.0.0.1",
      "192.0.2.2",
      "128.0.0.1",
      "0.0.0.0",
      "::",
      "fd00::2",
      "::ffff:10.0.0.1",
      "::2",
    ])
      expect(isLoopback(address), address).toBe(false)
  })

  it.effect("without ADMIN_TOKEN: lets loopback clients through and answers others 403 Forbidden", () =>
    Effect.gen(function* () {
      for (const address of ["127.0.0.1", "::1", "::ffff:127.0.0.1"])
        expect(Either.isRight(yield* check(address)), address).toBe(true)
      for (const address of ["192.0.2.2", "fd00::2", "::ffff:10.1.2.3"]) {
        const refused = yield* check(address, "any-token")
        expect(Either.isLeft(refused) && refused.left._tag, address).toBe("Forbidden")
      }
    }).pipe(Effect.provide(adminAuth({ LOG_LEVEL: "error" }))),
  )

  it.effect("with ADMIN_TOKEN: the bearer token decides, from any address", () =>
    Effect.gen(function* () {
      for (const address of ["127.0.0.1", "192.0.2.2"]) {
        expect(Either.isRight(yield* check(address, "s3cret")), address).toBe(true)
        const missing = yield* check(address)
        expect(Either.isLeft(missing) && missing.left._tag, address).toBe("Unauthorized")
        const wrong = yield* check(address, "other")
        expect(Either.isLeft(wrong) && wrong.left._tag, address).toBe("Unauthorized")
      }
    }).pipe(Effect.provide(adminAuth({ ADMIN_TOKEN: "s3cret" }))),
  )
})
