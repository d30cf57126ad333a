import { natsOptionsOf } from './live/bus/bus-url.js';
import { z } from 'zod';
import type { OperationLimits } from './graphql/plugins/operation-limits.js';
import type { ResponseCacheOptions } from './graphql/plugins/response-cache.js';
import { ACCESS_TOKEN, FEED_PAGE_SIZE, HEARTBEAT_TIMEOUT_MS, WEBHOOK } from './limits/fixed.js';

/** Everything the gateway reads from its environment, parsed and validated once. */
export interface Config {
  port: number;
  host: string;
  /** `postgres://...` selects real PostgreSQL; unset, the embedded database under `dataDir` is used. */
  databaseUrl: string | undefined;
  /** PostgreSQL schema to use (the `?schema=` of DATABASE_URL), default `public`. */
  databaseSchema: string | undefined;
  dataDir: string;
  /** PostgreSQL: how long a statement, and connecting (or waiting for a pooled connection), may take. */
  databaseTimeouts: { queryMs: number; connectMs: number };
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /** Largest request body accepted; larger ones get 413. */
  maxBodyBytes: number;
  /** How long SIGTERM waits for in-flight requests before closing their sockets. */
  shutdownTimeoutMs: number;
  ws: {
    maxSubscriptionsPerConnection: number;
    maxConnectionsPerKey: number;
    /** Largest message a client may send; larger ones close the socket with 1009. */
    maxPayloadBytes: number;
    connectionInitTimeoutMs: number;
    /** A socket whose unsent data passes this first has its pending states merged, then is closed. */
    maxBufferedBytes: number;
    /** How long a socket may stay over maxBufferedBytes before it is closed as a slow consumer. */
    slowConsumerTimeoutMs: number;
    keepAliveMs: number;
    /** Messages a client may send per second on one socket (pings included), with twice that at once; 0: no limit. */
    maxMessagesPerSecond: number;
  };
  /** How often open sockets' keys are checked for revocation. */
  keyRecheckIntervalMs: number;
  /** How long a valid key is remembered without asking the database. */
  authCacheTtlMs: number;
  /** Access tokens: their longest lifetime, and how long one signing key signs (auth/access-tokens.ts). */
  accessTokens: { maxTtlMs: number; keyRotationMs: number };
  feed: { catchUpIntervalMs: number; pageSize: number; coalesceMs: number };
  /** FEED_BUS: the NATS server over which one feed reader serves the other instances (live/bus/); undefined: every instance reads the feed. */
  feedBus: string | undefined;
  /** A job's heartbeat timeout when its creator names none, and how often lapsed ones are looked for. */
  jobs: { heartbeatTimeoutMs: number; stallSweepIntervalMs: number; idempotencyTtlMs: number };
  /** Whether GET /metrics serves Prometheus metrics. */
  metricsEnabled: boolean;
  /** Rounds of the busiest paths run after start, while /readyz says `warming` (see warm-up.ts); 0: none. */
  warmUpRounds: number;
  /** Hand V8's unused young generation back to the system when idle (idle-memory.ts). */
  releaseIdleMemory: boolean;
  graphql: OperationLimits;
  /** Requests (and WebSocket subscribes) per second per API key, refilled continuously; 0: no limit. */
  rateLimit: { perSecond: number; burst: number };
  /** Response bytes per second per workspace on this instance (see limits/response-budget.ts); 0: no budget. */
  responseBudget: { bytesPerSecond: number; burstBytes: number };
  /** Attempts per second per client address without a valid key (see auth/address-guard.ts); 0: no limit. */
  badKeyLimitPerAddress: number;
  /** Proxies in front of the gateway whose X-Forwarded-For names the client (0: the peer is the client). */
  trustedProxyHops: number;
  /** The CSP `frame-ancestors` source list of the dashboard and GraphiQL (`'none'`: no site may frame them). */
  frameAncestors: string;
  /** Origins whose pages may call /graphql from a browser (`*`: any); never with credentials. */
  corsOrigins: string[];
  http: {
    /** Time to receive a request's headers; a connection that takes longer is cut. */
    headersTimeoutMs: number;
    /** Time to receive a whole request (headers and body). */
    requestTimeoutMs: number;
    /** How long an idle keep-alive connection stays open. */
    keepAliveTimeoutMs: number;
    /** Open connections at most; beyond, the oldest idle one makes room (or the new one is refused). */
    maxConnections: number;
  };
  replay: { concurrency: number; maxQueued: number; maxJobs: number };
  /** Query results served again until their workspace changes; undefined when RESPONSE_CACHE=false. */
  responseCache: Pick<ResponseCacheOptions, 'maxBytes' | 'ttlMs'> | undefined;
  webhooks: WebhookConfig;
  /** OTEL_*: where and how many traces go; undefined when tracing is off (the default). */
  tracing: TracingConfig | undefined;
  /** TRUSTED_DOCUMENTS: manifest files; set, keys without operations:arbitrary run only listed documents. */
  trustedDocuments: string[] | undefined;
}

