import { GraphQLError } from 'graphql';

/**
 * Every error code a client can see: `extensions.code` on GraphQL (HTTP and WebSockets alike) and
 * `error.code` on REST, with the HTTP status each one answers with on REST (`rest`) and, for the few
 * that change a GraphQL response's status, on /graphql (`graphql`: authentication, authorization,
 * rate limits and outages; every other GraphQL error is part of a 200 response). The one place
 * where a code, and its status, is defined.
 */
export const ERROR_CODES = {
  BAD_USER_INPUT: { rest: 400 },
  JOB_NOT_RUNNING: { rest: 400 },
  QUERY_TOO_COMPLEX: { rest: 400 },
  RESPONSE_TOO_LARGE: { rest: 400 },
  UNAUTHENTICATED: { rest: 401, graphql: 401 },
  FORBIDDEN: { rest: 403, graphql: 403 },
  NOT_FOUND: { rest: 404 },
  METHOD_NOT_ALLOWED: { rest: 405 },
  /** GraphQL only: a document named by an id that this instance does not know (send the document with it). */
  PERSISTED_QUERY_NOT_FOUND: { rest: 404, graphql: 404 },
  /** GraphQL only: a subscription asked for with no streaming media type in `accept`. */
  NOT_ACCEPTABLE: { rest: 406, graphql: 406 },
  CONFLICT: { rest: 409 },
  LENGTH_REQUIRED: { rest: 411 },
  PAYLOAD_TOO_LARGE: { rest: 413 },
  RATE_LIMITED: { rest: 429, graphql: 429 },
  TOO_MANY_CONNECTIONS: { rest: 429, graphql: 429 },
  /** WebSockets only: more than MAX_SUBSCRIPTIONS_PER_CONNECTION on one socket. */
  TOO_MANY_SUBSCRIPTIONS: { rest: 429 },
  /** Subscriptions only: a resume (`after`) refused because more replays wait than REPLAY_QUEUE_MAX. */
  OVERLOADED: { rest: 503 },
  INTERNAL_SERVER_ERROR: { rest: 500 },
  SERVICE_UNAVAILABLE: { rest: 503, graphql: 503 },
} as const satisfies Record<string, { rest: number; graphql?: number }>;

export type ErrorCode = keyof typeof ERROR_CODES;

export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.hasOwn(ERROR_CODES, code);
}

/** The HTTP status of a REST response with this code. */
export function restStatusOf(code: ErrorCode): number {
  return ERROR_CODES[code].rest;
}

/** The HTTP status of a GraphQL response whose error has this code (200 for most). */
export function graphqlStatusOf(code: ErrorCode): number {
  const entry: { rest: number; graphql?: number } = ERROR_CODES[code];
  return entry.graphql ?? 200;
}

/**
 * An expected error: yoga passes GraphQLErrors through its masking unchanged, so clients see the
 * code and message; anything else is masked to "Unexpected error.".
 */
export function appError(code: ErrorCode, message: string, details: Record<string, string> = {}): GraphQLError {
  const status = graphqlStatusOf(code);
  return new GraphQLError(message, { extensions: status !== 200 ? { code, ...details, http: { status } } : { code, ...details } });
}

/** How a job that is no longer running ended: JOB_NOT_RUNNING's `endedAs`, so that a worker can tell a cancel from a stall. */
export const JOB_ENDINGS = ['COMPLETED', 'FAILED', 'CANCELLED', 'STALLED'] as const;
export type JobEnding = (typeof JOB_ENDINGS)[number];

const ENDING_WORDS: Record<JobEnding, string> = { COMPLETED: 'is completed', FAILED: 'failed', CANCELLED: 'was cancelled', STALLED: 'stalled' };

export const errors = {
  unauthenticated: () => appError('UNAUTHENTICATED', 'A valid API key is required (X-API-Key or Authorization: Bearer).'),
  keyRevoked: () => appError('UNAUTHENTICATED', 'The API key was revoked.'),
  tokenExpired: () => appError('UNAUTHENTICATED', 'The access token expired; subscribe again with a fresh one.'),
  forbidden: (scope: string) => appError('FORBIDDEN', `This API key lacks the "${scope}" scope.`),
  untrustedDocument: () =>
    appError(
      'FORBIDDEN',
      'This gateway runs trusted documents only: send a document its manifests list (or its id), or use a key with the "operations:arbitrary" scope.',
      { scope: 'operations:arbitrary' },
    ),
  /** The message is what Apollo Client's and urql's persisted-query links look for (urql only that). */
  persistedQueryNotFound: () => appError('PERSISTED_QUERY_NOT_FOUND', 'PersistedQueryNotFound'),
  jobNotFound: (id: string) => appError('NOT_FOUND', `Job ${JSON.stringify(id)} not found.`),
  webhookNotFound: (what: 'endpoint' | 'delivery', id: string) => appError('NOT_FOUND', `Webhook ${what} ${JSON.stringify(id).slice(0, 60)} not found.`),
  jobNotRunning: (id: string, endedAs: JobEnding) => appError('JOB_NOT_RUNNING', `Job ${id} is not running (it ${ENDING_WORDS[endedAs]}).`, { endedAs }),
  badInput: (message: string) => appError('BAD_USER_INPUT', message),
  /**
   * A GraphQL request that could not be read at all (its parameters are not JSON): a request error,
   * 400 as yoga answers a malformed POST body, where BAD_USER_INPUT in a response that ran is a 200.
   */
  malformedRequest: (message: string) => new GraphQLError(message, { extensions: { code: 'BAD_USER_INPUT', http: { status: 400 } } }),
  unavailable: () => appError('SERVICE_UNAVAILABLE', 'The service is temporarily unavailable; try again.'),
  overloaded: () => appError('OVERLOADED', 'Too many subscriptions are resuming at once; retry shortly.'),
  /**
   * The workspace has been sent more than RESPONSE_BYTES_PER_WORKSPACE allows (limits/response-budget.ts).
   * Retry-After rides in `extensions.http`, which yoga turns into the header and strips from the body.
   */
  responseBudgetSpent: (retryAfterSeconds: number) =>
    new GraphQLError(
      `This workspace has been sent more response bytes than its budget allows; retry after ${retryAfterSeconds} s, or ask for fewer jobs or fields.`,
      {
        extensions: { code: 'RATE_LIMITED', http: { status: graphqlStatusOf('RATE_LIMITED'), headers: { 'retry-after': String(retryAfterSeconds) } } },
      },
    ),
  responseTooLarge: (maxBytes: number) => appError('RESPONSE_TOO_LARGE', `The response would exceed ${maxBytes} bytes; ask for fewer jobs or fields.`),
  tooManyConnections: (max: number) => appError('TOO_MANY_CONNECTIONS', `Too many connections for this API key (max ${max}).`),
};
