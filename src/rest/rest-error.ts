import type { ErrorCode } from '../errors.js';

/** A REST error, sent as `{"error": {"code", "message"}}` with its status. */
export class RestError extends Error {
  constructor(
    readonly status: number,
    readonly code: ErrorCode | 'METHOD_NOT_ALLOWED' | 'PAYLOAD_TOO_LARGE' | 'LENGTH_REQUIRED' | 'INTERNAL_SERVER_ERROR',
    message: string,
  ) {
    super(message);
  }
}

/** How each GraphQL error code reads over REST. Unknown codes are server faults (500). */
export const statusOfCode: Record<ErrorCode, number> = {
  BAD_USER_INPUT: 400,
  JOB_NOT_RUNNING: 400,
  UNAUTHENTICATED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  CONFLICT: 409,
  QUERY_TOO_COMPLEX: 400,
  RATE_LIMITED: 429,
  TOO_MANY_CONNECTIONS: 429,
  SERVICE_UNAVAILABLE: 503,
};

export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.hasOwn(statusOfCode, code);
}
