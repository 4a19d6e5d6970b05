import { type Duration, Effect } from "effect"
import { storageUnavailable } from "./StorageErrors.ts"

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

/** A read served to a client: bounded by `timeout`, any failure answered 503 ("<what> failed; retry"). */
export const readOrUnavailable =
  (timeout: Duration.DurationInput, what: string) =>
  <A, E, R>(self: Effect.Effect<A, E, R>) =>
    self.pipe(withDeadline(timeout), Effect.catchAll(storageUnavailable(what)))
