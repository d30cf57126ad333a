import { setTimeout as sleep } from 'node:timers/promises';
import { AccessTokens } from './auth/access-tokens.js';
import { Authenticator } from './auth/authenticator.js';
import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import { AddressGuard } from './auth/address-guard.js';
import { ApiKeyStore } from './auth/api-keys.js';
import { RevocationWatch } from './auth/revocation-watch.js';
import type { Config } from './config.js';
import { dashboardFiles } from './dashboard/page.js';
import type { Database } from './db/database.js';
import { openMigratedDatabase } from './db/migrate.js';
import { graphiqlPage } from './graphql/graphiql.js';
import { WorkspaceResponseCache } from './graphql/plugins/response-cache.js';
import { schema } from './graphql/schema.js';
import { createGatewayYoga } from './graphql/yoga.js';
import { createEntry } from './http/entry.js';
import { probes } from './http/probes.js';
import { cacheableBody } from './http/respond.js';
import { createHttpServer, stopServer } from './http/server.js';
import { ChangeLog } from './jobs/change-log.js';
import { FeedFrontier } from './jobs/feed-frontier.js';
import { JobStore } from './jobs/job-store.js';
import { RememberedJobs } from './jobs/remembered-jobs.js';
import { JobSweeper } from './jobs/job-sweeper.js';
import { KeyConnections } from './limits/key-connections.js';
import { LISTEN_BACKLOG, SHARED_LIMITS_SYNC_MS } from './limits/fixed.js';
import { RateLimiter } from './limits/rate-limiter.js';
import { SharedRateLimits } from './limits/shared-rate-limits.js';
import { SharedConnectionCaps } from './limits/shared-connection-caps.js';
import { ResponseBudget } from './limits/response-budget.js';
import { ChangeFeed } from './live/change-feed.js';
import { BusFeed } from './live/bus/bus-feed.js';
import { FeedBus } from './live/bus/feed-bus.js';
import type { LiveSource } from './live/live-source.js';
import { LiveJobs } from './live/live-jobs.js';
import { ReplayQueue } from './live/replay-queue.js';
import { WriteAnnouncer } from './live/write-announcer.js';
import type { Logger } from './logger.js';
import { createMetrics } from './metrics.js';
import { openApiDocument } from './rest/openapi.js';
import { createRestHandler } from './rest/rest-handler.js';
import { routes } from './rest/routes.js';
import { warmUp } from './warm-up.js';
import { IdleMemoryRelease } from './idle-memory.js';
import { type WebSocketGateway, attachWebSockets } from './ws/ws-server.js';
import { restJobRenderer } from './rest/rest-job.js';
import type { GatewayContext } from './graphql/context.js';
import { eventBodies } from './webhooks/event-body.js';
import { Webhooks } from './webhooks/webhooks.js';
import type { Resolver } from './webhooks/destination.js';
import { PersistedDocuments } from './graphql/persisted-documents.js';
import { PROJECT_MANIFEST, TrustedDocuments } from './graphql/trusted-documents.js';
import { packagePath } from './package-path.js';

export interface App {
  readonly database: Database;
  readonly apiKeys: ApiKeyStore;
  readonly accessTokens: AccessTokens;
  readonly jobs: JobStore;
  /** The change log across workspaces: the feed's and the replays' reads. */
  readonly changes: ChangeLog;
  readonly feed: ChangeFeed;
  /** With FEED_BUS: the feed over the bus (reader, follower or fallback). */
  readonly busFeed: BusFeed | undefined;
  /** Fails running jobs whose worker stopped reporting (from `start` on). */
  readonly sweeper: JobSweeper;
  readonly live: LiveJobs;
  readonly replays: ReplayQueue;
  /** Webhook endpoints, and the sending of what the database records for them (from `start` on). */
  readonly webhooks: Webhooks;
  readonly webSockets: WebSocketGateway;
  /** Query results served again until their workspace changes; undefined with RESPONSE_CACHE=false. */
  readonly responses: WorkspaceResponseCache | undefined;
  readonly httpServer: http.Server;
  /** Starts listening; resolves with the base URL (`http://host:port`). */
  start(): Promise<string>;
  /** Settles once the warm-up that `start` began has run (at once with WARM_UP_ROUNDS=0). */
  readonly warmedUp: Promise<void>;
  /** Stops accepting, lets in-flight requests finish (up to the shutdown timeout), closes the database. */
  close(): Promise<void>;
}

/**
 * The composition root: builds each part with its slice of the configuration, in the data flow's
 * order (database -> job store and change feed -> live subscriptions -> GraphQL and REST -> HTTP
 * entry and WebSockets), and owns the order of start and shutdown.
 */
