import { lookup } from "node:dns"
import { BlockList, isIP, type LookupFunction } from "node:net"
import { Effect } from "effect"

/**
 * Where a webhook may be sent (server-side request forgery): never to link-local addresses (cloud metadata
 * services live there: 169.254.169.254, fe80::/10), the other known metadata addresses, unspecified or
 * multicast ones; and to loopback and private networks only when WEBHOOK_ALLOW_PRIVATE is set (tests, or a
 * receiver on the same network on purpose). Node's own BlockList matches the ranges.
 */
const never = new BlockList()
never.addSubnet("169.254.0.0", 16, "ipv4")
never.addSubnet("fe80::", 10, "ipv6")
never.addAddress("100.100.100.200", "ipv4") // Alibaba Cloud's metadata service
never.addAddress("fd00:ec2::254", "ipv6") // AWS's metadata service over IPv6
never.addSubnet("0.0.0.0", 8, "ipv4")
never.addAddress("::", "ipv6")
never.addSubnet("224.0.0.0", 4, "ipv4")
never.addSubnet("240.0.0.0", 4, "ipv4")
never.addSubnet("ff00::", 8, "ipv6")

const privateNetworks = new BlockList()
privateNetworks.addSubnet("127.0.0.0", 8, "ipv4")
privateNetworks.addAddress("::1", "ipv6")
privateNetworks.addSubnet("10.0.0.0", 8, "ipv4")
privateNetworks.addSubnet("172.16.0.0", 12, "ipv4")
privateNetworks.addSubnet("192.168.0.0", 16, "ipv4")
privateNetworks.addSubnet("100.64.0.0", 10, "ipv4")
privateNetworks.addSubnet("fc00::", 7, "ipv6")

/** An IPv4 address written as IPv6 (::ffff:a.b.c.d) is checked as the IPv4 address it is. */
const unmapped = (address: string) => {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)
  return mapped === null ? address : mapped[1]!
}

/** Why a webhook may not go to `address` (an IP), or undefined when it may. */
export const refusedAddress = (address: string, allowPrivate: boolean): string | undefined => {
  const ip = unmapped(address)
  const family = isIP(ip) === 6 ? "ipv6" : "ipv4"
  if (never.check(ip, family)) return `${address} is a link-local, metadata, unspecified or multicast address`
  if (!allowPrivate && privateNetworks.check(ip, family))
    return `${address} is a loopback or private address (allowed only with WEBHOOK_ALLOW_PRIVATE=true)`
  return undefined
}

/** A URL's host without the brackets of an IPv6 literal. */
const hostOf = (url: URL) => url.hostname.replace(/^\[(.*)\]$/, "$1")

/**
 * Checks a subscription's URL: http or https, a host whose every address (resolved now) may be sent to.
 * Fails with the reason.
 */
export const checkTarget = (raw: string, allowPrivate: boolean): Effect.Effect<URL, string> =>
  Effect.gen(function* () {
    const url = URL.canParse(raw) ? new URL(raw) : undefined
    if (url === undefined) return yield* Effect.fail("url must be an absolute http or https URL")
    if (url.protocol !== "http:" && url.protocol !== "https:")
      return yield* Effect.fail("url must use http or https")
    const host = hostOf(url)
    const addresses =
      isIP(host) !== 0
        ? [host]
        : yield* Effect.async<ReadonlyArray<string>, string>((resume) =>
            lookup(host, { all: true }, (error, found) =>
              resume(
                error === null
                  ? Effect.succeed(found.map((a) => a.address))
                  : Effect.fail(`url's host ${host} does not resolve (${error.code ?? error.message})`),
              ),
            ),
          )
    for (const address of addresses) {
      const refused = refusedAddress(address, allowPrivate)
      if (refused !== undefined) return yield* Effect.fail(`url's host ${host} resolves to ${refused}`)
    }
    return url
  })

/**
 * The DNS lookup the delivery client connects with: the addresses a name resolves to are checked as they are
 * connected to, so a name that resolved to a public address when the subscription was made cannot later lead
 * the service into its own network (DNS rebinding). IP literals are not looked up: `refusedAddress` checks them
 * before sending.
 */
export const guardedLookup =
  (allowPrivate: boolean): LookupFunction =>
  (hostname, options, callback) => {
    lookup(hostname, { ...options, all: true }, (error, addresses) => {
      if (error !== null) return callback(error, "", 4)
      const refused = addresses
        .map((a) => refusedAddress(a.address, allowPrivate))
        .find((r) => r !== undefined)
      if (refused !== undefined) {
        const denied = Object.assign(new Error(`refused: ${hostname} resolves to ${refused}`), {
          code: "EWEBHOOKTARGET",
        })
        return callback(denied, "", 4)
      }
      if (options.all === true) return callback(null, addresses)
      const first = addresses[0]
      return first === undefined
        ? callback(Object.assign(new Error(`${hostname} has no address`), { code: "ENOTFOUND" }), "", 4)
        : callback(null, first.address, first.family)
    })
  }

/** Whether a webhook may be sent to the URL's host when it is an IP literal; the reason when not. */
export const refusedLiteral = (url: string, allowPrivate: boolean): string | undefined => {
  const host = URL.canParse(url) ? hostOf(new URL(url)) : ""
  return isIP(host) === 0 ? undefined : refusedAddress(host, allowPrivate)
}
