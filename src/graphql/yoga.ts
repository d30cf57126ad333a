import type { Webhooks } from '../webhooks/webhooks.js';
import type { AccessTokens } from '../auth/access-tokens.js';
import { useGraphQlJit } from '@envelop/graphql-jit';
import { Kind, OperationTypeNode, getOperationAST } from 'graphql';
import { createYoga, type YogaServerInstance } from 'graphql-yoga';
import type { Principal } from '../auth/scopes.js';
import type { JobStore } from '../jobs/job-store.js';
import type { KeyConnections } from '../limits/key-connections.js';
import type { ResponseBudget } from '../limits/response-budget.js';
import type { LiveJobs } from '../live/live-jobs.js';
import type { Logger } from '../logger.js';
import type { GatewayContext } from './context.js';
import { maskGatewayError } from './mask-error.js';
import { useMalformedParamsRefused } from './plugins/malformed-params.js';
import { type OperationLimits, useOperationLimits } from './plugins/operation-limits.js';
import { useOperationScopes } from './plugins/operation-scopes.js';
import { usePersistedDocuments } from './plugins/persisted-documents.js';
import { useOperationSpans } from './plugins/operation-spans.js';
import type { Tracer } from '../telemetry/tracer.js';
import type { PersistedDocuments } from './persisted-documents.js';
import { useSubscriptionRootRules } from './plugins/subscription-root.js';
import { useUnacceptedStreamsRefused } from './plugins/unaccepted-streams.js';
import { type WorkspaceResponseCache, useWorkspaceResponseCache } from './plugins/response-cache.js';
import { useCoalescedQueries } from './plugins/coalesced-queries.js';
import { useVariableErrorCode } from './plugins/variable-error-code.js';
import { useSlicedResponseBodies } from './plugins/response-bodies.js';
import { useResponseBudget } from './plugins/response-budget.js';
import { schema } from './schema.js';

/** What the HTTP entry hands yoga with every request: the caller, already authenticated. */
export interface ServerContext {
  principal: Principal | null;
}

export type GatewayYoga = YogaServerInstance<ServerContext, GatewayContext>;

export interface YogaDeps {
  limits: OperationLimits;
  /** CORS_ORIGINS: the origins whose pages may call /graphql (`*`: any). */
  corsOrigins: string[];
  jobs: JobStore;
  live: LiveJobs;
  keyConnections: KeyConnections;
  accessTokens: AccessTokens;
  webhooks: Webhooks;
  logger: Logger;
  /** The response bytes each workspace may be sent a second (limits/response-budget.ts). */
  budget: ResponseBudget;
  /** Documents named by id, and the trusted ones (TRUSTED_DOCUMENTS). */
  persisted: PersistedDocuments;
  /** Query results served again until their workspace changes (absent: every query executes). */
  responses?: WorkspaceResponseCache | undefined;
  /** With tracing on: a span per execution and subscription. */
  tracer?: Tracer | undefined;
}

/**
 * Queries run compiled by graphql-jit (once per document, cached): on the read routes graphql-js's
 * interpreter was the largest cost after the database (test/bench/RESULTS.md, reads). Mutations and
 * subscriptions keep graphql-js: jit drops a variable inside a JSON literal (`metadata: { a: $x }`
 * loses `a`), which only mutations take, and under jit Server-Sent Events streams did not start.
 * No upstream issue describes the first as of 2026-12; zalando-incubator/graphql-jit#228 (coercing
 * variables with graphql-js's own code) is the change that would let mutations compile too.
 * Only documents of one operation: the plugin caches a compiled query by the document's text alone,
 * so a document of several (as GraphiQL sends them) ran its first compiled operation whatever
 * `operationName` named.
 */
function useCompiledQueries() {
  return useGraphQlJit(
    {},
    {
      enableIf: (args) =>
        args.document.definitions.filter((definition) => definition.kind === Kind.OPERATION_DEFINITION).length === 1 &&
        getOperationAST(args.document, args.operationName)?.operation === OperationTypeNode.QUERY,
    },
  );
}

export function createGatewayYoga({
  limits,
  corsOrigins,
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
}: YogaDeps): GatewayYoga {
  const log = logger.child({ component: 'graphql' });
  return createYoga<ServerContext, GatewayContext>({
    schema,
    graphqlEndpoint: '/graphql',
    // Keys travel in headers, never in cookies: a browser is never asked to send credentials, and
    // an origin outside CORS_ORIGINS gets no permission to read responses.
    cors: { origin: corsOrigins, credentials: false },
    landingPage: false,
    // GraphQL over HTTP's persisted documents name a document by `documentId` (plugins/persisted-documents.ts).
    extraParamNames: ['documentId'],
    // The HTTP entry has already bounded the body (Content-Length required, MAX_BODY_BYTES, see
    // http/body-limit.ts) and Node reads no more than it declares; yoga's own limit would pipe every
    // body through a stream transform again, a measurable cost per request.
    maxRequestBodySize: false,
    // Masking stays on: only our GraphQLErrors (with extensions.code) reach clients verbatim. The
    // database being out of reach is no fault of the request: SERVICE_UNAVAILABLE, HTTP 503.
    maskedErrors: { maskError: maskGatewayError },
    // GraphiQL's page is served by the HTTP entry (src/graphql/graphiql.ts), compressed and cached.
    graphiql: false,
    logging: {
      debug: (...args) => log.debug(args.map(String).join(' ')),
      info: (...args) => log.info(args.map(String).join(' ')),
      warn: (...args) => log.warn(args.map(String).join(' ')),
      error: (...args) =>
        log.error(
          { err: args.find((a) => a instanceof Error) },
          args
            .filter((a) => !(a instanceof Error))
            .map(String)
            .join(' '),
        ),
    },
    context: ({ principal }): GatewayContext => ({ principal, jobs, live, keyConnections, accessTokens, webhooks }),
    // Scopes before limits: a document the key may not run is refused before its cost is estimated. The
    // response cache last: only what passed every check is looked up, and on a miss it wraps the
    // compiled executor that the plugin before it has set.
    plugins: [
      // Outermost: the span covers every other plugin's work on the operation.
      ...(tracer ? [useOperationSpans(tracer)] : []),
      // Before everything that runs on a document: parameters that are not JSON, what graphql-js 16
      // fails on instead of refusing, and subscriptions asked for as JSON, refused before their
      // stream is opened. (yoga registers its own request parsers and result processors before
      // these plugins, which the first and the 406 backstop rely on.)
      useMalformedParamsRefused(),
      // A document named by id is resolved before anything reads it; an untrusted one refused first.
      usePersistedDocuments(persisted),
      useSubscriptionRootRules(),
      useUnacceptedStreamsRefused(log),
      useOperationScopes(),
      ...useOperationLimits(limits),
      useVariableErrorCode(),
      useCompiledQueries(),
      useResponseBudget(budget),
      // A miss joins an identical query in flight before the cache looks it up (a joined request
      // is answered there, and the cache sees nothing of it).
      ...(responses ? [useCoalescedQueries(responses), useWorkspaceResponseCache(responses)] : []),
      // After yoga's own result processors, whose choice it reads.
      useSlicedResponseBodies({
        maxBytes: limits.maxResponseBytes,
        written: ({ principal }, bytes) => principal && budget.answered(principal.workspaceId, bytes),
      }),
    ],
  });
}