/** OpenTelemetry tracing (telemetry/tracing.ts), from OpenTelemetry's standard variables. */
export interface TracingConfig {
  /** The OTLP/HTTP traces endpoint. */
  url: string;
  headers: Record<string, string>;
  sampler: 'always_on' | 'always_off' | 'traceidratio' | 'parentbased_always_on' | 'parentbased_always_off' | 'parentbased_traceidratio';
  /** The ratio of the ratio samplers, 0 to 1. */
  samplerArg: number;
  /** How long finished spans wait to be exported together. */
  exportDelayMs: number;
  serviceName: string;
  resourceAttributes: Record<string, string>;
}

/** Webhooks (src/webhooks/): what an attempt may take, how long failures are retried, what may be called. */
export interface WebhookConfig {
  /** Whether this instance sends deliveries (every instance records them). */
  sending: boolean;
  /** One attempt's whole time: connecting, sending, and the response's status and first bytes. */
  timeoutMs: number;
  /** The first retry's delay; each next one doubles (up to an hour), with jitter. */
  retryBaseMs: number;
  /** How long a delivery is retried before it is marked failed; an endpoint failing this long is disabled. */
  retryForMs: number;
  /** New endpoints send job.progress at most once per this per job. */
  progressIntervalMs: number;
  /** Endpoints per workspace. */
  maxEndpoints: number;
  /** Attempts under way at once on this instance: in all, per workspace, and per endpoint. */
  concurrency: number;
  concurrencyPerWorkspace: number;
  concurrencyPerEndpoint: number;
  /** Development only: plain http:// and private, loopback and link-local addresses are allowed. */
  allowPrivate: boolean;
}

/** A URL that `new URL` takes (a port in range, a host): what the bus client will be given. */
function parsesAsUrl(value: string): boolean {
  try {
    // What the bus client will be given, worked out now: a bad port or escape fails the start, not every connect.
    return natsOptionsOf(value).servers !== '';
  } catch {
    return false;
  }
}

const intFrom = (min: number, max: number) => z.coerce.number().int().min(min).max(max);