export async function createApp(config: Config, logger: Logger, options: { webhookResolver?: Resolver } = {}): Promise<App> {
  // Read first: a manifest that is not one stops the start before anything is opened.
  const persisted = new PersistedDocuments(
    config.trustedDocuments ? TrustedDocuments.load([packagePath(PROJECT_MANIFEST), ...config.trustedDocuments]) : undefined,
  );
  // Loaded only when OTEL_* turns tracing on: off, neither OpenTelemetry's API nor its SDK is imported.
  const tracer = config.tracing ? (await import('./telemetry/tracing.js')).startTracing(config.tracing) : undefined;
  const database = await openMigratedDatabase(
    { databaseUrl: config.databaseUrl, schema: config.databaseSchema, dataDir: config.dataDir, timeouts: config.databaseTimeouts, tracer },
    logger,
  );
  const apiKeys = new ApiKeyStore(database.sql, config.authCacheTtlMs);
  const accessTokens = new AccessTokens(database.sql, config.accessTokens);
  const frontier = new FeedFrontier();
  const remembered = new RememberedJobs();
  const jobs = new JobStore(database.sql, frontier, remembered, { ...config.jobs, tracer });
  const changes = new ChangeLog(database.sql, frontier, remembered);
  const feedLogger = logger.child({ component: 'feed' });
  const announcer = new WriteAnnouncer(database, config.feed.coalesceMs, feedLogger);
  announcer.follow(jobs);
  const feed = new ChangeFeed(database, changes, jobs, announcer, frontier, feedLogger, { ...config.feed, tracer });
  // With FEED_BUS, one instance reads the feed and the bus carries it to the others (live/bus/).
  const feedBus = config.feedBus ? new FeedBus(config.feedBus, `jobs-gateway ${announcer.instanceId}`, feedLogger) : undefined;
  const busFeed = feedBus ? new BusFeed(feed, feedBus, database, changes, frontier, remembered, feedLogger, config.feed) : undefined;
  if (busFeed) announcer.overBus(busFeed);
  const source: LiveSource = busFeed ?? feed;
  const { maxResponseBytes } = config.graphql;
  const responses = config.responseCache
    ? new WorkspaceResponseCache({ ...config.responseCache, maxResponseBytes, usable: (workspaceId) => source.inStep(workspaceId) })
    : undefined;
  responses?.follow(jobs, source);
  // What memory answered for a workspace whose changes passed this instance by is not current.
  busFeed?.onStale((workspaceId) => {
    remembered.forgetWorkspace(workspaceId);
    if (workspaceId === undefined) responses?.invalidateAll();
    else responses?.invalidateWorkspace(workspaceId);
  });
  const sweeper = new JobSweeper(jobs, logger.child({ component: 'sweeper' }), {
    intervalMs: config.jobs.stallSweepIntervalMs,
    idempotencyTtlMs: config.jobs.idempotencyTtlMs,
  });
  const replays = new ReplayQueue(changes, config.replay);
  const revocations = new RevocationWatch(apiKeys, config.keyRecheckIntervalMs, logger.child({ component: 'auth' }));
  const budget = new ResponseBudget(config.responseBudget.bytesPerSecond, config.responseBudget.burstBytes, maxResponseBytes);
  const live = new LiveJobs(source, replays, revocations, budget);
  await (busFeed ?? feed).start().catch(async (error: unknown) => {
    revocations.close();
    await announcer.stop();
    await database.close();
    throw error;
  });

  const keyConnections = new KeyConnections(config.ws.maxConnectionsPerKey);
  // An event's job is rendered by the REST routes' own fragment, run against the recorded state as
  // a reader of the workspace would see it.
  const renderContext = (workspaceId: string): GatewayContext => ({
    principal: { keyId: '', workspaceId, scopes: new Set(['jobs:read']) },
    jobs,
    live,
    keyConnections,
    accessTokens,
    webhooks,
  });
  const webhooks: Webhooks = new Webhooks(
    database.sql,
    eventBodies(restJobRenderer(schema, renderContext), (job) => jobs.cursorOfSnapshot(job)),
    logger.child({ component: 'webhooks' }),
    { ...config.webhooks, resolve: options.webhookResolver, tracer },
  );
  jobs.onWrite((row) => webhooks.changed(row.workspaceId));
  feed.subscribe((rows) => {
    for (const row of rows) webhooks.changed(row.workspaceId);
  });
  const yoga = createGatewayYoga({
    limits: config.graphql,
    corsOrigins: config.corsOrigins,
    jobs,
    live,
    keyConnections,
    accessTokens,
    webhooks,
    logger,
    budget,
    persisted,
    responses,
    tracer,
  });
  const rest = createRestHandler(yoga, routes, logger);
  const addressGuard = new AddressGuard(new Authenticator(apiKeys, accessTokens), config.badKeyLimitPerAddress, config.trustedProxyHops);
  const rateLimiter = new RateLimiter(config.rateLimit.perSecond, config.rateLimit.burst);
  // With a bus, a key's rate limit and connection cap hold across the instances, not per instance.
  const sharedLimits =
    feedBus && busFeed ? new SharedRateLimits(rateLimiter, feedBus, busFeed.subjects.limits, announcer.instanceId, SHARED_LIMITS_SYNC_MS) : undefined;
  sharedLimits?.start();
  const sharedCaps =
    feedBus && busFeed
      ? new SharedConnectionCaps(keyConnections, feedBus, busFeed.subjects.connections, announcer.instanceId, SHARED_LIMITS_SYNC_MS)
      : undefined;
  sharedCaps?.start();
  let closing: Promise<void> | undefined;
  let warm = config.warmUpRounds === 0;
  let warmedUp: Promise<void> = Promise.resolve();
  const idleMemory = config.releaseIdleMemory ? new IdleMemoryRelease({ logger }) : undefined;
  const metrics = config.metricsEnabled
    ? createMetrics({
        feed,
        live,
        replays,
        sweeper,
        webhooks,
        webSockets: { stats: () => webSockets.stats() },
        queries: database.queries,
        responses,
        idleMemory,
        feedBus: busFeed,
      })
    : undefined;
  const entry = createEntry(
    {
      probes: probes(
        database,
        {
          draining: () => closing !== undefined,
          listening: () => busFeed?.listening ?? feed.listening,
          ...(busFeed && { feedMode: () => busFeed.mode }),
          warm: () => warm,
        },
        metrics,
      ),
      dashboard: dashboardFiles(config.frameAncestors),
      graphiql: graphiqlPage(config.frameAncestors),
      openApi: cacheableBody('application/json; charset=utf-8', () => JSON.stringify(openApiDocument(routes, schema))),
      rest,
      graphql: (req, res, principal) => yoga.handle(req, res, { principal }),
      addressGuard,
      rateLimiter,
      budget,
    },
    { maxBodyBytes: config.maxBodyBytes, maxResponseBytes, rateLimitPerSecond: config.rateLimit.perSecond },
    logger,
  );
  const server = createHttpServer(config.http, entry.handle, entry.onFailure, metrics?.observeRequest, tracer);
  const webSockets = attachWebSockets({
    server,
    yoga,
    persisted,
    addressGuard,
    keyConnections,
    rateLimiter,
    budget,
    revocations,
    live,
    ws: config.ws,
    graphql: config.graphql,
    logger,
  });

  const start = () =>
    new Promise<string>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ port: config.port, host: config.host, backlog: LISTEN_BACKLOG }, () => {
        server.off('error', reject);
        sweeper.start();
        webhooks.start();
        idleMemory?.start();
        const { address, port } = server.address() as AddressInfo;
        if (!warm) {
          warmedUp = warmUp(rest, yoga, config.warmUpRounds, () => closing !== undefined)
            // Shutting down during the warm-up fails its queries: nothing to report then.
            .catch((error: unknown) => void (closing || logger.warn({ err: error }, 'warm-up failed; serving cold')))
            .finally(() => (warm = true));
        }
        resolve(`http://${address.includes(':') ? `[${address}]` : address}:${port}`);
      });
    });
  const close = () =>
    (closing ??= (async () => {
      try {
        await closeParts();
      } finally {
        // The last spans (the shutdown's own among them) go out, within the shutdown timeout.
        if (tracer) await Promise.race([tracer.shutdown(), sleep(config.shutdownTimeoutMs, undefined, { ref: false })]);
      }
    })());
  /** Everything but the tracer, in the order the comments give. */
  const closeParts = async () => {
    // Subscribers first, all at once: sockets close with 1001 and SSE streams end, so clients
    // reconnect to another instance while this one finishes its requests (a WebSocket peer that
    // does not answer its close must not keep SSE clients waiting).
    idleMemory?.stop();
    sharedLimits?.stop();
    await Promise.all([webSockets.close(config.shutdownTimeoutMs), live.close()]);
    // Its sockets and streams closed: it tells the other instances it holds none now.
    sharedCaps?.stop();
    revocations.close();
    await stopServer(server, config.shutdownTimeoutMs);
    // The warm-up stops at its next batch; its queries must not meet a closed pool.
    await warmedUp;
    await sweeper.stop();
    // Attempts under way may finish within the shutdown timeout; the others are sent again by
    // any instance once their claim lapses.
    await webhooks.stop(Math.min(config.shutdownTimeoutMs, config.webhooks.timeoutMs));
    await (busFeed ?? feed).stop();
    await announcer.stop();
    await yoga.dispose();
    await database.close();
  };

  return {
    database,
    apiKeys,
    accessTokens,
    jobs,
    changes,
    feed,
    busFeed,
    sweeper,
    live,
    replays,
    webhooks,
    webSockets,
    responses,
    httpServer: server,
    start,
    close,
    get warmedUp() {
      return warmedUp;
    },
  };
}
