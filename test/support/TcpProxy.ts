import { createConnection, createServer, type Server, type Socket } from "node:net"
import { afterAll, beforeAll } from "@effect/vitest"
import { freshStorage, started } from "./ServedStorage.ts"
import { externalStorage } from "./StorageModes.ts"

/**
 * A TCP proxy in front of a server that a test can cut (every connection dropped, new ones refused) or stall
 * (connections stay open, nothing is forwarded either way) and restore, to play a database outage without
 * touching the database itself.
 */
export class TcpProxy {
  private readonly sockets = new Set<Socket>()
  private up = true
  private stalled = false
  private readonly held: Array<[Socket, Buffer]> = []

  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}

  static start(targetHost: string, targetPort: number): Promise<TcpProxy> {
    return new Promise((resolve, reject) => {
      let proxy: TcpProxy | undefined
      const server = createServer((client) => {
        if (proxy === undefined || !proxy.up) {
          client.destroy()
          return
        }
        const upstream = createConnection({ host: targetHost, port: targetPort })
        for (const s of [client, upstream]) {
          proxy.sockets.add(s)
          s.on("close", () => proxy?.sockets.delete(s))
          s.on("error", () => {
            client.destroy()
            upstream.destroy()
          })
        }
        // Forwarded by hand rather than piped, so a stall holds the bytes (in order) instead of passing them on.
        const forward = (to: Socket) => (chunk: Buffer) => {
          if (proxy?.stalled === true) proxy.held.push([to, chunk])
          else to.write(chunk)
        }
        client.on("data", forward(upstream))
        upstream.on("data", forward(client))
        client.on("end", () => upstream.end())
        upstream.on("end", () => client.end())
      })
      server.once("error", reject)
      server.listen(0, "127.0.0.1", () => {
        const address = server.address()
        proxy = new TcpProxy(server, typeof address === "object" && address !== null ? address.port : 0)
        resolve(proxy)
      })
    })
  }

  /** Drops every open connection and refuses new ones. */
  cut(): void {
    this.up = false
    this.held.length = 0
    for (const s of this.sockets) s.destroy()
    this.sockets.clear()
  }

  /** Keeps every connection open and accepts new ones, but forwards nothing until `restore`. */
  stall(): void {
    this.stalled = true
  }

  restore(): void {
    this.up = true
    this.stalled = false
    for (const [to, chunk] of this.held.splice(0)) if (!to.destroyed) to.write(chunk)
  }

  close(): Promise<void> {
    this.cut()
    return new Promise((resolve) => this.server.close(() => resolve()))
  }
}

/**
 * Registers, in the enclosing `describe`, a fresh database on DATABASE_URL's server (else the machine's own
 * Postgres: an outage needs a database outside the process) and a TCP proxy in front of it, made before its tests
 * and removed after them (after what later hooks of the `describe` started). `url` reaches the database through
 * the proxy; `storage` reaches it directly.
 */
export const proxiedDatabase = () => {
  const storage = freshStorage(externalStorage)
  let proxy: TcpProxy | undefined
  let url: string | undefined
  beforeAll(async () => {
    const direct = new URL(storage.current.env.DATABASE_URL ?? "")
    proxy = await TcpProxy.start(direct.hostname, Number(direct.port || 5432))
    direct.host = `127.0.0.1:${proxy.port}`
    url = direct.toString()
  })
  afterAll(async () => {
    await proxy?.close()
  })
  return {
    get storage() {
      return storage.current
    },
    get proxy() {
      return started(proxy)
    },
    get url() {
      return started(url)
    },
  }
}
