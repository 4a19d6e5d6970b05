import { Either, Option, type ParseResult, Schema, SchemaAST } from "effect"

/** What a plain check answers when it cannot accept a value: the schema itself must decide (and say why). */
export const Undecided: unique symbol = Symbol.for("http/PlainSchema/Undecided")
export type Undecided = typeof Undecided

/** A schema's accepting half as a plain function: the parsed value, or `Undecided`. */
export type PlainCheck<A> = (input: unknown) => A | Undecided

type Check = (input: unknown) => unknown

const keyword =
  (is: (input: unknown) => boolean): Check =>
  (input) =>
    is(input) ? input : Undecided

/** A member of a union the plain check may try in declaration order: one the parser never buckets by a literal. */
const isScalar = (ast: SchemaAST.AST): boolean =>
  SchemaAST.isRefinement(ast) ? isScalar(ast.from) : !SchemaAST.isTypeLiteral(ast) && !SchemaAST.isUnion(ast)

const compile = (ast: SchemaAST.AST): Check | undefined => {
  switch (ast._tag) {
    case "StringKeyword":
      return keyword((u) => typeof u === "string")
    case "NumberKeyword":
      return keyword((u) => typeof u === "number")
    case "BooleanKeyword":
      return keyword((u) => typeof u === "boolean")
    case "UndefinedKeyword":
      return keyword((u) => u === undefined)
    case "Literal": {
      const literal = ast.literal
      return keyword((u) => u === literal)
    }
    case "Refinement": {
      const from = compile(ast.from)
      if (from === undefined) return undefined
      // The refinement's own filter, called as the parser calls it: it accepts exactly what the schema accepts.
      return (input) => {
        const value = from(input)
        return value !== Undecided && Option.isNone(ast.filter(value, SchemaAST.defaultParseOption, ast))
          ? value
          : Undecided
      }
    }
    case "TypeLiteral": {
      if (ast.indexSignatures.length > 0) return undefined
      const properties: Array<readonly [PropertyKey, Check, boolean]> = []
      for (const ps of ast.propertySignatures) {
        const check = compile(ps.type)
        if (check === undefined) return undefined
        properties.push([ps.name, check, ps.isOptional])
      }
      if (properties.length === 0) return keyword((u) => u !== null && u !== undefined)
      // As the parser builds its output: the declared properties in their order, unknown ones dropped.
      return (input) => {
        if (typeof input !== "object" || input === null || Array.isArray(input)) return Undecided
        const record = input as Record<PropertyKey, unknown>
        const output: Record<PropertyKey, unknown> = {}
        for (const [name, check, optional] of properties) {
          if (optional && !Object.hasOwn(record, name)) continue
          const value = check(record[name])
          if (value === Undecided) return Undecided
          output[name] = value
        }
        return output
      }
    }
    case "Union": {
      if (!ast.types.every(isScalar)) return undefined
      const members: Array<Check> = []
      for (const member of ast.types) {
        const check = compile(member)
        if (check === undefined) return undefined
        members.push(check)
      }
      // The parser tries such members in declaration order and keeps the first that accepts.
      return (input) => {
        for (const member of members) {
          const value = member(input)
          if (value !== Undecided) return value
        }
        return Undecided
      }
    }
    default:
      // Transformations, declarations, tuples, suspensions…: left to the schema.
      return undefined
  }
}

/**
 * A schema without transformations (structs, unions of scalars, refinements of keywords, literals) as a plain
 * check that allocates nothing but its output: what the fast lane runs per request instead of the schema's parser,
 * whose general machinery (Either, issues, candidates) costs several times the work. It answers exactly what the
 * schema's parser answers for every value it accepts (for such a schema, decoding and encoding agree), and
 * `Undecided` for anything else, which the caller hands to the schema itself, so refusals and their messages stay
 * the schema's. Undefined when the schema has anything the check does not cover.
 */
export const plainCheck = <A, I, R>(schema: Schema.Schema<A, I, R>): PlainCheck<A> | undefined =>
  plainCheckOf(schema.ast) as PlainCheck<A> | undefined

/** `plainCheck` of an AST (a member of a declared union, say). */
export const plainCheckOf = (ast: SchemaAST.AST): PlainCheck<unknown> | undefined => compile(ast)

/**
 * A schema's decoder that tries its plain check first: a valid input is decoded without the parser's machinery;
 * anything the check does not accept gets the parser's own answer.
 */
export const decodePlainFirst = <A, I>(schema: Schema.Schema<A, I>, options?: SchemaAST.ParseOptions) => {
  const decode = Schema.decodeUnknownEither(schema, options)
  const plain = plainCheck(schema)
  if (plain === undefined) return decode
  return (input: unknown): Either.Either<A, ParseResult.ParseError> => {
    const value = plain(input)
    return value === Undecided ? decode(input) : Either.right(value)
  }
}
