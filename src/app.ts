import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { ApiKeyStore } from './auth/api-keys.js';
import { RevocationWatch } from './auth/revocation-watch.js';
import { AddressGuard, type KeyCheck } from './auth/address-guard.js';
import { apiKeyFromHeaders } from './auth/credentials.js';
import type { Config } from './config.js';
import { type Database, openDatabase } from './db/database.js';
import { migrate } from './db/migrate.js';
import { WorkspaceResponseCache } from './graphql/plugins/response-cache.js';
import { graphiqlPage } from './graphql/graphiql.js';
import { schema } from './graphql/schema.js';
import { serializedBody } from './graphql/serialized.js';
import { createGatewayYoga } from './graphql/yoga.js';
import { dashboardFiles } from './dashboard/page.js';
import { errors } from './errors.js';
import { checkBodySize, discardRefusedBody } from './http/body-limit.js';
import { cacheableBody, sendError, sendErrorFor, sendGraphqlError, sendJson, sendJsonBody, sendText } from './http/respond.js';
import { setResponseSecurityHeaders } from './http/security-headers.js';
import { guardConnections } from './limits/connection-guard.js';
import { KeyConnections } from './limits/key-connections.js';
import { RateLimiter } from './limits/rate-limiter.js';
import { ResponseBudget } from './limits/response-budget.js';
import { FeedFrontier } from './jobs/feed-frontier.js';
import { JobStore } from './jobs/job-store.js';
import type { Logger } from './logger.js';
import { ChangeFeed } from './live/change-feed.js';
import { LiveJobs } from './live/live-jobs.js';
import { ReplayQueue } from './live/replay-queue.js';
import { type GatewayMetrics, type RouteLabel, createMetrics } from './metrics.js';
import { OPENAPI_PATH, openApiDocument } from './rest/openapi.js';
import { createRestHandler } from './rest/rest-handler.js';
import { routes } from './rest/routes.js';
import { warmUp } from './warm-up.js';
import { type WebSocketGateway, attachWebSockets } from './ws/ws-server.js';
import { HEALTH_TIMEOUT_MS, LISTEN_BACKLOG, REFUSAL_DELAY_MS } from './limits/fixed.js';

