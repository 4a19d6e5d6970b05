import { HttpApiSchema } from "@effect/platform"
import { Schema } from "effect"

/** A `Schema.TaggedError` class: the schema of its instances, which also names their tag. */
type TaggedErrorSchema = Schema.Schema.AnyNoContext & { readonly _tag: string }

/**
 * How the errors of a path answered outside the HttpApi (the fast lane, the server's own answers) are written: the
 * status each error's schema declares and its JSON body, exactly as the HttpApi encodes them. One table, built from
 * the error classes themselves, so no status is stated twice.
 */
export const errorAnswers = <const Members extends ReadonlyArray<TaggedErrorSchema>>(...members: Members) => {
  const byTag = new Map(
    members.map((m) => [
      m._tag,
      { status: HttpApiSchema.getStatus(m.ast, 500), encode: Schema.encodeUnknownSync(m) },
    ]),
  )
  return (error: Schema.Schema.Type<Members[number]> & { readonly _tag: string }) => {
    const member = byTag.get(error._tag)
    // Only errors of the listed classes type-check here, so a member is always found.
    return member === undefined
      ? { status: 500, body: JSON.stringify({ _tag: error._tag, message: "unexpected error" }) }
      : { status: member.status, body: JSON.stringify(member.encode(error)) }
  }
}
