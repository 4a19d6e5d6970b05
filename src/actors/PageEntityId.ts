/**
 * A page's id as the cluster engine's entity id, and back. Percent-encoded: the engine requires its ids non-empty
 * and trimmed, while a page id may begin or end with spaces. Every runner maps ids alike, so they agree on shards.
 */
export const entityIdOf = (page: string): string => encodeURIComponent(page)

export const pageOf = (entityId: string): string => decodeURIComponent(entityId)
