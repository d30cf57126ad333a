import type { IncomingMessage, ServerResponse } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import type { AddressGuard, KeyCheck } from '../auth/address-guard.js';
import { apiKeyFromHeaders } from '../auth/credentials.js';
import { type Principal, limitKeyOf } from '../auth/scopes.js';
import { errors } from '../errors.js';
import { serializedBody } from '../graphql/serialized.js';
import type { RateLimiter } from '../limits/rate-limiter.js';
import type { ResponseBudget } from '../limits/response-budget.js';
import { REFUSAL_DELAY_MS } from '../limits/fixed.js';
import type { Logger } from '../logger.js';
import { OPENAPI_PATH } from '../rest/openapi.js';
import type { RestResponse } from '../rest/rest-handler.js';
import { checkBodySize, discardRefusedBody, readBodyText } from './body-limit.js';
import { type CacheableBody, sendError, sendErrorFor, sendGraphqlError, sendJson, sendJsonBody } from './respond.js';
import type { RouteLabel } from './routes.js';

/** What the entry hands requests to, once routed (and, for REST and GraphQL, authenticated). */
export interface EntryParts {
  /** /healthz, /readyz and /metrics (absent with METRICS_ENABLED=false). */
  probes: Partial<Record<'healthz' | 'readyz' | 'metrics', (res: ServerResponse) => Promise<void>>>;
  /** The dashboard's page and files, by path. */
  dashboard: Map<string, CacheableBody>;
  graphiql: CacheableBody;
  openApi: CacheableBody;
  /** `body`: the request's body, read only when a route asks for it. */
  rest(method: string, url: URL, principal: Principal | null, body: () => Promise<string>): Promise<RestResponse>;
  graphql(req: IncomingMessage, res: ServerResponse, principal: Principal | null): Promise<unknown>;
  addressGuard: AddressGuard;
  rateLimiter: RateLimiter;
  budget: ResponseBudget;
}

export interface EntryOptions {
  maxBodyBytes: number;
  maxResponseBytes: number;
  /** For the refusal's message. */
  rateLimitPerSecond: number;
}

/**
 * The request pipeline between the HTTP server and the parts: entry -> auth -> GraphQL or the REST
 * shim. Open routes (probes, metrics, the dashboard, GraphiQL's page, the REST contract) answer
 * first; everything else needs a body within MAX_BODY_BYTES and a valid key under its rate limit.
 */
export function createEntry(parts: EntryParts, options: EntryOptions, logger: Logger) {
  async function handle(req: IncomingMessage, res: ServerResponse, url: URL | undefined, route: RouteLabel): Promise<void> {
    if (!url) return sendError(res, 'BAD_USER_INPUT', 'The request target is not a valid URL.');
    // Never the query string or headers: both can carry ids and keys.
    logger.debug({ method: req.method, path: url.pathname }, 'request');

    const probe = route === 'healthz' || route === 'readyz' || route === 'metrics' ? parts.probes[route] : undefined;
    if (probe) return probe(res);
    const reads = req.method === 'GET' || req.method === 'HEAD';
    if (route === 'dashboard' && reads) {
      const file = parts.dashboard.get(url.pathname);
      if (file) return file.send(req, res);
    }
    if (route !== 'rest' && route !== 'graphql') return sendError(res, 'NOT_FOUND', `Nothing at ${url.pathname}. GraphQL is at /graphql.`);
    // The REST contract is public, like GraphQL's introspection would be: no key needed to read it.
    if (route === 'rest' && url.pathname === OPENAPI_PATH && reads) return parts.openApi.send(req, res);

    const body = checkBodySize(req, options.maxBodyBytes);
    if (!body.ok) {
      discardRefusedBody(req);
      return sendError(res, body.code, body.message);
    }
    if (route === 'graphql' && wantsGraphiQL(req)) return parts.graphiql.send(req, res);

    const principal = await authenticate(req, res, route);
    if (principal === undefined) return;
    if (route === 'rest') return answerRest(res, await parts.rest(req.method ?? 'GET', url, principal, () => readBodyText(req)), principal);
    await parts.graphql(req, res, principal);
  }

  /** The request's principal (null for a CORS preflight), or undefined once a refusal has been sent. */
  async function authenticate(req: IncomingMessage, res: ServerResponse, route: 'rest' | 'graphql'): Promise<Principal | null | undefined> {
    const key = apiKeyFromHeaders(req.headers);
    // A browser's CORS preflight never carries a key, and yoga answers it without a lookup.
    const checked: KeyCheck = !key && req.method === 'OPTIONS' ? { refused: false, principal: null } : await parts.addressGuard.check(key, req);
    if (checked.refused) {
      const message = `Too many requests without a valid API key from this address; retry after ${checked.retryAfterSeconds} s.`;
      await sleep(REFUSAL_DELAY_MS);
      sendErrorFor(route === 'graphql', res, 'RATE_LIMITED', message, { 'retry-after': String(checked.retryAfterSeconds) });
      return undefined;
    }
    const principal = checked.principal;
    // Nothing of a request without a valid key is parsed, but for what a browser asks before it can
    // send a key: CORS preflights (yoga answers them). REST answers its own 401 (or 404 / 405).
    if (!principal && route === 'graphql' && req.method !== 'OPTIONS') {
      sendGraphqlError(res, 'UNAUTHENTICATED', errors.unauthenticated().message);
      return undefined;
    }
    if (principal) {
      const verdict = parts.rateLimiter.take(limitKeyOf(principal));
      if (!verdict.allowed) {
        const message = `Too many requests for this API key (${options.rateLimitPerSecond} per second); retry after ${verdict.retryAfterSeconds} s.`;
        await sleep(REFUSAL_DELAY_MS);
        sendErrorFor(route === 'graphql', res, 'RATE_LIMITED', message, { 'retry-after': String(verdict.retryAfterSeconds) });
        return undefined;
      }
    }
    return principal;
  }

  async function answerRest(res: ServerResponse, response: RestResponse, principal: Principal | null): Promise<void> {
    if (response.status !== 200 || typeof response.body !== 'object' || response.body === null)
      return sendJson(res, response.status, response.body, response.headers);
    // A page of jobs can be megabytes: made in slices, capped and counted as /graphql's are.
    const made = await serializedBody(response.body, options.maxResponseBytes);
    if ('tooLarge' in made) return sendError(res, 'RESPONSE_TOO_LARGE', errors.responseTooLarge(options.maxResponseBytes).message);
    if (principal) parts.budget.answered(principal.workspaceId, made.bytes);
    return sendJsonBody(res, 200, made, response.headers);
  }

  /** A request whose handling threw: logged; answered 503 when nothing was sent yet. */
  function onFailure(error: unknown, req: IncomingMessage, res: ServerResponse, url: URL | undefined, route: RouteLabel): void {
    logger.error({ err: error, method: req.method, path: url?.pathname }, 'request failed');
    if (res.headersSent) return void res.destroy();
    // Auth or routing failed before yoga could answer: almost always the database being away.
    sendErrorFor(route === 'graphql', res, 'SERVICE_UNAVAILABLE', errors.unavailable().message);
  }

  return { handle, onFailure };
}

/** A browser asking for the GraphiQL page (a GET of /graphql that accepts HTML). */
function wantsGraphiQL(req: IncomingMessage): boolean {
  return req.method === 'GET' && (req.headers.accept ?? '').includes('text/html');
}
