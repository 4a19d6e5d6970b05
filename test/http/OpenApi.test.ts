import { OpenApi } from "@effect/platform"
import { describe, expect, it } from "@effect/vitest"
import packageJson from "../../package.json" with { type: "json" }
import { Api } from "../../src/http/Api.ts"

/** The document GET /openapi.json serves, generated in-process (Analysts.test.ts checks the served one equals it). */
const document = OpenApi.fromApi(Api)

const operations = Object.entries(document.paths).flatMap(([path, item]) =>
  Object.entries(item).map(([method, operation]) => ({
    route: `${method.toUpperCase()} ${path}`,
    operation,
  })),
)

/** Every `additionalProperties` value anywhere inside a JSON schema, with where it is. */
const additionalProperties = (schema: unknown, at = ""): ReadonlyArray<readonly [string, unknown]> => {
  if (typeof schema !== "object" || schema === null) return []
  return Object.entries(schema).flatMap(([key, value]) => [
    ...(key === "additionalProperties" ? [[at, value] as const] : []),
    ...additionalProperties(value, `${at}/${key}`),
  ])
}

const refOf = (response: OpenApi.OpenApiSpecResponse | undefined) =>
  JSON.stringify(response?.content?.["application/json"]?.schema)

describe("OpenAPI document", () => {
  it("has operations to check", () => {
    expect(operations.map((o) => o.route)).toEqual(
      expect.arrayContaining(["GET /", "POST /save_click_and_predict_cluster", "GET /snapshots/export"]),
    )
  })

  it("gives info.version from package.json", () => {
    expect(document.info.version).toBe(packageJson.version)
  })

  it("gives every endpoint a summary, GET / included", () => {
    expect(operations.filter((o) => !o.operation.summary).map((o) => o.route)).toEqual([])
  })

  it("declares 400 as MalformedRequest, the error the service answers, not the framework's HttpApiDecodeError", () => {
    for (const { route, operation } of operations) {
      expect({ route, schema: refOf(operation.responses[400]) }).toEqual({
        route,
        schema: JSON.stringify({ $ref: "#/components/schemas/MalformedRequest" }),
      })
    }
    expect(Object.keys(document.components.schemas)).not.toContain("HttpApiDecodeError")
    expect(JSON.stringify(document)).not.toContain("HttpApiDecodeError")
  })

  it("refers only to schemas it defines", () => {
    const refs = [...JSON.stringify(document).matchAll(/"\$ref":"#\/components\/schemas\/([^"]+)"/g)].map(
      (m) => m[1],
    )
    expect(refs.length).toBeGreaterThan(0)
    expect(refs.filter((name) => name === undefined || !(name in document.components.schemas))).toEqual([])
  })

  it("declares 415 UnsupportedMediaType, and 422 InvalidRequest, on every endpoint", () => {
    for (const { route, operation } of operations) {
      expect({ route, schema: refOf(operation.responses[415]) }).toEqual({
        route,
        schema: JSON.stringify({ $ref: "#/components/schemas/UnsupportedMediaType" }),
      })
      expect({ route, schema: refOf(operation.responses[422]) }).toEqual({
        route,
        schema: JSON.stringify({ $ref: "#/components/schemas/InvalidRequest" }),
      })
    }
    expect(document.components.schemas.UnsupportedMediaType).toMatchObject({
      properties: { _tag: { enum: ["UnsupportedMediaType"] }, message: { type: "string" } },
    })
  })

  it("declares both formats of the export: text/csv and application/x-ndjson", () => {
    const exported = document.paths["/snapshots/export"]?.get
    expect(Object.keys(exported?.responses[200]?.content ?? {}).sort()).toEqual([
      "application/x-ndjson",
      "text/csv",
    ])
  })

  it("does not claim additionalProperties: false for request bodies, whose unknown fields are ignored", () => {
    const bodies = operations.flatMap(({ route, operation }) =>
      Object.entries(operation.requestBody?.content ?? {}).map(([type, media]) => ({
        route,
        type,
        schema: media.schema,
      })),
    )
    expect(bodies.map((b) => b.route)).toContain("POST /save_click_and_predict_cluster")
    const click = { type: "object", required: ["page_uuid", "coordinates"] }
    for (const { route, type, schema } of bodies) {
      expect({ route, closed: additionalProperties(schema).filter(([, value]) => value === false) }).toEqual({
        route,
        closed: [],
      })
      // The batch's NDJSON and text/plain bodies are strings; the admin routes' bodies are not clicks.
      if (type !== "application/json" || route === "POST /webhooks" || route === "POST /exports") continue
      // Still the click's shape (a batch: each item's): the fields a body must have.
      expect(schema).toMatchObject(route === "POST /clicks" ? { type: "array", items: click } : click)
    }
  })

  it("declares the batch's three body types: a JSON array, NDJSON and text/plain", () => {
    expect(Object.keys(document.paths["/clicks"]?.post?.requestBody?.content ?? {}).sort()).toEqual([
      "application/json",
      "application/x-ndjson",
      "text/plain",
    ])
  })

  it("documents the activity parameters' ranges", () => {
    const parameters = document.paths["/pages/{page_uuid}/activity"]?.get?.parameters ?? []
    const described = (name: string) => parameters.find((p) => p.name === name)?.description ?? ""
    expect(described("from")).toContain("0001-01-01T00:00:00.000Z")
    expect(described("to")).toContain("9999-12-31T23:59:59.999Z")
    expect(described("cluster_idx")).toContain("2147483647")
  })
})
