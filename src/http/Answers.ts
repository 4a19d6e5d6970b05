import { HttpApiSchema } from "@effect/platform"
import { Either, ParseResult, Schema, SchemaAST } from "effect"
import { plainCheckOf, Undecided } from "./PlainSchema.ts"
import type { Declared, DeclaredEndpoint, DeclaredGroup } from "./Routes.ts"

/** An answer ready to write on a `node:http` response: what the HttpApi would write for the same value. */
export interface Answer {
  readonly status: number
  /** undefined for an empty body. */
  readonly contentType: string | undefined
  readonly body: string
}

const isAnswer = (u: unknown): u is Answer =>
  typeof u === "object" && u !== null && "status" in u && "body" in u && "contentType" in u
const AnswerSchema = Schema.declare(isAnswer)

/**
 * The members of a declared union, each carrying the union's annotations, as the framework splits a success or
 * error schema into the responses it may write (`HttpApiSchema.deunionize`).
 */
const membersOf = (ast: SchemaAST.AST): ReadonlyArray<SchemaAST.AST> =>
  SchemaAST.isUnion(ast)
    ? ast.types.map((member) => SchemaAST.annotations(member, { ...ast.annotations, ...member.annotations }))
    : [ast]

/**
 * One member as an answer: its declared status (or the default), an empty body for `void`, otherwise the encoded
 * value as JSON (`JSON.stringify`, what `HttpServerResponse.json` writes) or as text, in its declared media type.
 * The same construction as HttpApiBuilder's `toResponseSchema`, with an `Answer` where it builds a response.
 */
const toAnswer = (getStatus: (ast: SchemaAST.AST) => number) => (ast: SchemaAST.AST) => {
  const status = getStatus(ast)
  const empty = HttpApiSchema.isVoid(ast)
  const encoding = HttpApiSchema.getEncoding(ast)
  return Schema.transformOrFail(AnswerSchema, Schema.make<unknown, unknown, never>(ast), {
    strict: true,
    decode: (answer, _, transformation) =>
      ParseResult.fail(new ParseResult.Forbidden(transformation, answer, "Encode only schema")),
    encode: (data, _, transformation): Either.Either<Answer, ParseResult.ParseIssue> => {
      if (empty) return Either.right({ status, contentType: undefined, body: "" })
      if (encoding.kind === "Json") {
        try {
          return Either.right({ status, contentType: encoding.contentType, body: JSON.stringify(data) })
        } catch (error) {
          return Either.left(new ParseResult.Type(transformation, error, "Could not encode to JSON"))
        }
      }
      if (encoding.kind === "Text" && typeof data === "string")
        return Either.right({ status, contentType: encoding.contentType, body: data })
      return Either.left(new ParseResult.Type(transformation, data, `cannot write ${encoding.kind} answers`))
    },
  })
}

const encoderOf = (getStatus: (ast: SchemaAST.AST) => number, members: ReadonlyArray<SchemaAST.AST>) =>
  Schema.encodeUnknownEither(Schema.Union(...members.map(toAnswer(getStatus))))

/**
 * An endpoint's success values as answers, as the HttpApi encodes them (Schema encode, then JSON). A success of
 * one JSON member without transformations is checked by its plain check (PlainSchema.ts: what encoding it would
 * give, without the parser's machinery); a value the check does not accept gets the parser's own answer.
 */
export const successAnswers = (endpoint: DeclaredEndpoint) => {
  const members = membersOf(endpoint.successSchema.ast)
  const encode = encoderOf(HttpApiSchema.getStatusSuccessAST, members)
  const only = members.length === 1 ? members[0] : undefined
  if (only === undefined || HttpApiSchema.isVoid(only)) return encode
  const encoding = HttpApiSchema.getEncoding(only)
  const plain = plainCheckOf(only)
  if (plain === undefined || encoding.kind !== "Json") return encode
  const status = HttpApiSchema.getStatusSuccessAST(only)
  const contentType = encoding.contentType
  return (value: unknown): Either.Either<Answer, ParseResult.ParseError> => {
    const encoded = plain(value)
    return encoded === Undecided
      ? encode(value)
      : Either.right({ status, contentType, body: JSON.stringify(encoded) })
  }
}

/** Errors of the given schemas as answers, with the status each declares (500 when it declares none). */
export const errorAnswersOf = (schemas: ReadonlyArray<Declared>) => {
  const members = new Set<SchemaAST.AST>()
  for (const schema of schemas) for (const member of membersOf(schema.ast)) members.add(member)
  return encoderOf(HttpApiSchema.getStatusErrorAST, Array.from(members))
}

/**
 * Every error an API may answer, encoded as its HttpApi encodes a failure: the API's errors, then each group's
 * endpoints' and the group's own (the framework's `makeErrorSchema`), so one error class answers alike anywhere.
 */
export const apiErrorAnswers = (api: {
  readonly errorSchema: Declared
  readonly groups: { readonly [name: string]: DeclaredGroup }
}) => {
  const schemas: Array<Declared> = [api.errorSchema]
  for (const group of Object.values(api.groups)) {
    for (const endpoint of Object.values(group.endpoints)) schemas.push(endpoint.errorSchema)
    schemas.push(group.errorSchema)
  }
  return errorAnswersOf(schemas)
}
