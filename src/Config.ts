import { Config, ConfigError, Duration, Effect, Either, LogLevel, Option } from "effect"

const positiveInt = (name: string, fallback: number) =>
  Config.integer(name).pipe(
    Config.validate({ message: `${name} must be a positive integer`, validation: (n) => n > 0 }),
    Config.withDefault(fallback),
  )

const nonNegativeDuration = (name: string, fallback: Duration.DurationInput) =>
  Config.duration(name).pipe(
    Config.validate({
      message: `${name} must be a duration such as "500 millis" or "5 seconds"`,
      validation: Duration.isFinite,
    }),
    Config.withDefault(Duration.decode(fallback)),
  )

const positiveDuration = (name: string, fallback: Duration.DurationInput) =>
  Config.duration(name).pipe(
    Config.validate({
      message: `${name} must be a positive duration such as "500 millis" or "5 seconds"`,
      validation: (d) => Duration.isFinite(d) && Duration.greaterThan(d, Duration.zero),
    }),
    Config.withDefault(Duration.decode(fallback)),
  )

/** An optional positive integer: unset → none. */
const optionalPositiveInt = (name: string) =>
  Config.option(
    Config.integer(name).pipe(
      Config.validate({ message: `${name} must be a positive integer`, validation: (n) => n > 0 }),
    ),
  )

/**
 * The origins whose pages may call the tracker routes from a browser: `*` (any: trackers are embedded on arbitrary
 * sites, and the routes take no credentials), a comma-separated list of origins, or empty (no CORS headers at all).
 */
