/**
 * A page's id as the cluster engine's entity id, and back. Percent-encoded: the engine requires its ids non-empty
 * and trimmed, while a page id may begin or end with spaces. Every runner maps ids alike, so they agree on shards.
 */
export const entityIdOf = (page: string): string => encodeURIComponent(page)

export const pageOf = (entityId: string): string => decodeURIComponent(entityId)

/**
 * The header of a forwarded message saying by when (epoch ms, the forwarder's clock) its sender stops waiting: its
 * owner refuses it after that instead of serving it late (a runner paused, then resumed, finds such messages).
 * Runners' clocks are assumed in sync (NTP); a skew moves the cut-off by as much.
 */
export const ANSWER_BY = "x-answer-by"
