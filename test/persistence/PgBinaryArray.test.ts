import { SqlClient } from "@effect/sql"
import { describe, expect, layer } from "@effect/vitest"
import { Effect, Layer } from "effect"
import fc from "fast-check"
import { float8Array, int4Array, int8Array } from "../../src/persistence/PgBinaryArray.ts"
import { storageLayer } from "../support/StorageLayer.ts"
import { storageModes } from "../support/StorageModes.ts"

/** Every double a click log may hold, and the awkward ones: signed zero, subnormals, extremes. */
const doubles = fc.array(fc.double({ noNaN: true, noDefaultInfinity: true }), { maxLength: 40 })
const safeIntegers = fc.array(
  fc.tuple(fc.maxSafeInteger(), fc.boolean()).map(([n, negative]) => (negative ? -n : n)),
  { maxLength: 40 },
)
const int32s = fc.array(fc.integer({ min: -2_147_483_648, max: 2_147_483_647 }), { maxLength: 40 })

describe.each(storageModes())("binary array parameters, $name storage", ({ make }) => {
  const TestLive = Layer.unwrapScoped(
    Effect.acquireRelease(
      Effect.promise(() => make()),
      (storage) => Effect.promise(() => storage.dispose()),
    ).pipe(Effect.map(storageLayer)),
  )

  layer(TestLive, { excludeTestServices: true, timeout: "120 seconds" })((it) => {
    // Each element read back as text: Postgres prints a double in its shortest exact form and an integer in full.
    const readBack = (param: Buffer, type: string) =>
      Effect.flatMap(SqlClient.SqlClient, (sql) =>
        sql<{ v: string; i: number }>`
          SELECT v::text AS v, i::int AS i FROM unnest(${param}::${sql.literal(type)}) WITH ORDINALITY AS u(v, i)
          ORDER BY i
        `.pipe(Effect.map((rows) => rows.map((r) => r.v))),
      )

    it.effect("float8[]: Postgres reads exactly the doubles sent, bit for bit", () =>
      Effect.gen(function* () {
        const samples = [[], [0, -0, 5e-324, -Number.MAX_VALUE, 0.1 + 0.2, 1], ...fc.sample(doubles, 25)]
        for (const xs of samples) {
          const got = yield* readBack(float8Array(xs), "float8[]")
          expect(got.map(Number)).toEqual(xs)
          expect(got.map((v) => Object.is(Number(v), -0))).toEqual(xs.map((x) => Object.is(x, -0)))
        }
      }),
    )

    it.effect(
      "int8[] and int4[]: Postgres reads exactly the integers sent, at both ends of their range",
      () =>
        Effect.gen(function* () {
          const bigs = [
            [Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER, -1, 0, 4_294_967_296, -4_294_967_296],
          ]
          for (const xs of [...bigs, ...fc.sample(safeIntegers, 25)])
            expect(yield* readBack(int8Array(xs), "int8[]")).toEqual(xs.map(String))
          for (const xs of [[-2_147_483_648, 2_147_483_647, -1, 0], ...fc.sample(int32s, 25)])
            expect(yield* readBack(int4Array(xs), "int4[]")).toEqual(xs.map(String))
        }),
    )
  })
})
