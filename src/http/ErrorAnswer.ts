import { Either, type Schema } from "effect"
import { errorAnswersOf } from "./Answers.ts"

/** A `Schema.TaggedError` class: the schema of its instances, which also names their tag. */
type TaggedErrorSchema = Schema.Schema.AnyNoContext & { readonly _tag: string }

/**
 * How the errors of a path answered outside the HttpApi (the server's own answers to connections) are written:
 * the status each error's schema declares and its JSON body, exactly as the HttpApi encodes them (Answers.ts).
 */
export const errorAnswers = <const Members extends ReadonlyArray<TaggedErrorSchema>>(...members: Members) => {
  const encode = errorAnswersOf(members)
  return (error: Schema.Schema.Type<Members[number]> & { readonly _tag: string }) =>
    Either.getOrElse(encode(error), () => ({
      // Only errors of the listed classes type-check here, so they always encode.
      status: 500,
      body: JSON.stringify({ _tag: error._tag, message: "unexpected error" }),
    }))
}
