import { type IncomingMessage, type Server, type ServerResponse, STATUS_CODES } from "node:http"
import { Server as NetServer, type Socket } from "node:net"
import type { Duplex } from "node:stream"
import { MalformedRequest } from "./Api.ts"
import {
  type ConnectionError,
  clientErrorOf,
  connectionErrorAnswer,
  ExpectationFailed,
  shuttingDown,
} from "./ConnectionErrors.ts"

/** Set on every answer, both lanes and the server's own: browsers must not guess a content type. */
export const securityHeaders = { "x-content-type-options": "nosniff" } as const

/**
 * How long a keep-alive connection must have been idle during a drain before it is closed: a request already on
 * its way when the drain began still arrives and is answered (503, `connection: close`) instead of being reset.
 */
const idleGraceMs = 500
const sweepEveryMs = 100

/** An error answer as raw HTTP/1.1, for a socket on which no response object exists (Node could not parse one). */
const rawAnswer = (error: ConnectionError) => {
  const { status, body } = connectionErrorAnswer(error)
  return [
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ""}`,
    "content-type: application/json",
    `content-length: ${Buffer.byteLength(body)}`,
    "connection: close",
    `x-content-type-options: ${securityHeaders["x-content-type-options"]}`,
    "",
    body,
  ].join("\r\n")
}

/** Answers an error through the request's response object and closes the connection after it. */
export const answerClosing = (response: ServerResponse, error: ConnectionError) => {
  const { status, body } = connectionErrorAnswer(error)
  response.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(body),
    connection: "close",
    ...securityHeaders,
  })
  response.end(body)
}

/**
 * The Node server's connections, for what neither lane can do: JSON answers to requests Node could not read (its
 * own 400/408/431 have no body), and a graceful drain on shutdown. Draining stops listening, lets in-flight
 * requests finish with `connection: close`, answers requests that still arrive on open keep-alive connections
 * 503 `connection: close`, closes connections once idle, and reports when the last one is gone.
 */
export class ServerConnections {
  private readonly sockets = new Set<Socket>()
  /** Responses not yet finished, with their connection (a finished response forgets its socket). */
  private readonly open = new Map<ServerResponse, Socket>()
  /** During a drain: since when each connection has had nothing in flight. */
  private readonly idleSince = new Map<Socket, number>()
  private draining = false
  private drained = false
  private sweeper: ReturnType<typeof setInterval> | undefined
  private readonly onDrained: Array<() => void> = []

  /** A finished response's `close` listener, one for all (`this` is the response): none is made per request. */
  private readonly forget: (this: ServerResponse) => void

  constructor(private readonly server: Server) {
    const { open, idleSince } = this
    const connections = this
    this.forget = function (this: ServerResponse) {
      const socket = open.get(this)
      open.delete(this)
      if (connections.draining && socket !== undefined) idleSince.set(socket, performance.now())
    }
    server.on("connection", (socket: Socket) => {
      this.sockets.add(socket)
      socket.once("close", () => {
        this.sockets.delete(socket)
        this.idleSince.delete(socket)
      })
    })
    server.on("clientError", (error: NodeJS.ErrnoException, socket: Duplex) =>
      this.clientError(error, socket),
    )
    server.on("checkExpectation", (request: IncomingMessage, response: ServerResponse) => {
      this.track(request, response)
      answerClosing(
        response,
        new ExpectationFailed({ message: `unsupported Expect: ${request.headers.expect ?? ""}` }),
      )
    })
  }

  /**
   * Every request passes here before the lanes: false when it was answered here (the server drains, or an
   * HTTP/1.1 request without Host, which Node would refuse with an empty 400).
   */
  admit(request: IncomingMessage, response: ServerResponse): boolean {
    this.track(request, response)
    if (this.draining) {
      // Read the body first: closing a socket with unread data resets it, and the client would lose the answer.
      request.once("end", () => answerClosing(response, shuttingDown()))
      request.resume()
      return false
    }
    if (
      request.httpVersionMajor === 1 &&
      request.httpVersionMinor === 1 &&
      request.headers.host === undefined
    ) {
      answerClosing(response, new MalformedRequest({ message: "an HTTP/1.1 request needs a Host header" }))
      return false
    }
    return true
  }

  /** Connections open right now. */
  get connections(): number {
    return this.sockets.size
  }

  /** Starts draining (once); `done` runs when the server no longer listens and every connection is closed. */
  drain(done: () => void): void {
    if (this.drained) {
      done()
      return
    }
    this.onDrained.push(done)
    if (this.draining) return
    this.draining = true
    for (const response of this.open.keys()) {
      if (!response.headersSent) response.setHeader("connection", "close")
    }
    const now = performance.now()
    for (const socket of this.sockets) this.idleSince.set(socket, now)
    // net.Server's close: stop listening, call back once every connection is gone. http.Server's own close() would
    // also destroy idle keep-alive connections at once, resetting requests already on their way.
    NetServer.prototype.close.call(this.server, () => {
      this.drained = true
      clearInterval(this.sweeper)
      for (const callback of this.onDrained.splice(0)) callback()
    })
    this.sweeper = setInterval(() => this.sweep(), sweepEveryMs)
  }

  /** Destroys every connection still open (the drain's deadline passed); answers how many there were. */
  cutAll(): number {
    const count = this.sockets.size
    for (const socket of this.sockets) socket.destroy()
    return count
  }

  private track(request: IncomingMessage, response: ServerResponse) {
    this.open.set(response, request.socket)
    response.on("close", this.forget)
  }

  private busySockets() {
    return new Set(this.open.values())
  }

  /** Closes connections idle for the grace period; the check repeats after I/O so a request just read wins. */
  private sweep() {
    const cutoff = performance.now() - idleGraceMs
    const busy = this.busySockets()
    const idle = Array.from(this.sockets).filter(
      (socket) => !busy.has(socket) && (this.idleSince.get(socket) ?? cutoff) <= cutoff,
    )
    if (idle.length === 0) return
    setImmediate(() => {
      const stillBusy = this.busySockets()
      for (const socket of idle) if (!stillBusy.has(socket)) socket.destroy()
    })
  }

  /**
   * Node's `clientError`: the request could not be parsed or did not arrive in time. Answered with JSON when no
   * answer has started on the connection (through the request's response when it already has one), then closed.
   */
  private clientError(error: NodeJS.ErrnoException, socket: Duplex) {
    const answer = clientErrorOf(error)
    let pending: ServerResponse | undefined
    for (const [response, owner] of this.open) if (owner === socket) pending = response
    if (answer !== undefined && pending !== undefined && !pending.headersSent) {
      answerClosing(pending, answer)
      pending.once("finish", () => socket.destroy())
    } else if (answer !== undefined && pending === undefined && socket.writable) {
      socket.end(rawAnswer(answer), () => socket.destroy())
    } else {
      socket.destroy()
    }
  }
}
