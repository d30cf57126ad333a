import { limitKeyOf } from '../auth/scopes.js';
import type { Server } from 'node:http';
import { type ExecutionArgs, type ExecutionResult, GraphQLError, getOperationAST } from 'graphql';
import type { SubscribePayload } from 'graphql-ws';
import { WebSocketServer } from 'ws';
import type { AddressGuard } from '../auth/address-guard.js';
import type { RevocationWatch } from '../auth/revocation-watch.js';
import type { Config } from '../config.js';
import { appError, errors } from '../errors.js';
import type { GatewayContext } from '../graphql/context.js';
import { UNEXPECTED_MESSAGE, clientError, clientResult } from '../graphql/mask-error.js';
import { costCheck, withinResponseLimit } from '../graphql/plugins/operation-limits.js';
import { scopeRefusal } from '../graphql/plugins/operation-scopes.js';
import { envelopedFor } from '../graphql/enveloped.js';
import type { GatewayYoga } from '../graphql/yoga.js';
import type { PersistedDocuments } from '../graphql/persisted-documents.js';
import type { KeyConnections } from '../limits/key-connections.js';
import type { RateLimiter } from '../limits/rate-limiter.js';
import type { ResponseBudget } from '../limits/response-budget.js';
import { jobUpdatedRequest } from '../live/job-updated-session.js';
import type { LiveJobs } from '../live/live-jobs.js';
import type { Logger } from '../logger.js';
import { CloseCode } from './close-codes.js';
import { type Connection, WebSocketConnections } from './connections.js';
import { attachGraphqlWs, clientIdOf } from './graphql-ws-adapter.js';
import { type JobUpdatedPlan, planJobUpdated } from './jobupdated-plan.js';
import { Multiplexer, SocketClosedError } from './multiplexer.js';
import { SendBacklog } from './socket-sender.js';
import type { WebSocketStats } from '../metrics.js';

/**
 * How one operation runs, carried by its rootValue from `onSubscribe` to graphql-ws's `execute` /
 * `subscribe` (yoga's documented idiom for graphql-ws): yoga's enveloped executors, or a member of a
 * multiplexed group.
 */
interface OperationRunner {
  readonly execute: (args: ExecutionArgs) => OperationResult | Promise<OperationResult>;
  readonly subscribe: (args: ExecutionArgs) => OperationResult | Promise<OperationResult>;
}

type OperationResult = ExecutionResult | AsyncGenerator<ExecutionResult> | AsyncIterable<ExecutionResult>;

/** The runner `onSubscribe` put in the operation's rootValue (it returns either that or errors). */
function runnerOf(args: ExecutionArgs): OperationRunner {
  return args.rootValue as OperationRunner;
}

export interface WebSocketGateway {
  readonly multiplexer: Multiplexer;
  /** Frames waiting for readers that have not taken what they were sent. */
  readonly backlog: SendBacklog;
  readonly connectionCount: number;
  /** Its counts, for the metrics. */
  stats(): WebSocketStats;
  /**
   * Closes every socket with 1001 (clients reconnect elsewhere) and stops accepting; peers that do
   * not answer the close within `timeoutMs` are cut.
   */
  close(timeoutMs: number): Promise<void>;
}

/**
 * GraphQL over WebSockets (graphql-ws, subprotocol graphql-transport-ws) on the HTTP server's
 * /graphql: what is about sockets. Admission (WebSocketConnections), limits per connection and key,
 * framing (graphql-ws; multiplexed `next` frames by the Multiplexer) and backpressure (SendBacklog).
 * What a jobUpdated subscription is (its filter, resume, revocation) is the JobUpdatedSession's.
 */
