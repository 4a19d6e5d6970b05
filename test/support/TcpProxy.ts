import { createConnection, createServer, type Server, type Socket } from "node:net"

/**
 * A TCP proxy in front of a server that a test can cut (every connection dropped, new ones refused) and restore,
 * to play a database outage without touching the database itself.
 */
export class TcpProxy {
  private readonly sockets = new Set<Socket>()
  private up = true

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
        client.pipe(upstream)
        upstream.pipe(client)
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
    for (const s of this.sockets) s.destroy()
    this.sockets.clear()
  }

  restore(): void {
    this.up = true
  }

  close(): Promise<void> {
    this.cut()
    return new Promise((resolve) => this.server.close(() => resolve()))
  }
}
