import { Effect } from "effect"
import type { IdempotencyConflict, StorageUnavailable } from "./StorageErrors.ts"

/** Why a click was not committed. */
export type CommitError = StorageUnavailable | IdempotencyConflict

type Listener = (error: CommitError | undefined) => void

/**
 * The pending commit of one click: settled once by the click log writer, observed by any number of listeners.
 * A plain callback object rather than a Deferred, so the HTTP fast lane can wait for a commit without a fiber;
 * `await` is the same wait as an effect.
 */
export class CommitTicket {
  /** undefined while pending; then `null` (committed) or the reason it was not. */
  private outcome: CommitError | null | undefined = undefined
  private listeners: Array<Listener> | Listener | undefined = undefined

  /** A ticket that is already committed (a click stored in an earlier life of the page). */
  static readonly committed: CommitTicket = (() => {
    const ticket = new CommitTicket()
    ticket.settle(undefined)
    return ticket
  })()

  get settled(): boolean {
    return this.outcome !== undefined
  }

  /** Calls `listener` once the commit is decided (at once when it already is). */
  onSettled(listener: Listener): void {
    if (this.outcome !== undefined) listener(this.outcome ?? undefined)
    else if (this.listeners === undefined) this.listeners = listener
    else if (typeof this.listeners === "function") this.listeners = [this.listeners, listener]
    else this.listeners.push(listener)
  }

  /** Decides the commit; later calls are ignored. */
  settle(error: CommitError | undefined): void {
    if (this.outcome !== undefined) return
    this.outcome = error ?? null
    const listeners = this.listeners
    this.listeners = undefined
    if (listeners === undefined) return
    if (typeof listeners === "function") {
      listeners(error)
      return
    }
    // Every listener hears the outcome, even when one of them throws; the first throw is rethrown afterwards.
    let thrown: { readonly defect: unknown } | undefined
    for (const listener of listeners) {
      try {
        listener(error)
      } catch (defect) {
        thrown ??= { defect }
      }
    }
    if (thrown !== undefined) throw thrown.defect
  }

  /** Succeeds once the click is committed; fails with the reason it was not. */
  get await(): Effect.Effect<void, CommitError> {
    return Effect.async<void, CommitError>((resume) =>
      this.onSettled((error) => resume(error === undefined ? Effect.void : Effect.fail(error))),
    )
  }
}
