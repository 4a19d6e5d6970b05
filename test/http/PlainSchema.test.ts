import { describe, expect, it } from "@effect/vitest"
import { Either, Schema } from "effect"
import fc from "fast-check"
import { Click, IdempotencyHeaders, PredictResult, SaveClick, SaveResult } from "../../src/http/Api.ts"
import { plainCheck, Undecided } from "../../src/http/PlainSchema.ts"

/** Values near the schemas' edges: valid clicks, clicks one field off, and anything at all. */
const coordinate = fc.oneof(
  fc.double({ min: 0, max: 1, noNaN: true }),
  fc.constantFrom(-0, 0, 1, -1e-9, 1 + 1e-9, Number.NaN, Number.POSITIVE_INFINITY, "0.5", null),
)
const pageId = fc.oneof(
  fc.string({ minLength: 0, maxLength: 600 }),
  fc.constantFrom("\uD800", "a\u0000b", "İ", "", "x".repeat(512), "x".repeat(513)),
  fc.integer(),
)
const clickLike = fc.record(
  {
    page_uuid: pageId,
    coordinates: fc.oneof(fc.record({ x: coordinate, y: coordinate }, { requiredKeys: [] }), fc.anything()),
    request_id: fc.oneof(fc.uuid(), fc.string(), fc.constant(undefined)),
    extra: fc.anything(),
  },
  { requiredKeys: [] },
)
const validClick = fc.record(
  {
    page_uuid: fc.string({ minLength: 1, maxLength: 64 }),
    coordinates: fc.record({
      x: fc.double({ min: 0, max: 1, noNaN: true }),
      y: fc.double({ min: 0, max: 1, noNaN: true }),
    }),
    request_id: fc.uuid(),
  },
  { requiredKeys: ["page_uuid", "coordinates"] },
)
const anyInput = fc.oneof(validClick, clickLike, fc.anything())

/**
 * The property the fast lane relies on: whatever the plain check accepts, the schema's parser accepts with the same
 * value (same keys, same order); whatever it does not accept, the caller hands to the parser.
 */
const agrees = <A, I>(schema: Schema.Schema<A, I>, input: unknown) => {
  const plain = plainCheck(schema)
  expect(plain).toBeDefined()
  const fast = plain?.(input)
  const parsed = Schema.decodeUnknownEither(schema)(input)
  if (fast !== Undecided) {
    expect(Either.isRight(parsed)).toBe(true)
    if (Either.isRight(parsed)) {
      expect(fast).toStrictEqual(parsed.right)
      expect(JSON.stringify(fast)).toBe(JSON.stringify(parsed.right))
    }
  }
  return fast !== Undecided
}

describe("PlainSchema", () => {
  it("accepts only what the schema accepts, with the parser's own value (requests)", () => {
    let accepted = 0
    fc.assert(
      fc.property(anyInput, (input) => {
        for (const schema of [Click, SaveClick]) if (agrees(schema, input)) accepted++
      }),
      { numRuns: 3000 },
    )
    // The property is not vacuous: valid clicks are drawn often enough to be accepted.
    expect(accepted).toBeGreaterThan(100)
  })

  it("accepts only what the schema accepts, with the parser's own value (headers and answers)", () => {
    const headers = fc.record(
      { "idempotency-key": fc.oneof(fc.uuid(), fc.string()), other: fc.string() },
      { requiredKeys: [] },
    )
    const answers = fc.oneof(
      fc.record({
        cluster_idx: fc.oneof(fc.integer(), fc.double(), fc.constant(null)),
        is_new: fc.oneof(fc.boolean(), fc.anything()),
      }),
      fc.anything(),
    )
    fc.assert(
      fc.property(headers, answers, (h, a) => {
        agrees(IdempotencyHeaders, h)
        agrees(SaveResult, a)
        agrees(PredictResult, a)
      }),
      { numRuns: 3000 },
    )
  })

  it("decides typical values itself and leaves every refusal to the schema", () => {
    const page = "0b6e3f4e-1f4a-4f5e-9d7e-2c7a4f1d4c55"
    expect(agrees(Click, { page_uuid: page, coordinates: { x: 0.25, y: 1 }, other: [1] })).toBe(true)
    expect(agrees(SaveClick, { page_uuid: page, coordinates: { x: 0, y: 0 }, request_id: page })).toBe(true)
    expect(agrees(PredictResult, { cluster_idx: null })).toBe(true)
    expect(agrees(SaveResult, { cluster_idx: 3, is_new: false })).toBe(true)
    for (const refused of [
      { page_uuid: "\uD800", coordinates: { x: 0.5, y: 0.5 } },
      { page_uuid: page, coordinates: { x: 1.5, y: 0.5 } },
      { page_uuid: page, coordinates: { x: 0.5 } },
      { page_uuid: page, coordinates: { x: 0.5, y: 0.5 }, request_id: "not-a-uuid" },
      [page],
      null,
    ])
      expect(agrees(SaveClick, refused)).toBe(false)
    expect(agrees(SaveResult, { cluster_idx: 0.5, is_new: true })).toBe(false)
  })

  it("covers no schema with a transformation: those are the parser's alone", () => {
    expect(plainCheck(Schema.NumberFromString)).toBeUndefined()
    expect(plainCheck(Schema.Struct({ at: Schema.Date }))).toBeUndefined()
    expect(plainCheck(Schema.Record({ key: Schema.String, value: Schema.Number }))).toBeUndefined()
  })
})
