import { Options } from "@effect/cli"
import { Option } from "effect"

/** An integer option that must be at least 1, with a default. */
export const positiveInteger = (name: string, fallback: number, description: string) =>
  Options.integer(name).pipe(
    Options.filterMap(
      (n) => (n >= 1 ? Option.some(n) : Option.none()),
      `--${name} must be a positive integer`,
    ),
    Options.withDefault(fallback),
    Options.withDescription(description),
  )
