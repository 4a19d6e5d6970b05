import { Sse } from "@effect/experimental"
import { sleep } from "./ClickLoad.ts"

/** A page's event stream (`GET /pages/{id}/events`) as a browser's EventSource reads it. */
export interface EventWatcher {
  readonly headers: Headers
  /** What arrived so far, as sent. */
  readonly text: () => string
  /** The events parsed so far. */
  readonly events: ReadonlyArray<Sse.Event>
  /** Resolves once `enough` holds of the events, or rejects after `timeoutMs` (saying what was `expected`). */
  readonly until: (
    enough: (events: ReadonlyArray<Sse.Event>) => boolean,
    options?: { readonly timeoutMs?: number; readonly expected?: unknown },
  ) => Promise<ReadonlyArray<Sse.Event>>
}

/**
 * Opens a page's event stream and reads it as it comes, as a browser does (a stream left unread under load stalls
 * Node's fetch: nothing more arrives even once it is read again), until `signal` aborts.
 */
export const watchEvents = async (url: string, page: string, signal: AbortSignal): Promise<EventWatcher> => {
  const response = await fetch(`${url}/pages/${encodeURIComponent(page)}/events`, { signal })
  if (response.status !== 200 || response.body === null)
    throw new Error(`the event stream answered ${response.status}: ${await response.text()}`)
  const events: Array<Sse.Event> = []
  let text = ""
  const parser = Sse.makeParser((event) => {
    if (event._tag === "Event") events.push(event)
  })
  const reader = response.body.getReader()
  const decoder = new TextDecoder()
  let ended: string | undefined
  void (async () => {
    for (;;) {
      const { value, done } = await reader.read()
      if (done) {
        ended = "the server ended the stream"
        return
      }
      const chunk = decoder.decode(value, { stream: true })
      text += chunk
      parser.feed(chunk)
    }
  })().catch((e: unknown) => {
    ended = String(e) // aborted: the watcher is done
  })
  return {
    headers: response.headers,
    text: () => text,
    events,
    until: async (enough, { timeoutMs = 10_000, expected } = {}) => {
      const start = Date.now()
      while (!enough(events)) {
        if (Date.now() - start > timeoutMs)
          throw new Error(
            `not told enough within ${timeoutMs} ms (${ended ?? "the stream is open"}); told ${JSON.stringify(latestClusters(events))}, expected ${JSON.stringify(expected)}`,
          )
        await sleep(20)
      }
      return events
    },
  }
}

/** Each cluster's latest state told by `events` (their data: a cluster as `GET /pages/{id}/clusters` lists it). */
export const latestClusters = (events: ReadonlyArray<Sse.Event>) =>
  [
    ...new Map(events.map((e) => [JSON.parse(e.data).cluster_idx as number, JSON.parse(e.data)])).values(),
  ].sort((a, b) => a.cluster_idx - b.cluster_idx)
