import { Deferred, Effect } from "effect"

/**
 * Told when the server starts draining on shutdown. Responses with no end of their own (event streams) end then,
 * so their clients reconnect elsewhere at once instead of holding the drain until SHUTDOWN_TIMEOUT.
 */
export class ServerDraining extends Effect.Service<ServerDraining>()("http/ServerDraining", {
  effect: Effect.map(Deferred.make<void>(), (draining) => ({
    /** Completes once the drain began. */
    began: Deferred.await(draining),
    /** Starts it (the server, as it stops listening). */
    begin: Deferred.succeed(draining, undefined),
  })),
}) {}
