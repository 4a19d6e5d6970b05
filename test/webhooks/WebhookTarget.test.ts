import { describe, expect, it } from "@effect/vitest"
import { Effect, Either } from "effect"
import { checkTarget, refusedAddress } from "../../src/webhooks/WebhookTarget.ts"

describe("webhook targets (server-side request forgery)", () => {
  it("never link-local, metadata, unspecified or multicast addresses, whatever the configuration", () => {
    for (const address of [
      "169.254.169.254",
      "169.254.0.1",
      "fe80::1",
      "100.100.100.200",
      "fd00:ec2::254",
      "0.0.0.0",
      "::",
      "224.0.0.1",
      "::ffff:169.254.169.254",
    ]) {
      expect(refusedAddress(address, true), address).toBeDefined()
      expect(refusedAddress(address, false), address).toBeDefined()
    }
  })

  it("loopback and private networks only with WEBHOOK_ALLOW_PRIVATE; public addresses always", () => {
    for (const address of [
      "127.0.0.1",
      "::1",
      "10.1.2.3",
      "172.16.0.1",
      "192.168.1.1",
      "fc00::1",
      "::ffff:127.0.0.1",
    ]) {
      expect(refusedAddress(address, false), address).toMatch(/WEBHOOK_ALLOW_PRIVATE/)
      expect(refusedAddress(address, true), address).toBeUndefined()
    }
    for (const address of ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "172.32.0.1"]) {
      expect(refusedAddress(address, false), address).toBeUndefined()
    }
  })

  it.effect("checks a URL's scheme and every address its host resolves to", () =>
    Effect.gen(function* () {
      const outcome = (url: string, allowPrivate: boolean) =>
        Effect.either(checkTarget(url, allowPrivate)).pipe(Effect.map(Either.isRight))
      expect(yield* outcome("http://127.0.0.1:9/hook", true)).toBe(true)
      expect(yield* outcome("http://127.0.0.1:9/hook", false)).toBe(false)
      expect(yield* outcome("http://localhost:9/hook", false)).toBe(false)
      expect(yield* outcome("http://[::1]:9/hook", false)).toBe(false)
      expect(yield* outcome("https://169.254.169.254/", true)).toBe(false)
      expect(yield* outcome("file:///etc/passwd", true)).toBe(false)
      expect(yield* outcome("gopher://127.0.0.1/", true)).toBe(false)
    }),
  )
})