export function attachWebSockets(deps: {
  server: Server;
  yoga: GatewayYoga;
  /** Documents named by id, and the trusted ones: the rules yoga's HTTP requests meet. */
  persisted: PersistedDocuments;
  addressGuard: AddressGuard;
  keyConnections: KeyConnections;
  rateLimiter: RateLimiter;
  /** Response bytes per workspace: WebSocket query results count as HTTP's do. */
  budget: ResponseBudget;
  revocations: RevocationWatch;
  live: LiveJobs;
  /** WS_* settings, and the operation limits that WebSocket operations meet as HTTP's do. */
  ws: Config['ws'];
  graphql: Pick<Config['graphql'], 'maxCost' | 'maxResponseBytes'>;
  logger: Logger;
}): WebSocketGateway {
  const { yoga, persisted, rateLimiter, budget, ws, graphql } = deps;
  const logger = deps.logger.child({ component: 'ws' });
  const multiplexer = new Multiplexer(deps.live, deps.revocations, logger);
  const backlog = new SendBacklog({ maxBufferedBytes: ws.maxBufferedBytes, maxCongestedMs: ws.slowConsumerTimeoutMs });
  const connections = new WebSocketConnections({ ...deps, backlog });
  const costRefusal = costCheck(graphql.maxCost);

  const wss = new WebSocketServer({
    server: deps.server,
    path: '/graphql',
    maxPayload: ws.maxPayloadBytes,
    // Compression divides ws throughput several times; job states are small.
    perMessageDeflate: false,
  });
  // ws re-emits the HTTP server's errors (a port in use at listen); app.start reports those, and an
  // 'error' nobody listens to would crash the process with a stack trace instead.
  wss.on('error', () => undefined);

  /** The limits of one `subscribe` message: the key's rate, the connection's subscriptions. */
  const limitRefusal = (connection: Connection, activeOperations: number): GraphQLError | undefined => {
    const verdict = rateLimiter.take(limitKeyOf(connection.principal));
    if (!verdict.allowed) {
      return appError('RATE_LIMITED', `Too many subscribe messages for this API key; retry after ${verdict.retryAfterSeconds} s.`);
    }
    // graphql-ws has already registered this operation among the connection's.
    if (activeOperations > ws.maxSubscriptionsPerConnection) {
      return appError('TOO_MANY_SUBSCRIPTIONS', `At most ${ws.maxSubscriptionsPerConnection} subscriptions per connection.`);
    }
    return undefined;
  };

  /**
   * A jobUpdated subscription joins the group of its workspace, document and variables; its session
   * replays first when it resumes. Returns how it runs, or why it cannot.
   */
  const joinGroup = async (
    connection: Connection,
    { id, args, payload, plan }: { id: string; args: ExecutionArgs; payload: SubscribePayload; plan: JobUpdatedPlan },
  ): Promise<OperationRunner | GraphQLError> => {
    const { principal } = connection;
    // What yoga's plugins check at execution, which a multiplexed subscription never reaches.
    const refusal =
      persisted.refusal(args.document, principal) ?? scopeRefusal(args.schema, args.document, payload.operationName, principal) ?? costRefusal(args);
    if (refusal) return refusal;
    const completed = new AbortController();
    connection.operations.set(id, completed);
    try {
      const request = jobUpdatedRequest(principal, plan.args);
      const { workspaceId } = request;
      const scopes = [...principal.scopes].sort();
      const { jobs, live, keyConnections, accessTokens, webhooks } = args.contextValue as GatewayContext;
      const member = await multiplexer.join(
        {
          // The narrowed filter too: an access token's restriction must not meet another's group.
          key: JSON.stringify([workspaceId, scopes, request.filter, payload.operationName ?? null, payload.query, plan.sharedVariables]),
          document: args.document,
          operationName: payload.operationName,
          variableValues: payload.variables ?? undefined,
          // The group outlives whoever created it: its context is the workspace and the scopes that
          // every member shares (they are part of the key), and no one's key or connection.
          contextValue: { principal: { keyId: '', workspaceId, scopes: new Set(scopes) }, jobs, live, keyConnections, accessTokens, webhooks },
          schema: args.schema,
        },
        request,
        connection.sender,
        { id: clientIdOf(id), operationId: id },
        [connection.closed.signal, completed.signal],
      );
      return {
        // graphql-ws subscribes to a subscription operation, never executes it.
        execute: () => {
          member.leave();
          return { errors: [new GraphQLError(UNEXPECTED_MESSAGE)] };
        },
        subscribe: () => member.handle(),
      };
    } catch (error) {
      connection.operations.delete(id);
      if (error instanceof SocketClosedError) return new GraphQLError(error.message);
      if (!(error instanceof GraphQLError)) logger.error({ err: error }, 'subscription replay failed');
      return clientError(error);
    }
  };

  const graphqlWs = attachGraphqlWs(
    wss,
    {
      connectionInitWaitTimeout: ws.connectionInitTimeoutMs,
      onConnect: (ctx) => connections.admit(ctx.extra, ctx.connectionParams),

      onSubscribe: async (ctx, id, sent) => {
        const connection = connections.get(ctx.extra.socket);
        if (!connection) return [errors.unauthenticated()];
        const limited = limitRefusal(connection, Object.keys(ctx.subscriptions).length);
        if (limited) return [limited];
        let payload: SubscribePayload;
        try {
          // graphql-ws requires a `query`: a document named by id comes with an empty one.
          payload = { ...sent, query: persisted.documentOf(sent, connection.principal) ?? '' };
        } catch (error) {
          return [error as GraphQLError];
        }
        // Parsed and validated by yoga's envelop, so its plugins' rules (limits, scopes) apply here too.
        const enveloped = envelopedFor(yoga, { principal: connection.principal, params: payload });
        let document;
        try {
          document = enveloped.parse(payload.query);
        } catch (error) {
          return [error instanceof GraphQLError ? error : new GraphQLError('Syntax error.')];
        }
        const validationErrors = enveloped.validate(enveloped.schema, document);
        if (validationErrors.length > 0) return validationErrors;
        // yoga's own error for the same request over HTTP (graphql-ws's has no code).
        if (!getOperationAST(document, payload.operationName)) {
          return [new GraphQLError('Could not determine what operation to execute.', { extensions: { code: 'OPERATION_RESOLUTION_FAILURE' } })];
        }
        const args: ExecutionArgs = {
          schema: enveloped.schema,
          document,
          operationName: payload.operationName,
          variableValues: payload.variables,
          contextValue: { ...(await enveloped.contextFactory()), connectionClosed: connection.closed.signal },
        };

        let plan;
        try {
          plan = planJobUpdated(enveloped.schema, document, payload.operationName, payload.variables);
        } catch (error) {
          return [error instanceof GraphQLError ? error : errors.badInput('Invalid arguments.')];
        }
        const runner: OperationRunner | GraphQLError = plan
          ? await joinGroup(connection, { id, args, payload, plan })
          : { execute: enveloped.execute, subscribe: enveloped.subscribe };
        if (runner instanceof GraphQLError) return [runner];
        return { ...args, rootValue: runner };
      },

      execute: async (args) => {
        const { result, bytes } = await withinResponseLimit((await runnerOf(args).execute(args)) as ExecutionResult, graphql.maxResponseBytes);
        const { principal } = args.contextValue as GatewayContext;
        if (principal) budget.answered(principal.workspaceId, bytes);
        return result;
      },
      subscribe: (args) => runnerOf(args).subscribe(args),
      // What graphql-ws itself sends, masked and stripped as yoga does on HTTP (multiplexed frames
      // are, by the Multiplexer).
      onNext: (_ctx, _id, _payload, _args, result) => clientResult(result),
      onError: (ctx, _id, _payload, errorList) => {
        const shown = errorList.map(clientError);
        // Masked ones are ours to look into: the client sees "Unexpected error." only.
        errorList.forEach((error, i) => {
          if (shown[i]!.extensions.code === 'INTERNAL_SERVER_ERROR') logger.error({ err: error }, 'subscription failed');
        });
        const overloaded = shown.find((error) => error.extensions.code === 'OVERLOADED');
        // A refused resume closes the socket too, so that the client's retry (with backoff) spreads
        // the stampede; once graphql-ws has written the error (it does so before its next turn).
        if (overloaded) setImmediate(() => ctx.extra.socket.close(CloseCode.TryAgainLater, overloaded.message));
        return shown;
      },
    },
    {
      keepAliveMs: ws.keepAliveMs,
      maxMessagesPerSecond: ws.maxMessagesPerSecond,
      logger,
      onClientComplete: (socket, operationId) => {
        const connection = connections.get(socket);
        connection?.operations.get(operationId)?.abort();
        connection?.operations.delete(operationId);
      },
    },
  );

  return {
    multiplexer,
    backlog,
    get connectionCount() {
      return connections.size;
    },
    stats: () => ({
      connections: connections.size,
      multiplexedSubscriptions: multiplexer.memberCount,
      groups: multiplexer.groupCount,
      groupExecutions: multiplexer.executions,
      pendingBytes: backlog.pendingBytes,
      slowConsumerCloses: backlog.slowConsumerCloses,
    }),
    close: async (timeoutMs) => {
      backlog.stop();
      await graphqlWs.dispose(timeoutMs);
    },
  };
}
