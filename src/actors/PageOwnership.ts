import { Context } from "effect"

/**
 * Which pages this process serves itself. In cluster mode a page belongs to the runner holding its shard; the host
 * serves only those (PageActorHost's synchronous paths ask here) and the router forwards the rest. Absent (one
 * process): every page is local, and nothing is asked.
 */
export class PageOwnership extends Context.Tag("actors/PageOwnership")<
  PageOwnership,
  {
    /** Whether this runner holds the page's shard now. Synchronous and cheap: asked on the fast path. */
    readonly isLocal: (page: string) => boolean
  }
>() {}