export interface App {
  readonly database: Database;
  readonly apiKeys: ApiKeyStore;
  readonly jobs: JobStore;
  readonly feed: ChangeFeed;
  readonly live: LiveJobs;
  readonly replays: ReplayQueue;
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

/** Opens the database, applies migrations and wires HTTP entry -> auth -> yoga / REST shim. */
export async function createApp(config: Config, logger: Logger): Promise<App> {
  const database = await openDatabase({ databaseUrl: config.databaseUrl, schema: config.databaseSchema, dataDir: config.dataDir, timeouts: config.databaseTimeouts });
  try {
    const { applied, modified } = await migrate(database);
    if (applied.length > 0) logger.info({ applied }, 'applied database migrations');
    if (modified.length > 0) logger.warn({ modified }, 'migrations changed after they were applied');
  } catch (error) {
    await database.close();
    throw error;
  }

  const apiKeys = new ApiKeyStore(database.prisma, config.authCacheTtlMs);
  const frontier = new FeedFrontier();
  const jobs = new JobStore(database.prisma, database.sql, frontier);
  const feed = new ChangeFeed(database, jobs, frontier, logger.child({ component: 'feed' }), config.feed);
  const responses = config.responseCache
    ? new WorkspaceResponseCache({ ...config.responseCache, maxResponseBytes: config.graphql.maxResponseBytes, usable: (workspaceId) => feed.inStep(workspaceId) }) : undefined;
  if (responses) {
    // Before the write answers, and before the feed's subscribers hear of a change (see response-cache.ts).
    jobs.onWrite((row) => responses.invalidateWorkspace(row.workspaceId));
    feed.subscribe((rows) => {
      for (const row of rows) responses.invalidateWorkspace(row.workspaceId);
    });
    // One job's read may then answer from the job store's memory, under the cache's own promise.
    jobs.answerFromMemoryWhile(responses.usable, responses.ttlMs);
  }
  const replays = new ReplayQueue(jobs, config.replay);
  const revocations = new RevocationWatch(apiKeys, config.keyRecheckIntervalMs, logger.child({ component: 'auth' }));
  const budget = new ResponseBudget(config.responseBudget.bytesPerSecond, config.responseBudget.burstBytes, config.graphql.maxResponseBytes);
  const live = new LiveJobs(feed, replays, revocations, budget);
  try {
    await feed.start();
  } catch (error) {
    revocations.close();
    await database.close();
    throw error;
  }
  const keyConnections = new KeyConnections(config.ws.maxConnectionsPerKey);
  const yoga = createGatewayYoga({ limits: config.graphql, corsOrigins: config.corsOrigins, jobs, live, keyConnections, logger, budget, responses });
  const handleRest = createRestHandler(yoga, routes, logger);
  const graphiql = graphiqlPage(config.frameAncestors);
  const dashboard = dashboardFiles(config.frameAncestors);
  const openApi = cacheableBody('application/json; charset=utf-8', () => JSON.stringify(openApiDocument(routes, schema)));
  const rateLimiter = new RateLimiter(config.rateLimit.perSecond, config.rateLimit.burst);

  const addressGuard = new AddressGuard(apiKeys, config.badKeyLimitPerAddress, config.trustedProxyHops);

  /** Answers one request; `url` and `route` come from `requestRoute`, which the metrics share. */
  async function handle(req: IncomingMessage, res: ServerResponse, url: URL | undefined, route: RouteLabel): Promise<void> {
    // Node's parser lets through targets that are no URL (`GET http://[ HTTP/1.1`).
    if (!url) return sendError(res, 'BAD_USER_INPUT', 'The request target is not a valid URL.');
    // Never the query string or headers: both can carry ids and keys.
    logger.debug({ method: req.method, path: url.pathname }, 'request');

    if (route === 'healthz') {
      const up = await database.ping(HEALTH_TIMEOUT_MS);
      return sendJson(res, up ? 200 : 503, { status: up ? 'ok' : 'unavailable', database: database.kind });
    }
    if (route === 'readyz') {
      // Whether a load balancer should send new work here: not while draining (from the first
      // moment of shutdown), nor while the database or the change feed's listener is away, nor
      // before the warm-up after start has run.
      const status = closing ? 'draining' : !(await database.ping(HEALTH_TIMEOUT_MS)) ? 'unavailable' : !feed.listening ? 'reconnecting' : !warm ? 'warming' : 'ready';
      return sendJson(res, status === 'ready' ? 200 : 503, { status, database: database.kind });
    }
    if (route === 'metrics' && metrics) {
      const { contentType, body } = await metrics.render();
      return sendText(res, 200, contentType, body);
    }
    if (route === 'dashboard' && (req.method === 'GET' || req.method === 'HEAD')) {
      const file = dashboard.get(url.pathname);
      if (file) return file.send(req, res);
    }
    if (route !== 'rest' && route !== 'graphql') return sendError(res, 'NOT_FOUND', `Nothing at ${url.pathname}. GraphQL is at /graphql.`);
    // The REST contract is public, like GraphQL's introspection would be: no key needed to read it.
    if (route === 'rest' && url.pathname === OPENAPI_PATH && (req.method === 'GET' || req.method === 'HEAD')) return openApi.send(req, res);

    const body = checkBodySize(req, config.maxBodyBytes);
    if (!body.ok) {
      discardRefusedBody(req);
      return sendError(res, body.code, body.message);
    }

    if (route === 'graphql' && wantsGraphiQL(req)) return graphiql.send(req, res);

    const key = apiKeyFromHeaders(req.headers);
    // A browser's CORS preflight never carries a key, and yoga answers it without a lookup.
    const checked: KeyCheck = !key && req.method === 'OPTIONS' ? { refused: false, principal: null } : await addressGuard.check(key, req);
    if (checked.refused) {
      const message = `Too many requests without a valid API key from this address; retry after ${checked.retryAfterSeconds} s.`;
      await sleep(REFUSAL_DELAY_MS);
      return sendErrorFor(route === 'graphql', res, 'RATE_LIMITED', message, { 'retry-after': String(checked.retryAfterSeconds) });
    }
    const principal = checked.principal;
    // Nothing of a request without a valid key is parsed, but for what a browser asks before it can
    // send a key: CORS preflights (yoga answers them).
    if (!principal && route === 'graphql' && req.method !== 'OPTIONS') {
      return sendGraphqlError(res, 'UNAUTHENTICATED', errors.unauthenticated().message);
    }
    if (principal) {
      const verdict = rateLimiter.take(principal.keyId);
      if (!verdict.allowed) {
        const message = `Too many requests for this API key (${config.rateLimit.perSecond} per second); retry after ${verdict.retryAfterSeconds} s.`;
        const headers = { 'retry-after': String(verdict.retryAfterSeconds) };
        await sleep(REFUSAL_DELAY_MS);
        return sendErrorFor(route === 'graphql', res, 'RATE_LIMITED', message, headers);
      }
    }
    if (route === 'rest') {
      const response = await handleRest(req.method ?? 'GET', url, principal);
      if (response.status !== 200 || typeof response.body !== 'object' || response.body === null) return sendJson(res, response.status, response.body, response.headers);
      // A page of jobs can be megabytes: made in slices, capped and counted as /graphql's are.
      const made = await serializedBody(response.body, config.graphql.maxResponseBytes);
      if ('tooLarge' in made) return sendError(res, 'RESPONSE_TOO_LARGE', errors.responseTooLarge(config.graphql.maxResponseBytes).message);
      if (principal) budget.answered(principal.workspaceId, made.bytes);
      return sendJsonBody(res, 200, made, response.headers);
    }
    await yoga.handle(req, res, { principal });
  }

  const server = http.createServer(
    {
      headersTimeout: config.http.headersTimeoutMs,
      requestTimeout: config.http.requestTimeoutMs,
      keepAliveTimeout: config.http.keepAliveTimeoutMs,
      // How often Node checks the two timeouts above (30 s by default, far longer than they are).
      connectionsCheckingInterval: Math.min(1_000, config.http.headersTimeoutMs),
    },
    (req, res) => {
      setResponseSecurityHeaders(res);
      const { url, route } = requestRoute(req.url);
      if (metrics) {
        const started = performance.now();
        res.once('close', () => metrics.observeRequest(route, req.method ?? 'other', res.statusCode, (performance.now() - started) / 1000));
      }
      handle(req, res, url, route).catch((error: unknown) => {
        logger.error({ err: error, method: req.method, path: url?.pathname }, 'request failed');
        if (res.headersSent) return void res.destroy();
        // Auth or routing failed before yoga could answer: almost always the database being away.
        sendErrorFor(route === 'graphql', res, 'SERVICE_UNAVAILABLE', errors.unavailable().message);
      });
    },
  );
  guardConnections(server, config.http.maxConnections);

  const webSockets = attachWebSockets({ server, yoga, addressGuard, keyConnections, rateLimiter, budget, revocations, live, config, logger });
  const metrics: GatewayMetrics | undefined = config.metricsEnabled ? createMetrics({ feed, live, replays, webSockets, queries: database.queries, responses }) : undefined;

  let closing: Promise<void> | undefined;
  /** False until the warm-up after start has run (see warm-up.ts). */
  let warm = config.warmUpRounds === 0;
  let warmedUp: Promise<void> = Promise.resolve();

  return {
    database,
    apiKeys,
    jobs,
    feed,
    live,
    replays,
    webSockets,
    responses,
    httpServer: server,
    get warmedUp() {
      return warmedUp;
    },
    start: () =>
      new Promise<string>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ port: config.port, host: config.host, backlog: LISTEN_BACKLOG }, () => {
          server.off('error', reject);
          const { address, port } = server.address() as AddressInfo;
          const host = address.includes(':') ? `[${address}]` : address;
          if (!warm) {
            warmedUp = warmUp(handleRest, yoga, config.warmUpRounds, () => closing !== undefined)
              .catch((error: unknown) => {
                // Shutting down during the warm-up fails its queries: nothing to report then.
                if (!closing) logger.warn({ err: error }, 'warm-up failed; serving cold');
              })
              .finally(() => (warm = true));
          }
          resolve(`http://${host}:${port}`);
        });
      }),
    close: () => {
      closing ??= (async () => {
        // Subscribers first, all at once: sockets close with 1001 and SSE streams end, so clients
        // reconnect to another instance while this one finishes its requests (a WebSocket peer that
        // does not answer its close must not keep SSE clients waiting).
        await Promise.all([webSockets.close(config.shutdownTimeoutMs), live.close()]);
        revocations.close();
        await stopServer(server, config.shutdownTimeoutMs);
        // The warm-up stops at its next batch; its queries must not meet a closed pool.
        await warmedUp;
        await feed.stop();
        await yoga.dispose();
        await database.close();
      })();
      return closing;
    },
  };
}

