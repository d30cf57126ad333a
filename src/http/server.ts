import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { Config } from '../config.js';
import { guardConnections } from '../limits/connection-guard.js';
import { setResponseSecurityHeaders } from './security-headers.js';
import { type RouteLabel, requestRoute } from './routes.js';
import type { Tracer } from '../telemetry/tracer.js';

/** Answers one request, given its parsed target and route (see routes.ts). */
export type RequestHandler = (req: IncomingMessage, res: ServerResponse, url: URL | undefined, route: RouteLabel) => Promise<void>;

/** Told of every request once its response has closed. */
export type RequestObserver = (route: RouteLabel, method: string, status: number, seconds: number) => void;

/** A span's `http.route` per route (the REST routes together); probes are not traced. */
const TRACED_ROUTES: Partial<Record<RouteLabel, string>> = { graphql: '/graphql', rest: '/api/*', dashboard: '/', unknown: '' };

/**
 * The HTTP server: Node's, with the request timeouts and the connection cap of HTTP_*, security
 * headers on every response, and every request routed, timed and handed to `handle`; a request
 * whose handler throws goes to `onFailure`. With a tracer, each request but the probes' is a server
 * span (the child of the caller's `traceparent`), open until its response has closed.
 */
export function createHttpServer(
  options: Config['http'],
  handle: RequestHandler,
  onFailure: (error: unknown, req: IncomingMessage, res: ServerResponse, url: URL | undefined, route: RouteLabel) => void,
  observe?: RequestObserver,
  tracer?: Tracer,
): http.Server {
  const answer = (req: IncomingMessage, res: ServerResponse, url: URL | undefined, route: RouteLabel): void => {
    handle(req, res, url, route).catch((error: unknown) => onFailure(error, req, res, url, route));
  };
  const traced = (req: IncomingMessage, res: ServerResponse, url: URL | undefined, route: RouteLabel): void => {
    const template = TRACED_ROUTES[route];
    if (!tracer || template === undefined) return answer(req, res, url, route);
    const method = req.method ?? 'other';
    // The route, never the path (a job's id, or any text a caller sends) nor the query string (keys, variables).
    const attributes = { 'http.request.method': method, 'http.route': template || undefined };
    void tracer.span(template ? `${method} ${template}` : method, { kind: 'server', headers: req.headers, attributes }, (span) => {
      answer(req, res, url, route);
      return new Promise<void>((resolve) =>
        res.once('close', () => {
          span.setAttributes({ 'http.response.status_code': res.statusCode });
          if (res.statusCode >= 500) {
            span.fail(new Error(String(res.statusCode)));
            span.setAttributes({ 'error.type': String(res.statusCode) });
          }
          resolve();
        }),
      );
    });
  };
  const server = http.createServer(
    {
      headersTimeout: options.headersTimeoutMs,
      requestTimeout: options.requestTimeoutMs,
      keepAliveTimeout: options.keepAliveTimeoutMs,
      // How often Node checks the two timeouts above (30 s by default, far longer than they are).
      connectionsCheckingInterval: Math.min(1_000, options.headersTimeoutMs),
    },
    (req, res) => {
      setResponseSecurityHeaders(res);
      const { url, route } = requestRoute(req.url);
      if (observe) {
        const started = performance.now();
        res.once('close', () => observe(route, req.method ?? 'other', res.statusCode, (performance.now() - started) / 1000));
      }
      traced(req, res, url, route);
    },
  );
  guardConnections(server, options.maxConnections);
  return server;
}

/** Stops accepting, closes idle keep-alive sockets, and waits for in-flight requests up to `timeoutMs`. */
export async function stopServer(server: http.Server, timeoutMs: number): Promise<void> {
  if (!server.listening) return;
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeIdleConnections();
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<void>((resolve) => {
    timer = setTimeout(() => {
      server.closeAllConnections();
      resolve();
    }, timeoutMs);
  });
  await Promise.race([closed, deadline]);
  clearTimeout(timer);
  await closed;
}
