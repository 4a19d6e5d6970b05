import { Rpc } from "@effect/rpc"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Schema } from "effect"
import { PageBusy } from "../../src/actors/PageErrors.ts"
import { Page } from "../../src/actors/PageProtocol.ts"

describe("page protocol", () => {
  // A message forwarded to another runner comes back through its exit schema: a refusal the schema does not
  // declare could not be sent back as itself, so the client would see another error than a local request does.
  it.effect.each([...Page.protocol.requests.keys()])(
    "%s carries a full mailbox's PageBusy back as itself",
    (tag) =>
      Effect.gen(function* () {
        const rpc = Page.protocol.requests.get(tag)!
        const schema = Rpc.exitSchema(rpc) as Schema.Schema<Exit.Exit<unknown, unknown>, unknown>
        const busy = Exit.fail(new PageBusy({ message: "too many requests for page p; retry later" }))
        const back = yield* Schema.decodeUnknown(schema)(yield* Schema.encode(schema)(busy))
        expect(back).toEqual(busy)
      }),
  )
})