/** A browser asking for the GraphiQL page (a GET of /graphql that accepts HTML). */
function wantsGraphiQL(req: IncomingMessage): boolean {
  return req.method === 'GET' && (req.headers.accept ?? '').includes('text/html');
}

/**
 * The request target as a URL (undefined when it does not parse) and the route it belongs to: one
 * parse per request, for both the routing and the metrics' bounded route label (paths carry job ids).
 */
function requestRoute(target: string | undefined): { url: URL | undefined; route: RouteLabel } {
  let url: URL;
  try {
    url = new URL(target ?? '/', 'http://localhost');
  } catch {
    return { url: undefined, route: 'unknown' };
  }
  const path = url.pathname;
  if (path === '/graphql') return { url, route: 'graphql' };
  if (path === '/api' || path.startsWith('/api/')) return { url, route: 'rest' };
  if (path === '/' || path.startsWith('/dashboard/')) return { url, route: 'dashboard' };
  if (path === '/healthz') return { url, route: 'healthz' };
  if (path === '/readyz') return { url, route: 'readyz' };
  if (path === '/metrics') return { url, route: 'metrics' };
  return { url, route: 'unknown' };
}

/** Stops accepting, closes idle keep-alive sockets, and waits for in-flight requests up to `timeoutMs`. */
async function stopServer(server: http.Server, timeoutMs: number): Promise<void> {
  if (!server.listening) return;
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeIdleConnections();
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<void>((resolve) => {
    timer = setTimeout(() => {
      server.closeAllConnections();
      resolve();
    }, timeoutMs);
  });
  await Promise.race([closed, deadline]);
  clearTimeout(timer);
  await closed;
}
