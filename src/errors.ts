import { GraphQLError } from 'graphql';

/** The error codes clients see in `extensions.code` (GraphQL) and `error.code` (REST). */
export type ErrorCode =
  | 'UNAUTHENTICATED'
  | 'FORBIDDEN'
  | 'NOT_FOUND'
  | 'BAD_USER_INPUT'
  | 'JOB_NOT_RUNNING'
  | 'CONFLICT'
  | 'QUERY_TOO_COMPLEX'
  | 'RATE_LIMITED'
  | 'TOO_MANY_CONNECTIONS'
  | 'SERVICE_UNAVAILABLE';

/** Only authentication, authorization, rate limits and outages change the HTTP status of a GraphQL response. */
const graphqlHttpStatus: Partial<Record<ErrorCode, number>> = {
  UNAUTHENTICATED: 401,
  FORBIDDEN: 403,
  RATE_LIMITED: 429,
  TOO_MANY_CONNECTIONS: 429,
  SERVICE_UNAVAILABLE: 503,
};

/**
 * An expected error: yoga passes GraphQLErrors through its masking unchanged, so clients see the
 * code and message; anything else is masked to "Unexpected error.".
 */
export function appError(code: ErrorCode, message: string): GraphQLError {
  const status = graphqlHttpStatus[code];
  return new GraphQLError(message, { extensions: status ? { code, http: { status } } : { code } });
}

export const errors = {
  unauthenticated: () => appError('UNAUTHENTICATED', 'A valid API key is required (X-API-Key or Authorization: Bearer).'),
  keyRevoked: () => appError('UNAUTHENTICATED', 'The API key was revoked.'),
  forbidden: (scope: string) => appError('FORBIDDEN', `This API key lacks the "${scope}" scope.`),
  jobNotFound: (id: string) => appError('NOT_FOUND', `Job ${JSON.stringify(id)} not found.`),
  jobNotRunning: (id: string, status: string) =>
    appError('JOB_NOT_RUNNING', `Job ${id} is not running (it is ${status.toLowerCase()}).`),
  badInput: (message: string) => appError('BAD_USER_INPUT', message),
  unavailable: () => appError('SERVICE_UNAVAILABLE', 'The service is temporarily unavailable; try again.'),
};
