import type { Deferred, Option } from "effect"
import type { ClusterSummary } from "../domain/PageClusters.ts"
import type { CommitError, CommitTicket } from "../persistence/CommitTicket.ts"
import type { StorageUnavailable } from "../persistence/StorageErrors.ts"

/** The answer to a save: decided at once, acknowledged to the client once `committed` settles without error. */
export interface SaveReply {
  readonly clusterIdx: number
  readonly isNew: boolean
  readonly committed: CommitTicket
}

/** Why a save was not acknowledged. */
export type SaveError = CommitError

type Reply<A> = Deferred.Deferred<A, StorageUnavailable>

/** The messages a page actor serves, one at a time in arrival order; each carries where its reply goes. */
export type PageMessage =
  | {
      readonly _tag: "Save"
      readonly x: number
      readonly y: number
      /** The client's idempotency key (a lower-case UUID), if it sent one. */
      readonly requestId: string | null
      /** `performance.now()` by which the save must be answered: sent + DB_TIMEOUT, however long it waited. */
      readonly deadline: number
      readonly reply: Deferred.Deferred<SaveReply, SaveError>
    }
  | { readonly _tag: "Predict"; readonly x: number; readonly y: number; readonly reply: Reply<number | null> }
  | { readonly _tag: "Largest"; readonly reply: Reply<Option.Option<number>> }
  | { readonly _tag: "Clusters"; readonly reply: Reply<ReadonlyArray<ClusterSummary>> }
