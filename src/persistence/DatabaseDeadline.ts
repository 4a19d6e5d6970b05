import { type Duration, Effect } from "effect"

/**
 * Bounds a database call by `timeout`, end to end: on timeout it fails at once with a TimeoutException and the
 * stuck call is interrupted in the background. Without `disconnect`, the interruption would wait for the driver's
 * cancel (`pg_cancel_backend` over a new connection), which against a stalled server takes another connect timeout.
 */
export const withDeadline =
  (timeout: Duration.DurationInput) =>
  <A, E, R>(self: Effect.Effect<A, E, R>) =>
    self.pipe(Effect.disconnect, Effect.timeout(timeout))
