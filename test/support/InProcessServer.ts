import { rmSync } from "node:fs"
import { HttpApiClient, HttpServer } from "@effect/platform"
import { NodeHttpClient } from "@effect/platform-node"
import { ConfigProvider, Context, Effect, Exit, Layer, Logger, Scope } from "effect"
import { AppConfig } from "../../src/Config.ts"
import { Api } from "../../src/http/Api.ts"
import { HttpLive } from "../../src/http/HttpLive.ts"
import { CoreLive } from "../../src/ServiceLayers.ts"
import { freshDataDir } from "./StorageModes.ts"

/** A running in-process server: its base URL and what it logged. */
export interface Served {
  /** `http://127.0.0.1:<port>`, no trailing slash. */
  readonly url: string
  /** What the server logged so far, one JSON object a line (as the real process prints them), at LOG_LEVEL. */
  readonly logs: () => string
}

/**
 * The environment the server reads: the test's, on loopback, quiet (LOG_LEVEL warn) unless the test
 * asks for more. Neither DATABASE_URL nor DATA_DIR given: a fresh embedded database, removed when the server stops.
 */
const serverEnv = (env: Record<string, string>) =>
  Effect.gen(function* () {
    const own: Record<string, string> = {}
    if (env.DATABASE_URL === undefined && env.DATA_DIR === undefined) {
      const dir = yield* Effect.acquireRelease(Effect.sync(freshDataDir), (dir) =>
        Effect.sync(() => rmSync(dir, { recursive: true, force: true })),
      )
      own.DATA_DIR = dir
    }
    return { LOG_LEVEL: "warn", ...own, ...env, HOST: "127.0.0.1" }
  })

/**
 * The whole service as `src/main.ts` assembles it (HttpLive over CoreLive and AppConfig), configured from `env`
 * exactly as the process reads its environment, logging JSON lines at LOG_LEVEL into `sink` instead of stdout.
 */
const serviceLayer = (env: Record<string, string>, sink: Array<string>) => {
  const logging = Layer.unwrapEffect(
    Effect.map(AppConfig, (config) =>
      Layer.merge(
        Logger.replace(
          Logger.defaultLogger,
          Logger.make((options) => {
            sink.push(Logger.jsonLogger.log(options))
          }),
        ),
        Logger.minimumLogLevel(config.logLevel),
      ),
    ),
  )
  // PORT 0: the kernel picks the port, so no other test can take it between choosing and listening.
  const config = AppConfig.Default.pipe(
    Layer.provide(
      Layer.setConfigProvider(ConfigProvider.fromMap(new Map(Object.entries({ ...env, PORT: "0" })))),
    ),
  )
  return HttpLive.pipe(Layer.provide(CoreLive), Layer.provide(logging), Layer.provide(config))
}

const urlOf = (address: HttpServer.Address) =>
  address._tag === "TcpAddress" ? `http://127.0.0.1:${address.port}` : `unix:${address.path}`

/**
 * The service served in this process on a free loopback port: no child process, no start-up of tsx, so a test
 * file can afford a server per `describe`. For what must kill or signal a process, see ServerProcess.
 */
export class InProcessServer extends Context.Tag("test/InProcessServer")<InProcessServer, Served>() {
  /** Serves until the scope closes; closing it shuts the service down as SIGTERM would (drain, then storage). */
  static readonly start = (env: Record<string, string> = {}) =>
    Effect.gen(function* () {
      const sink: Array<string> = []
      const context = yield* Layer.build(serviceLayer(yield* serverEnv(env), sink))
      const server = Context.get(context, HttpServer.HttpServer)
      return { url: urlOf(server.address), logs: () => sink.join("\n") } satisfies Served
    })

  /**
   * For `it.layer(...)`: the server, and an `HttpClient` whose requests go to it (relative URLs, as with
   * `NodeHttpServer.layerTest`).
   */
  static readonly layer = (env: Record<string, string> = {}) =>
    Layer.unwrapScoped(
      Effect.map(serverEnv(env), (env) => {
        const sink: Array<string> = []
        const served = Layer.effect(
          InProcessServer,
          HttpServer.addressWith((address) =>
            Effect.succeed<Served>({ url: urlOf(address), logs: () => sink.join("\n") }),
          ),
        )
        return Layer.merge(served, HttpServer.layerTestClient).pipe(
          Layer.provide(serviceLayer(env, sink)),
          Layer.provide(NodeHttpClient.layerUndici),
        )
      }),
    )

  /** The API's typed client (HttpApiClient.make) over the `HttpClient` of `layer`, which aims it at the server. */
  static readonly client = HttpApiClient.make(Api)

  /**
   * For promise-style tests: starts a server and resolves to it with `stop()`, which shuts it down (rejecting if
   * the shutdown fails, where the process would exit non-zero). Stop it before reading embedded storage directly.
   */
  static readonly run = async (env: Record<string, string> = {}): Promise<RunningServer> => {
    const scope = Effect.runSync(Scope.make())
    const served = await Effect.runPromise(
      Scope.extend(InProcessServer.start(env), scope).pipe(
        Effect.onError((cause) => Scope.close(scope, Exit.failCause(cause))),
      ),
    )
    let stopped: Promise<void> | undefined
    return {
      ...served,
      stop: () => {
        stopped ??= Effect.runPromise(Scope.close(scope, Exit.void))
        return stopped
      },
    }
  }
}

/** An in-process server started by `InProcessServer.run`. */
export interface RunningServer extends Served {
  /** Shuts the service down as SIGTERM would; resolves once the HTTP server, actors, writer and storage closed. */
  stop(): Promise<void>
}
