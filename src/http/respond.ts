import { createHash } from 'node:crypto';
import fresh from 'fresh';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { brotliCompress, constants as zlibConstants, gzip as gzipCallback } from 'node:zlib';
import { type ErrorCode, graphqlStatusOf, restStatusOf } from '../errors.js';

const brotli = promisify(brotliCompress);
const gzip = promisify(gzipCallback);

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const payload = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(payload),
    ...headers,
  });
  res.end(payload);
}

/**
 * JSON already serialized to UTF-8 in pieces (graphql/serialized.ts): written a piece at a time as
 * the socket drains, nothing encoded or joined again. Settles once written, or once the client has
 * gone (nothing is left to tell it then).
 */
export async function sendJsonBody(
  res: ServerResponse,
  status: number,
  body: { chunks: readonly Buffer[]; bytes: number },
  headers: Record<string, string> = {},
): Promise<void> {
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': body.bytes, ...headers });
  await pipeline(Readable.from(body.chunks), res).catch(() => undefined);
}

export function sendText(res: ServerResponse, status: number, contentType: string, body: string): void {
  res.writeHead(status, { 'content-type': contentType, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

export function sendError(res: ServerResponse, code: ErrorCode, message: string, headers?: Record<string, string>): void {
  sendJson(res, restStatusOf(code), { error: { code, message } }, headers);
}

/** A GraphQL-shaped error for /graphql requests refused before yoga sees them (no key, rate limit, outage). */
export function sendGraphqlError(res: ServerResponse, code: ErrorCode, message: string, headers?: Record<string, string>): void {
  sendJson(res, graphqlStatusOf(code), { errors: [{ message, extensions: { code } }] }, headers);
}

/** An error in the shape its route speaks: GraphQL `errors` on /graphql, the REST envelope elsewhere. */
export function sendErrorFor(graphql: boolean, res: ServerResponse, code: ErrorCode, message: string, headers?: Record<string, string>): void {
  (graphql ? sendGraphqlError : sendError)(res, code, message, headers);
}

export interface CacheableBody {
  /** Answers a GET or HEAD: 304 when the client's copy is current, else the body (compressed when the client takes it). */
  send(req: IncomingMessage, res: ServerResponse): Promise<void>;
}

/**
 * A body that never changes while the process runs (the OpenAPI document, GraphiQL's page): it is
 * rendered at the first request that needs it (not at start: GraphiQL's is 9 MB), its ETag and
 * compressed forms are computed once, and clients revalidate with If-None-Match instead of
 * downloading it again.
 */
export function cacheableBody(
  contentType: string,
  render: () => string | Promise<string>,
  { maxAgeSeconds = 300, headersFor }: { maxAgeSeconds?: number; headersFor?: (text: string) => Record<string, string> } = {},
): CacheableBody {
  let rendered: Promise<{ body: Buffer; etag: string; extra: Record<string, string> }> | undefined;
  // Promises: compressing GraphiQL's page takes about 0.5 s (brotli) and runs on libuv's threads,
  // not the event loop, which would stall every request and delivery meanwhile.
  const compressed = new Map<'br' | 'gzip', Promise<Buffer>>();
  return {
    async send(req, res) {
      rendered ??= Promise.resolve(render()).then(
        (text) => {
          const body = Buffer.from(text);
          return { body, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"`, extra: headersFor?.(text) ?? {} };
        },
        (error: unknown) => {
          // Not remembered: the next request renders again (a build finished meanwhile, say).
          rendered = undefined;
          throw error;
        },
      );
      const { body, etag, extra } = await rendered;
      const headers: Record<string, string | number> = {
        ...extra,
        'content-type': contentType,
        'cache-control': `public, max-age=${maxAgeSeconds}`,
        etag,
        vary: 'accept-encoding',
      };
      // RFC 9110's If-None-Match: weak comparison, lists and `*` (fresh, as Express uses it). Only
      // that header: `cache-control: no-cache` speaks to caches, and fetch() adds it to every
      // conditional request, which fresh would take for a forced reload.
      if (fresh({ 'if-none-match': req.headers['if-none-match'] }, { etag })) {
        res.writeHead(304, headers);
        return void res.end();
      }
      const encoding = preferredEncoding(req.headers['accept-encoding']);
      let payload = body;
      if (encoding) {
        let packed = compressed.get(encoding);
        if (!packed) {
          packed = encoding === 'br' ? brotli(body, { params: { [zlibConstants.BROTLI_PARAM_QUALITY]: 9 } }) : gzip(body, { level: 9 });
          compressed.set(encoding, packed);
        }
        payload = await packed;
        headers['content-encoding'] = encoding;
      }
      headers['content-length'] = payload.length;
      res.writeHead(200, headers);
      res.end(req.method === 'HEAD' ? undefined : payload);
    },
  };
}

/** Brotli, else gzip, when the client lists it (without q=0); identity otherwise. */
function preferredEncoding(acceptEncoding: string | undefined): 'br' | 'gzip' | undefined {
  const accepted = new Set(
    (acceptEncoding ?? '')
      .split(',')
      .map((part) => part.trim().toLowerCase())
      .filter((part) => !/;\s*q=0(\.0*)?$/.test(part))
      .map((part) => part.split(';')[0]!.trim()),
  );
  if (accepted.has('br')) return 'br';
  if (accepted.has('gzip')) return 'gzip';
  return undefined;
}
