import type { Server } from 'node:http';
import { GraphQLError, type ExecutionArgs, type ExecutionResult, execute } from 'graphql';
import { type WebSocket, WebSocketServer } from 'ws';
import type { ApiKeyStore } from '../auth/api-keys.js';
import { apiKeyFromHeaders } from '../auth/credentials.js';
import type { RevocationWatch } from '../auth/revocation-watch.js';
import type { Principal } from '../auth/scopes.js';
import type { Config } from '../config.js';
import { appError, errors } from '../errors.js';
import type { GatewayContext } from '../graphql/context.js';
import { withinResponseLimit } from '../graphql/plugins/operation-limits.js';
import type { GatewayYoga } from '../graphql/yoga.js';
import type { KeyConnections } from '../limits/key-connections.js';
import type { RateLimiter } from '../limits/rate-limiter.js';
import type { LiveJobs } from '../live/live-jobs.js';
import { ReplayOverloadedError } from '../live/replay-queue.js';
import type { Logger } from '../logger.js';
import { CloseCode } from './close-codes.js';
import { attachGraphqlWs, clientIdOf } from './graphql-ws-adapter.js';
import { planJobUpdated } from './jobupdated-plan.js';
import { type Member, Multiplexer, SocketClosedError } from './multiplexer.js';
import { SendBacklog, type SocketSender } from './socket-sender.js';

interface Connection {
  principal: Principal;
  sender: SocketSender;
  /** Aborted when the socket closes: every subscription of the connection ends with it. */
  closed: AbortController;
}

/** How a started operation runs: the usual yoga way, or as a member of a multiplexed group. */
type Route = { member: Member } | { execute: (args: ExecutionArgs) => unknown; subscribe: (args: ExecutionArgs) => unknown };

export interface WebSocketGateway {
  readonly multiplexer: Multiplexer;
  /** Frames waiting for readers that have not taken what they were sent. */
  readonly backlog: SendBacklog;
  readonly connectionCount: number;
  /**
   * Closes every socket with 1001 (clients reconnect elsewhere) and stops accepting; peers that do
   * not answer the close within `timeoutMs` are cut.
   */
  close(timeoutMs: number): Promise<void>;
}

/**
 * GraphQL over WebSockets (graphql-ws, subprotocol graphql-transport-ws) on the HTTP server's
 * /graphql. Authenticates at connection_init (payload `{"apiKey"}` or the upgrade request's
 * headers), bounds connections per key and subscriptions per connection, closes the sockets of
 * revoked keys, and hands jobUpdated subscriptions to the multiplexer.
 */
