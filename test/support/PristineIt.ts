import { it } from "@effect/vitest"

/**
 * Vitest setup file, run before each test file. `layer(...)` of @effect/vitest 0.30 assigns its layer-bound
 * `effect`/`scoped`/`layer` onto the shared `it` object, so with modules shared between files (isolate: false) a
 * file's plain `it.scoped` would run inside the layer of whichever file ran before it in the worker (without
 * TestClock, say). Each file starts from the methods `it` had before any file ran.
 */
type Methods = Pick<typeof it, "effect" | "scoped" | "live" | "scopedLive" | "layer" | "prop" | "flakyTest">
const globals = globalThis as { pristineEffectIt?: Methods }
globals.pristineEffectIt ??= {
  effect: it.effect,
  scoped: it.scoped,
  live: it.live,
  scopedLive: it.scopedLive,
  layer: it.layer,
  prop: it.prop,
  flakyTest: it.flakyTest,
}
Object.assign(it, globals.pristineEffectIt)
