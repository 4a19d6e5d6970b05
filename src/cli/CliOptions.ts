import { Options, type ValidationError } from "@effect/cli"
import { Console, Effect, Option } from "effect"

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

/**
 * How a command ends on an error: @effect/cli has already printed a usage mistake, and our own errors carry a
 * message, so print that once and exit with 1; only defects are left to the runtime's (verbose) error report.
 */
export const exitOnError = <A, E extends ValidationError.ValidationError | { readonly message: string }, R>(
  self: Effect.Effect<A, E, R>,
) =>
  self.pipe(
    Effect.catchAll((error) =>
      Effect.zipRight(
        "message" in error ? Console.error(`error: ${error.message}`) : Effect.void,
        Effect.sync(() => {
          process.exitCode = 1
        }),
      ),
    ),
  )