const corsOrigins = Config.string("CORS_ORIGINS").pipe(
  Config.withDefault("*"),
  Config.map((s) =>
    s
      .split(",")
      .map((o) => o.trim())
      .filter((o) => o !== ""),
  ),
  Config.validate({
    message: "CORS_ORIGINS must be *, or origins such as https://example.com separated by commas",
    validation: (list) =>
      (list.length === 1 && list[0] === "*") || list.every((o) => /^https?:\/\/[^/*\s]+$/.test(o)),
  }),
)

/** Node's HTTP timeouts; Node refuses a headers timeout longer than the request timeout. */
const httpTimeouts = Config.all({
  headers: positiveDuration("HTTP_HEADERS_TIMEOUT", "10 seconds"),
  request: positiveDuration("HTTP_REQUEST_TIMEOUT", "30 seconds"),
  keepAlive: positiveDuration("HTTP_KEEP_ALIVE_TIMEOUT", "5 seconds"),
}).pipe(
  Config.validate({
    message: "HTTP_HEADERS_TIMEOUT must not be longer than HTTP_REQUEST_TIMEOUT",
    validation: (t) => Duration.lessThanOrEqualTo(t.headers, t.request),
  }),
)

/** A `host:port` address (a runner's cluster socket); the host may be a name or an IPv4/IPv6 literal. */
const hostPort = (name: string) =>
  Config.string(name).pipe(
    Config.mapOrFail((text) => {
      const at = text.lastIndexOf(":")
      const host = text.slice(0, at).replace(/^\[(.*)\]$/, "$1")
      const port = Number(text.slice(at + 1))
      return at > 0 && host !== "" && Number.isInteger(port) && port > 0 && port <= 65_535
        ? Either.right({ host, port })
        : Either.left(ConfigError.InvalidData([], `${name} must be host:port, such as 10.0.0.5:34431`))
    }),
  )

/**
 * Cluster mode (pages sharded over runner processes with @effect/cluster): on when RUNNER_ADDRESS is set. The
 * engine's timings are ours to set, so a dead runner's pages move within seconds rather than its defaults' ~35 s.
 */
const cluster = Config.all({
  /** Where the other runners reach this one's cluster socket. */
  runnerAddress: hostPort("RUNNER_ADDRESS"),
  /** Where the socket listens, when not the advertised address (e.g. 0.0.0.0:34431 in a container). */
  listenAddress: Config.option(hostPort("RUNNER_LISTEN_ADDRESS")),
  shards: positiveInt("CLUSTER_SHARDS", 300),
  lockRefresh: positiveDuration("CLUSTER_LOCK_REFRESH", "1 second"),
  lockExpiration: positiveDuration("CLUSTER_LOCK_EXPIRATION", "3 seconds"),
  assignmentsRefresh: positiveDuration("CLUSTER_ASSIGNMENTS_REFRESH", "500 millis"),
  healthCheck: positiveDuration("CLUSTER_HEALTH_CHECK", "1 second"),
  sendRetry: positiveDuration("CLUSTER_SEND_RETRY", "50 millis"),
}).pipe(
  Config.validate({
    message: "CLUSTER_LOCK_REFRESH must be shorter than CLUSTER_LOCK_EXPIRATION",
    validation: (c) => Duration.lessThan(c.lockRefresh, c.lockExpiration),
  }),
)

/** Cluster mode needs a Postgres the runners share: the embedded database belongs to one process. */
const clusterMode = Config.all({
  cluster: Config.option(cluster),
  databaseUrl: Config.option(Config.redacted("DATABASE_URL")),
}).pipe(
  Config.validate({
    message:
      "RUNNER_ADDRESS (cluster mode) needs DATABASE_URL: the runners share one Postgres, and the embedded database serves a single process",
    validation: ({ cluster, databaseUrl }) => Option.isNone(cluster) || Option.isSome(databaseUrl),
  }),
  Config.map(({ cluster }) => cluster),
)

/** The service's settings, read from the environment once at start-up; the only reader of `process.env`. */
export class AppConfig extends Effect.Service<AppConfig>()("AppConfig", {
  effect: Effect.gen(function* () {
    return {
      host: yield* Config.string("HOST").pipe(Config.withDefault("0.0.0.0")),
      /** 0: any free port, chosen by the kernel (tests serve side by side that way). */
      port: yield* Config.integer("PORT").pipe(
        Config.validate({
          message: "PORT must be a port number from 0 to 65535 (0: any free port)",
          validation: (n) => n >= 0 && n <= 65_535,
        }),
        Config.withDefault(8000),
      ),
      /** Postgres server to use; none → the embedded database under `dataDir`. */
      databaseUrl: yield* Config.option(Config.redacted("DATABASE_URL")),
      dataDir: yield* Config.string("DATA_DIR").pipe(Config.withDefault("./data")),
      dbPoolSize: yield* positiveInt("DB_POOL_SIZE", 10),
      /** How long a database call may take before the request it serves answers 503. */
      dbTimeout: yield* nonNegativeDuration("DB_TIMEOUT", "5 seconds"),
      clusterRadius: yield* Config.number("CLUSTER_RADIUS").pipe(
        Config.validate({
          message: "CLUSTER_RADIUS must be a number in [1e-6, 2]",
          validation: (r) => Number.isFinite(r) && r >= 1e-6 && r <= 2,
        }),
        Config.withDefault(0.04),
      ),
      mailboxSize: yield* positiveInt("MAILBOX_SIZE", 1024),
      writerBatchSize: yield* positiveInt("WRITER_BATCH_SIZE", 1000),
      writerLinger: yield* nonNegativeDuration("WRITER_LINGER", "0 millis"),
      /** Click-log batches written at once on Postgres (each on its own connection; the embedded database: one). */
      writerConcurrency: yield* positiveInt("WRITER_CONCURRENCY", 2),
      snapshotEvery: yield* positiveInt("SNAPSHOT_EVERY", 1000),
      snapshotInterval: yield* nonNegativeDuration("SNAPSHOT_INTERVAL", "60 seconds"),
      actorIdleTimeout: yield* nonNegativeDuration("ACTOR_IDLE_TIMEOUT", "5 minutes"),
      /** Most pages kept in memory; beyond, the least recently used quiet ones are evicted (see README). */
      maxActivePages: yield* positiveInt("MAX_ACTIVE_PAGES", 100_000),
      shutdownTimeout: yield* nonNegativeDuration("SHUTDOWN_TIMEOUT", "10 seconds"),
      /** Whether the tracker POST routes are answered by the fast lane ahead of the HttpApi (off: HttpApi only). */
      httpFastLane: yield* Config.boolean("HTTP_FAST_LANE").pipe(Config.withDefault(true)),
      maxBodyBytes: yield* positiveInt("MAX_BODY_BYTES", 16 * 1024),
      /** Most clicks in one POST /clicks, and its largest body (a batch of 1,000 clicks is ~100 KB). */
      maxBatchClicks: yield* positiveInt("MAX_BATCH_CLICKS", 1000),
      maxBatchBytes: yield* positiveInt("MAX_BATCH_BYTES", 1024 * 1024),
      corsOrigins: yield* corsOrigins,
      /** Clicks a client IP / a page may save per RATE_LIMIT_WINDOW; none → unlimited (the default). */
      rateLimitPerIp: yield* optionalPositiveInt("RATE_LIMIT_PER_IP"),
      rateLimitPerPage: yield* optionalPositiveInt("RATE_LIMIT_PER_PAGE"),
      rateLimitWindow: yield* positiveDuration("RATE_LIMIT_WINDOW", "1 minute"),
      /** Complete headers within `headers`, the whole request within `request`; idle keep-alive kept `keepAlive`. */
      httpTimeouts: yield* httpTimeouts,
      adminToken: yield* Config.option(Config.redacted("ADMIN_TOKEN")),
      /** Webhooks (README, Webhooks): whether receivers may be on loopback or private networks (never link-local). */
      webhookAllowPrivate: yield* Config.boolean("WEBHOOK_ALLOW_PRIVATE").pipe(Config.withDefault(false)),
      webhookTimeout: yield* positiveDuration("WEBHOOK_TIMEOUT", "10 seconds"),
      webhookMaxAttempts: yield* positiveInt("WEBHOOK_MAX_ATTEMPTS", 8),
      /** The wait before the second attempt; each next one doubles (with jitter), up to WEBHOOK_BACKOFF_MAX. */
      webhookBackoff: yield* positiveDuration("WEBHOOK_BACKOFF", "10 seconds"),
      webhookBackoffMax: yield* positiveDuration("WEBHOOK_BACKOFF_MAX", "1 hour"),
      webhookConcurrency: yield* positiveInt("WEBHOOK_CONCURRENCY", 8),
      webhookPollInterval: yield* positiveDuration("WEBHOOK_POLL_INTERVAL", "1 second"),
      /** How long delivered and dead webhook deliveries (with their attempts and events) are kept. */
      webhookRetention: yield* positiveDuration("WEBHOOK_RETENTION", "7 days"),
      /** How long a finished export job's file is kept for download. */
      exportRetention: yield* positiveDuration("EXPORT_RETENTION", "24 hours"),
      logLevel: yield* Config.logLevel("LOG_LEVEL").pipe(Config.withDefault(LogLevel.Info)),
      /** OTLP/HTTP collector base URL (the standard variable); none → spans are not exported. */
      otlpEndpoint: yield* Config.option(Config.url("OTEL_EXPORTER_OTLP_ENDPOINT")),
      otelServiceName: yield* Config.string("OTEL_SERVICE_NAME").pipe(Config.withDefault("click-clusters")),
      /** Cluster mode's settings (RUNNER_ADDRESS set); none → one process serves every page. */
      cluster: yield* clusterMode,
    }
  }),
}) {}
