import type { ServerResponse } from 'node:http';

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const payload = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(payload),
    ...headers,
  });
  res.end(payload);
}

export function sendText(res: ServerResponse, status: number, contentType: string, body: string): void {
  res.writeHead(status, { 'content-type': contentType, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

export function sendError(res: ServerResponse, status: number, code: string, message: string, headers?: Record<string, string>): void {
  sendJson(res, status, { error: { code, message } }, headers);
}

/** A GraphQL-shaped error for /graphql requests refused before yoga sees them (no key, rate limit). */
export function sendGraphqlError(res: ServerResponse, status: number, code: string, message: string, headers?: Record<string, string>): void {
  sendJson(res, status, { errors: [{ message, extensions: { code } }] }, headers);
}

/** An error in the shape its route speaks: GraphQL `errors` on /graphql, the REST envelope elsewhere. */
export function sendErrorFor(
  graphql: boolean,
  res: ServerResponse,
  status: number,
  code: string,
  message: string,
  headers?: Record<string, string>,
): void {
  (graphql ? sendGraphqlError : sendError)(res, status, code, message, headers);
}
