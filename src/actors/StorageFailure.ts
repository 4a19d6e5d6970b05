import { Effect } from "effect"
import { StorageUnavailable } from "./PageErrors.ts"

/** A failed or timed-out database read, logged with its cause and answered as 503. */
export const storageUnavailable = (what: string) => (cause: unknown) =>
  Effect.logWarning(`${what} failed`, cause).pipe(
    Effect.zipRight(new StorageUnavailable({ message: `${what} failed; retry` })),
  )
