import type { Option, SchemaAST } from "effect"
import { Api } from "./Api.ts"

/** A schema, read for its AST (which carries its annotations: status, encoding). */
export interface Declared {
  readonly ast: SchemaAST.AST
}

/**
 * What code generated from the declaration reads of an `HttpApiEndpoint`: its name, route and schemas. (The
 * framework's own `AnyWithProps` does not accept a typed endpoint whose absent schemas are `Schema<never>`.)
 */
export interface DeclaredEndpoint {
  readonly name: string
  readonly method: string
  readonly path: string
  readonly pathSchema: Option.Option<Declared>
  readonly urlParamsSchema: Option.Option<Declared>
  readonly payloadSchema: Option.Option<Declared>
  readonly headersSchema: Option.Option<Declared>
  readonly successSchema: Declared
  readonly errorSchema: Declared
}

/** What is read of an `HttpApiGroup`: its endpoints and the errors all of them may answer. */
export interface DeclaredGroup {
  readonly identifier: string
  readonly endpoints: { readonly [name: string]: DeclaredEndpoint }
  readonly errorSchema: Declared
}

/** A group's endpoints as the declaration holds them. */
export const endpointsOf = (group: DeclaredGroup): ReadonlyArray<DeclaredEndpoint> =>
  Object.values(group.endpoints)

/** Where the generated API document and its docs page are served (HttpLive); they are routes too. */
export const DocsPaths = { openApi: "/openapi.json", docs: "/docs" } as const

/** A declared path as its metrics label: `/pages/:page_uuid/clusters` → `/pages/{page_uuid}/clusters`. */
const labelOf = (path: string) => path.replace(/:(\w+)/g, "{$1}")

interface PathPattern {
  readonly segments: ReadonlyArray<string | undefined>
  readonly label: string
}

/**
 * The route label of a request URL, from the Api's declared endpoints (and the docs paths): a path without
 * parameters as it is, a path with parameters as its template, anything else "unmatched". Labels are by path only,
 * as the router matches paths first.
 */
export const makeRouteOf = (groups: ReadonlyArray<DeclaredGroup>) => {
  const fixed = new Set<string>(Object.values(DocsPaths))
  const patterns: Array<PathPattern> = []
  for (const group of groups)
    for (const endpoint of endpointsOf(group)) {
      if (!endpoint.path.includes(":")) fixed.add(endpoint.path)
      else
        patterns.push({
          segments: endpoint.path.split("/").map((s) => (s.startsWith(":") ? undefined : s)),
          label: labelOf(endpoint.path),
        })
    }
  return (url: string): string => {
    const q = url.indexOf("?")
    const path = q === -1 ? url : url.slice(0, q)
    if (fixed.has(path)) return path
    const segments = path.split("/")
    for (const pattern of patterns) {
      if (pattern.segments.length !== segments.length) continue
      // A parameter matches any non-empty segment, a fixed segment only itself.
      if (pattern.segments.every((s, i) => (s === undefined ? segments[i] !== "" : s === segments[i])))
        return pattern.label
    }
    return "unmatched"
  }
}

/** The route label of a request URL, for the service's Api. */
export const routeOf = makeRouteOf(Object.values(Api.groups))