const envSchema = z.object({
  PORT: intFrom(0, 65535).default(4000),
  HOST: z.string().min(1).default('127.0.0.1'),
  DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, 'must be a postgres:// or postgresql:// URL')
    .optional()
    .or(z.literal('').transform(() => undefined)),
  DATA_DIR: z.string().min(1).default('./data'),
  FEED_BUS: z
    .string()
    .regex(/^nats:\/\/[^/?#]+\/?$/, 'must be a nats://[user:password@]host[:port] URL')
    .refine(parsesAsUrl, 'must be a nats://[user:password@]host[:port] URL')
    .optional()
    .or(z.literal('').transform(() => undefined)),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  MAX_BODY_BYTES: intFrom(1024, 64 * 1024 * 1024).default(1024 * 1024),
  SHUTDOWN_TIMEOUT_MS: intFrom(0, 600_000).default(10_000),
  MAX_SUBSCRIPTIONS_PER_CONNECTION: intFrom(1, 100_000).default(100),
  MAX_CONNECTIONS_PER_KEY: intFrom(1, 10_000_000).default(1_000),
  WS_MAX_PAYLOAD_BYTES: intFrom(1024, 64 * 1024 * 1024).default(64 * 1024),
  WS_CONNECTION_INIT_TIMEOUT_MS: intFrom(100, 600_000).default(3_000),
  WS_MAX_BUFFERED_BYTES: intFrom(1024, 1024 * 1024 * 1024).default(1024 * 1024),
  WS_SLOW_CONSUMER_TIMEOUT_MS: intFrom(100, 3_600_000).default(10_000),
  WS_KEEPALIVE_MS: intFrom(0, 3_600_000).default(12_000),
  WS_MAX_MESSAGES_PER_SECOND: intFrom(0, 10_000_000).default(100),
  KEY_RECHECK_INTERVAL_MS: intFrom(100, 600_000).default(2_000),
  AUTH_CACHE_TTL_MS: intFrom(0, 600_000).default(2_000),
  ACCESS_TOKEN_MAX_TTL_MS: intFrom(ACCESS_TOKEN.minTtlMs, 86_400_000).default(3_600_000),
  ACCESS_TOKEN_KEY_ROTATION_MS: intFrom(60_000, 30 * 86_400_000).default(86_400_000),
  FEED_CATCH_UP_INTERVAL_MS: intFrom(100, 3_600_000).default(1_000),
  FEED_COALESCE_MS: intFrom(0, 10_000).default(10),
  JOB_HEARTBEAT_TIMEOUT_MS: intFrom(HEARTBEAT_TIMEOUT_MS.min, HEARTBEAT_TIMEOUT_MS.max).default(300_000),
  JOB_STALL_SWEEP_INTERVAL_MS: intFrom(100, 3_600_000).default(1_000),
  IDEMPOTENCY_TTL_MS: intFrom(1_000, 30 * 86_400_000).default(86_400_000),
  REPLAY_CONCURRENCY: intFrom(1, 64).default(4),
  REPLAY_QUEUE_MAX: intFrom(1, 1_000_000).default(10_000),
  REPLAY_MAX_JOBS: intFrom(1, 1_000_000).default(10_000),
  METRICS_ENABLED: z.enum(['true', 'false']).default('true'),
  WARM_UP_ROUNDS: intFrom(0, 100_000).default(250),
  RELEASE_IDLE_MEMORY: z.enum(['true', 'false']).default('true'),
  GRAPHQL_MAX_COST: intFrom(1, 100_000_000).default(25_000),
  GRAPHQL_MAX_DEPTH: intFrom(1, 1_000).default(10),
  GRAPHQL_MAX_ALIASES: intFrom(0, 100_000).default(15),
  GRAPHQL_MAX_TOKENS: intFrom(100, 1_000_000).default(1_000),
  GRAPHQL_MAX_DIRECTIVES: intFrom(0, 100_000).default(10),
  MAX_RESPONSE_BYTES: intFrom(1024, 1024 * 1024 * 1024).default(16 * 1024 * 1024),
  RATE_LIMIT_PER_KEY: intFrom(0, 10_000_000).default(200),
  RATE_LIMIT_BURST: intFrom(1, 10_000_000).optional(),
  RESPONSE_BYTES_PER_WORKSPACE: intFrom(0, Number.MAX_SAFE_INTEGER).default(8 * 1024 * 1024),
  RESPONSE_BYTES_BURST: intFrom(1, Number.MAX_SAFE_INTEGER).optional(),
  DATABASE_QUERY_TIMEOUT_MS: intFrom(100, 3_600_000).default(5_000),
  DATABASE_CONNECT_TIMEOUT_MS: intFrom(100, 600_000).default(5_000),
  BAD_KEY_LIMIT_PER_ADDRESS: intFrom(0, 10_000_000).default(20),
  TRUSTED_PROXY_HOPS: intFrom(0, 100).default(0),
  // A CSP source list: no `;` or `,` (which would end the directive or the header) and no line break.
  CORS_ORIGINS: z
    .string()
    .default('*')
    .transform((list) =>
      list
        .split(',')
        .map((origin) => origin.trim())
        .filter(Boolean),
    )
    .refine(
      (origins) => origins.length > 0 && origins.every((origin) => origin === '*' || URL.canParse(origin)),
      'a comma-separated list of origins (https://app.example.com), or *',
    )
    // As a browser sends it: `https://app.example.com/` matches `https://app.example.com`.
    .transform((origins) => origins.map((origin) => (origin === '*' ? origin : new URL(origin).origin))),
  FRAME_ANCESTORS: z
    .string()
    .trim()
    .min(1)
    .regex(/^[^;,\r\n]+$/, 'a CSP source list, such as https://app.example.com')
    .default("'none'"),
  HTTP_HEADERS_TIMEOUT_MS: intFrom(100, 600_000).default(10_000),
  HTTP_REQUEST_TIMEOUT_MS: intFrom(100, 3_600_000).default(30_000),
  HTTP_KEEP_ALIVE_TIMEOUT_MS: intFrom(100, 600_000).default(5_000),
  MAX_CONNECTIONS: intFrom(1, 10_000_000).default(10_000),
  RESPONSE_CACHE: z.enum(['true', 'false']).default('true'),
  RESPONSE_CACHE_MAX_BYTES: intFrom(0, 64 * 1024 * 1024 * 1024).default(64 * 1024 * 1024),
  RESPONSE_CACHE_TTL_MS: intFrom(1, 86_400_000).default(60_000),
  WEBHOOK_SENDING: z.enum(['true', 'false']).default('true'),
  WEBHOOK_TIMEOUT_MS: intFrom(100, 60_000).default(10_000),
  WEBHOOK_RETRY_BASE_MS: intFrom(10, 3_600_000).default(5_000),
  WEBHOOK_RETRY_FOR_MS: intFrom(1_000, 30 * 86_400_000).default(86_400_000),
  WEBHOOK_PROGRESS_INTERVAL_MS: intFrom(WEBHOOK.minProgressIntervalMs, 3_600_000).default(5_000),
  WEBHOOK_MAX_ENDPOINTS: intFrom(1, 1_000).default(20),
  WEBHOOK_CONCURRENCY: intFrom(1, 10_000).default(64),
  WEBHOOK_CONCURRENCY_PER_WORKSPACE: intFrom(1, 10_000).default(16),
  WEBHOOK_CONCURRENCY_PER_ENDPOINT: intFrom(1, 1_000).default(8),
  WEBHOOK_ALLOW_PRIVATE: z.enum(['true', 'false']).default('false'),
  // OpenTelemetry's standard variables (the ones the gateway honours): tracing is on when an OTLP
  // endpoint is given or OTEL_TRACES_EXPORTER=otlp, and OTEL_SDK_DISABLED is not true.
  OTEL_SDK_DISABLED: z.enum(['true', 'false']).default('false'),
  OTEL_TRACES_EXPORTER: z.enum(['otlp', 'none']).optional(),
  OTEL_EXPORTER_OTLP_ENDPOINT: z.url({ protocol: /^https?$/ }).optional(),
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: z.url({ protocol: /^https?$/ }).optional(),
  OTEL_EXPORTER_OTLP_HEADERS: z.string().optional(),
  OTEL_TRACES_SAMPLER: z
    .enum(['always_on', 'always_off', 'traceidratio', 'parentbased_always_on', 'parentbased_always_off', 'parentbased_traceidratio'])
    .default('parentbased_always_on'),
  OTEL_TRACES_SAMPLER_ARG: z.coerce.number().min(0).max(1).default(1),
  OTEL_BSP_SCHEDULE_DELAY: intFrom(1, 3_600_000).default(5_000),
  OTEL_SERVICE_NAME: z.string().min(1).default('jobs-gateway'),
  OTEL_RESOURCE_ATTRIBUTES: z.string().optional(),
  // Manifest files, comma-separated; set, only their documents (and the gateway's own) run for keys
  // without operations:arbitrary.
  TRUSTED_DOCUMENTS: z
    .string()
    .optional()
    .transform((list) =>
      list
        ?.split(',')
        .map((file) => file.trim())
        .filter(Boolean),
    )
    .refine((files) => files === undefined || files.length > 0, 'a comma-separated list of manifest files'),
});

/** Every environment variable the gateway reads (the README's configuration table lists exactly these). */
export const CONFIG_VARIABLES = Object.keys(envSchema.shape) as ReadonlyArray<keyof typeof envSchema.shape>;

/** A variable's default as the environment would spell it; undefined when it has none. */
export function configDefault(name: (typeof CONFIG_VARIABLES)[number]): string | undefined {
  const parsed = envSchema.shape[name].safeParse(undefined);
  return parsed.success && parsed.data !== undefined ? String(parsed.data) : undefined;
}

export class ConfigError extends Error {}

/** Parses the environment; throws ConfigError naming every bad variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`);
    throw new ConfigError(`Invalid environment:\n  ${problems.join('\n  ')}`);
  }
  const e = parsed.data;
  // A client resubscribing everything at once after a reconnect must fit the burst: 4429 is final.
  if (e.WS_MAX_MESSAGES_PER_SECOND > 0 && 2 * e.WS_MAX_MESSAGES_PER_SECOND < e.MAX_SUBSCRIPTIONS_PER_CONNECTION + 2) {
    throw new ConfigError(
      `Invalid environment:\n  WS_MAX_MESSAGES_PER_SECOND: twice it (the burst) must hold MAX_SUBSCRIPTIONS_PER_CONNECTION + 2 messages (${e.MAX_SUBSCRIPTIONS_PER_CONNECTION + 2}), so that a client can resubscribe everything after a reconnect`,
    );
  }
  const { url, schema } = splitSchema(e.DATABASE_URL);
  if (e.FEED_BUS && !url) {
    throw new ConfigError('Invalid environment:\n  FEED_BUS: needs DATABASE_URL (PostgreSQL): the embedded database serves one instance, which needs no bus');
  }
  return {
    port: e.PORT,
    host: e.HOST,
    databaseUrl: url,
    databaseSchema: schema,
    dataDir: e.DATA_DIR,
    databaseTimeouts: { queryMs: e.DATABASE_QUERY_TIMEOUT_MS, connectMs: e.DATABASE_CONNECT_TIMEOUT_MS },
    logLevel: e.LOG_LEVEL,
    maxBodyBytes: e.MAX_BODY_BYTES,
    shutdownTimeoutMs: e.SHUTDOWN_TIMEOUT_MS,
    ws: {
      maxSubscriptionsPerConnection: e.MAX_SUBSCRIPTIONS_PER_CONNECTION,
      maxConnectionsPerKey: e.MAX_CONNECTIONS_PER_KEY,
      maxPayloadBytes: e.WS_MAX_PAYLOAD_BYTES,
      connectionInitTimeoutMs: e.WS_CONNECTION_INIT_TIMEOUT_MS,
      maxBufferedBytes: e.WS_MAX_BUFFERED_BYTES,
      slowConsumerTimeoutMs: e.WS_SLOW_CONSUMER_TIMEOUT_MS,
      keepAliveMs: e.WS_KEEPALIVE_MS,
      maxMessagesPerSecond: e.WS_MAX_MESSAGES_PER_SECOND,
    },
    keyRecheckIntervalMs: e.KEY_RECHECK_INTERVAL_MS,
    authCacheTtlMs: e.AUTH_CACHE_TTL_MS,
    accessTokens: { maxTtlMs: e.ACCESS_TOKEN_MAX_TTL_MS, keyRotationMs: e.ACCESS_TOKEN_KEY_ROTATION_MS },
    feed: { catchUpIntervalMs: e.FEED_CATCH_UP_INTERVAL_MS, pageSize: FEED_PAGE_SIZE, coalesceMs: e.FEED_COALESCE_MS },
    feedBus: e.FEED_BUS,
    jobs: { heartbeatTimeoutMs: e.JOB_HEARTBEAT_TIMEOUT_MS, stallSweepIntervalMs: e.JOB_STALL_SWEEP_INTERVAL_MS, idempotencyTtlMs: e.IDEMPOTENCY_TTL_MS },
    replay: { concurrency: e.REPLAY_CONCURRENCY, maxQueued: e.REPLAY_QUEUE_MAX, maxJobs: e.REPLAY_MAX_JOBS },
    responseCache:
      e.RESPONSE_CACHE === 'true' && e.RESPONSE_CACHE_MAX_BYTES > 0 ? { maxBytes: e.RESPONSE_CACHE_MAX_BYTES, ttlMs: e.RESPONSE_CACHE_TTL_MS } : undefined,
    metricsEnabled: e.METRICS_ENABLED === 'true',
    warmUpRounds: e.WARM_UP_ROUNDS,
    releaseIdleMemory: e.RELEASE_IDLE_MEMORY === 'true',
    graphql: {
      maxCost: e.GRAPHQL_MAX_COST,
      maxDepth: e.GRAPHQL_MAX_DEPTH,
      maxAliases: e.GRAPHQL_MAX_ALIASES,
      maxTokens: e.GRAPHQL_MAX_TOKENS,
      maxDirectives: e.GRAPHQL_MAX_DIRECTIVES,
      maxResponseBytes: e.MAX_RESPONSE_BYTES,
    },
    rateLimit: { perSecond: e.RATE_LIMIT_PER_KEY, burst: e.RATE_LIMIT_BURST ?? 2 * e.RATE_LIMIT_PER_KEY },
    responseBudget: {
      bytesPerSecond: e.RESPONSE_BYTES_PER_WORKSPACE,
      // At least one largest response, so that a workspace can always be sent one.
      burstBytes: e.RESPONSE_BYTES_BURST ?? Math.max(2 * e.RESPONSE_BYTES_PER_WORKSPACE, e.MAX_RESPONSE_BYTES),
    },
    badKeyLimitPerAddress: e.BAD_KEY_LIMIT_PER_ADDRESS,
    trustedProxyHops: e.TRUSTED_PROXY_HOPS,
    frameAncestors: e.FRAME_ANCESTORS,
    corsOrigins: e.CORS_ORIGINS,
    http: {
      headersTimeoutMs: e.HTTP_HEADERS_TIMEOUT_MS,
      requestTimeoutMs: Math.max(e.HTTP_REQUEST_TIMEOUT_MS, e.HTTP_HEADERS_TIMEOUT_MS),
      keepAliveTimeoutMs: e.HTTP_KEEP_ALIVE_TIMEOUT_MS,
      maxConnections: e.MAX_CONNECTIONS,
    },
    trustedDocuments: e.TRUSTED_DOCUMENTS,
    tracing:
      e.OTEL_SDK_DISABLED !== 'true' &&
      e.OTEL_TRACES_EXPORTER !== 'none' &&
      (e.OTEL_TRACES_EXPORTER === 'otlp' || e.OTEL_EXPORTER_OTLP_ENDPOINT !== undefined || e.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT !== undefined)
        ? {
            // The specification's defaults: the signal's own endpoint as given, else /v1/traces under the general one.
            url: e.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ?? `${(e.OTEL_EXPORTER_OTLP_ENDPOINT ?? 'http://localhost:4318').replace(/\/+$/, '')}/v1/traces`,
            headers: keyValuePairs(e.OTEL_EXPORTER_OTLP_HEADERS),
            sampler: e.OTEL_TRACES_SAMPLER,
            samplerArg: e.OTEL_TRACES_SAMPLER_ARG,
            exportDelayMs: e.OTEL_BSP_SCHEDULE_DELAY,
            serviceName: e.OTEL_SERVICE_NAME,
            resourceAttributes: keyValuePairs(e.OTEL_RESOURCE_ATTRIBUTES),
          }
        : undefined,
    webhooks: {
      sending: e.WEBHOOK_SENDING === 'true',
      timeoutMs: e.WEBHOOK_TIMEOUT_MS,
      retryBaseMs: e.WEBHOOK_RETRY_BASE_MS,
      retryForMs: e.WEBHOOK_RETRY_FOR_MS,
      progressIntervalMs: e.WEBHOOK_PROGRESS_INTERVAL_MS,
      maxEndpoints: e.WEBHOOK_MAX_ENDPOINTS,
      concurrency: e.WEBHOOK_CONCURRENCY,
      // Each at most the one above it.
      concurrencyPerWorkspace: Math.min(e.WEBHOOK_CONCURRENCY_PER_WORKSPACE, e.WEBHOOK_CONCURRENCY),
      concurrencyPerEndpoint: Math.min(e.WEBHOOK_CONCURRENCY_PER_ENDPOINT, e.WEBHOOK_CONCURRENCY_PER_WORKSPACE, e.WEBHOOK_CONCURRENCY),
      allowPrivate: e.WEBHOOK_ALLOW_PRIVATE === 'true',
    },
  };
}

/** `key1=value1,key2=value2` (OTEL_EXPORTER_OTLP_HEADERS, OTEL_RESOURCE_ATTRIBUTES), values percent-decoded. */
function keyValuePairs(list: string | undefined): Record<string, string> {
  const pairs: Record<string, string> = {};
  for (const pair of (list ?? '').split(',')) {
    const at = pair.indexOf('=');
    if (at <= 0) continue;
    try {
      pairs[decodeURIComponent(pair.slice(0, at).trim())] = decodeURIComponent(pair.slice(at + 1).trim());
    } catch {
      throw new ConfigError(`Invalid environment:\n  ${JSON.stringify(pair.slice(0, at).trim()).slice(0, 40)}: not percent-encoded`);
    }
  }
  return pairs;
}

/** `pg` ignores Prisma's `?schema=` parameter, so it is taken off the URL and handed over separately. */
function splitSchema(databaseUrl: string | undefined): { url: string | undefined; schema: string | undefined } {
  if (!databaseUrl) return { url: undefined, schema: undefined };
  const url = new URL(databaseUrl);
  const schema = url.searchParams.get('schema') ?? undefined;
  url.searchParams.delete('schema');
  if (schema !== undefined && !/^[A-Za-z_][A-Za-z0-9_]*$/.test(schema)) {
    throw new ConfigError(`Invalid environment:\n  DATABASE_URL: schema "${schema}" is not a plain identifier`);
  }
  return { url: url.toString(), schema };
}
