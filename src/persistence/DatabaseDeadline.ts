import { type Duration, Effect } from "effect"

/**
 * Bounds a database call by `timeout`, end to end: on timeout it fails at once with a TimeoutException and the
 * stuck call is interrupted in the background. Without `disconnect`, the interruption would wait for the driver's
 * cancel (`pg_cancel_backend` over a new connection), which against a stalled server takes another connect timeout.
 * `interruptible`, because the page actor serves its messages in an uninterruptible region: there a timeout could
 * not interrupt the call at all and would wait for it to finish.
 */
export const withDeadline =
  (timeout: Duration.DurationInput) =>
  <A, E, R>(self: Effect.Effect<A, E, R>) =>
    self.pipe(Effect.disconnect, Effect.interruptible, Effect.timeout(timeout))
