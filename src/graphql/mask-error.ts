import { type ExecutionResult, GraphQLError } from 'graphql';
import { type MaskError, maskError } from 'graphql-yoga';
import { isDatabaseUnavailable } from '../db/unavailable.js';
import { errors } from '../errors.js';

/** What yoga and the WebSocket paths say in place of an error that is not ours. */
export const UNEXPECTED_MESSAGE = 'Unexpected error.';

/**
 * What a client may see of an error, on every transport (yoga's `maskedErrors` on HTTP, the
 * WebSocket server for what it runs itself): our GraphQLErrors (with extensions.code) verbatim; the
 * database out of reach as SERVICE_UNAVAILABLE, which is no fault of the request; anything else as
 * yoga's masked "Unexpected error." (code INTERNAL_SERVER_ERROR).
 */
export const maskGatewayError: MaskError = (error, message, isDev) => {
  const original = error instanceof GraphQLError ? (error.originalError ?? error) : error;
  if (!(original instanceof GraphQLError) && isDatabaseUnavailable(original)) return errors.unavailable();
  return maskError(error, message, isDev);
};

/**
 * An error as a WebSocket frame carries it: masked, and without what yoga keeps for itself
 * (`extensions.http`, the HTTP status, and `unexpected`), which yoga strips from HTTP responses too.
 */
export function clientError(error: unknown): GraphQLError {
  const masked = maskGatewayError(error, UNEXPECTED_MESSAGE, false);
  const shown = masked instanceof GraphQLError ? masked : new GraphQLError(UNEXPECTED_MESSAGE);
  const { http: _http, unexpected: _unexpected, ...extensions } = shown.extensions;
  if (_http === undefined && _unexpected === undefined) return shown;
  return new GraphQLError(shown.message, { nodes: shown.nodes, source: shown.source, positions: shown.positions, path: shown.path, extensions });
}

/** An execution result as a WebSocket frame carries it (see `clientError`). */
export function clientResult<T extends ExecutionResult>(result: T): T {
  return result.errors ? { ...result, errors: result.errors.map(clientError) } : result;
}