export function attachWebSockets(deps: {
  server: Server;
  yoga: GatewayYoga;
  apiKeys: ApiKeyStore;
  keyConnections: KeyConnections;
  rateLimiter: RateLimiter;
  revocations: RevocationWatch;
  live: LiveJobs;
  config: Config;
  logger: Logger;
}): WebSocketGateway {
  const { yoga, apiKeys, keyConnections, rateLimiter, revocations, live, config } = deps;
  const logger = deps.logger.child({ component: 'ws' });
  const multiplexer = new Multiplexer(live, logger);
  const connections = new Map<WebSocket, Connection>();
  const routes = new WeakMap<object, Route>();
  const backlog = new SendBacklog({ maxBufferedBytes: config.ws.maxBufferedBytes, maxCongestedMs: config.ws.slowConsumerTimeoutMs });

  const wss = new WebSocketServer({
    server: deps.server,
    path: '/graphql',
    maxPayload: config.ws.maxPayloadBytes,
    // Compression divides ws throughput several times; job states are small.
    perMessageDeflate: false,
  });

  const graphqlWs = attachGraphqlWs(
    wss,
    {
      connectionInitWaitTimeout: config.ws.connectionInitTimeoutMs,
      onConnect: async (ctx) => {
        const { socket, request } = ctx.extra;
        const fromParams = ctx.connectionParams?.apiKey;
        const key = typeof fromParams === 'string' && fromParams !== '' ? fromParams : apiKeyFromHeaders(request.headers);
        const principal = key ? await apiKeys.authenticate(key) : null;
        if (!principal) return false; // graphql-ws closes with 4403 Forbidden
        const release = keyConnections.acquire(principal.keyId);
        if (!release) {
          socket.close(CloseCode.TryAgainLater, `Too many connections for this API key (max ${keyConnections.max})`);
          return false;
        }
        const sender = backlog.sender(socket, request.socket);
        const closed = new AbortController();
        connections.set(socket, { principal, sender, closed });
        // Revocation: the sockets of a revoked key close within KEY_RECHECK_INTERVAL_MS.
        const unwatch = revocations.watch(principal.keyId, () => socket.close(CloseCode.Unauthorized, 'API key revoked'));
        socket.once('close', () => {
          closed.abort();
          unwatch();
          connections.delete(socket);
          release();
        });
        return true;
      },

      onSubscribe: async (ctx, id, payload) => {
        const connection = connections.get(ctx.extra.socket);
        if (!connection) return [errors.unauthenticated()];
        const verdict = rateLimiter.take(connection.principal.keyId);
        if (!verdict.allowed) {
          return [appError('RATE_LIMITED', `Too many subscribe messages for this API key; retry after ${verdict.retryAfterSeconds} s.`)];
        }
        // graphql-ws has already registered this id among ctx.subscriptions.
        if (Object.keys(ctx.subscriptions).length > config.ws.maxSubscriptionsPerConnection) {
          return [appError('TOO_MANY_SUBSCRIPTIONS', `At most ${config.ws.maxSubscriptionsPerConnection} subscriptions per connection.`)];
        }
        const enveloped = yoga.getEnveloped({ principal: connection.principal, params: payload } as never);
        let document;
        try {
          document = enveloped.parse(payload.query);
        } catch (error) {
          return [error instanceof GraphQLError ? error : new GraphQLError('Syntax error.')];
        }
        const validationErrors = enveloped.validate(enveloped.schema, document);
        if (validationErrors.length > 0) return validationErrors;
        const contextValue = { ...((await enveloped.contextFactory()) as GatewayContext), connectionClosed: connection.closed.signal };
        const args: ExecutionArgs = {
          schema: enveloped.schema,
          document,
          operationName: payload.operationName,
          variableValues: payload.variables,
          contextValue,
        };

        let plan;
        try {
          plan = planJobUpdated(enveloped.schema, document, payload.operationName, payload.variables);
        } catch (error) {
          return [error instanceof GraphQLError ? error : errors.badInput('Invalid arguments.')];
        }
        if (!plan) {
          routes.set(contextValue, {
            execute: enveloped.execute as (args: ExecutionArgs) => unknown,
            subscribe: enveloped.subscribe as (args: ExecutionArgs) => unknown,
          });
          return args;
        }
        if (!connection.principal.scopes.has('jobs:read')) return [errors.forbidden('jobs:read')];

        const workspaceId = connection.principal.workspaceId;
        try {
          const member = await multiplexer.join(
            {
              key: JSON.stringify([workspaceId, payload.operationName ?? null, payload.query, plan.sharedVariables]),
              workspaceId,
              filter: plan.filter,
              document,
              operationName: payload.operationName,
              variableValues: payload.variables ?? undefined,
              // The group outlives whoever created it: its context speaks for the workspace only.
              contextValue: { ...contextValue, principal: { keyId: '', workspaceId, scopes: new Set(['jobs:read']) } },
              schema: enveloped.schema,
              execute: executeMasked,
            },
            connection.sender,
            { id: clientIdOf(id), operationId: id },
            plan.after,
            connection.closed.signal,
          );
          routes.set(contextValue, { member });
        } catch (error) {
          if (error instanceof ReplayOverloadedError) {
            ctx.extra.socket.close(CloseCode.TryAgainLater, error.message);
            return [appError('OVERLOADED', error.message)];
          }
          if (error instanceof GraphQLError) return [error];
          if (error instanceof SocketClosedError) return [new GraphQLError(error.message)];
          logger.error({ err: error }, 'subscription replay failed');
          return [new GraphQLError('Unexpected error.')];
        }
        return args;
      },

      execute: async (args) => {
        const route = routes.get(args.contextValue as object);
        if (!route || 'member' in route) return { errors: [new GraphQLError('Unexpected error.')] };
        return withinResponseLimit((await route.execute(args)) as ExecutionResult, config.graphql.maxResponseBytes);
      },
      subscribe: (args) => {
        const route = routes.get(args.contextValue as object);
        if (!route) return { errors: [new GraphQLError('Unexpected error.')] };
        if ('member' in route) return route.member.handle();
        return route.subscribe(args) as ExecutionResult;
      },
    },
    { keepAliveMs: config.ws.keepAliveMs, logger },
  );

  return {
    multiplexer,
    backlog,
    get connectionCount() {
      return connections.size;
    },
    close: async (timeoutMs) => {
      backlog.stop();
      await graphqlWs.dispose(timeoutMs);
    },
  };
}

/**
 * One execution of a multiplexed group. graphql-js `execute` (not yoga's executor, which would
 * start a new subscription for a subscription operation) runs the document against the changed job;
 * errors that are not ours are masked here as yoga masks them on HTTP.
 */
function executeMasked(args: ExecutionArgs): ExecutionResult | Promise<ExecutionResult> {
  const mask = (result: ExecutionResult): ExecutionResult =>
    result.errors
      ? {
          ...result,
          errors: result.errors.map((error) =>
            error.extensions?.code || (error.originalError instanceof GraphQLError && error.originalError.extensions?.code)
              ? error
              : new GraphQLError('Unexpected error.', { path: error.path, nodes: error.nodes }),
          ),
        }
      : result;
  const result = execute(args);
  return result instanceof Promise ? result.then(mask) : mask(result);
}

