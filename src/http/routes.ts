/** The parts of the HTTP entry a request can reach, as a bounded label for the metrics (paths carry job ids). */
export type RouteLabel = 'graphql' | 'rest' | 'dashboard' | 'healthz' | 'readyz' | 'metrics' | 'unknown';

/**
 * The gateway's HTTP routes, in the order they are tried: which part answers a path. Within a part
 * its own table decides (the REST shim's routes in rest/routes.ts, the dashboard's files in
 * dashboard/page.ts); entry.ts says what each part needs before it answers (a key, a body limit).
 */
const ROUTES: ReadonlyArray<{ route: RouteLabel; matches(path: string): boolean }> = [
  { route: 'graphql', matches: (path) => path === '/graphql' },
  { route: 'rest', matches: (path) => path === '/api' || path.startsWith('/api/') },
  { route: 'dashboard', matches: (path) => path === '/' || path.startsWith('/dashboard/') },
  { route: 'healthz', matches: (path) => path === '/healthz' },
  { route: 'readyz', matches: (path) => path === '/readyz' },
  { route: 'metrics', matches: (path) => path === '/metrics' },
];

/**
 * The request target as a URL (undefined when it does not parse: Node's parser lets through
 * targets such as `http://[`) and the route it belongs to: one parse per request, for both the
 * routing and the metrics' label.
 */
export function requestRoute(target: string | undefined): { url: URL | undefined; route: RouteLabel } {
  let url: URL;
  try {
    url = new URL(target ?? '/', 'http://localhost');
  } catch {
    return { url: undefined, route: 'unknown' };
  }
  const path = url.pathname;
  return { url, route: ROUTES.find((candidate) => candidate.matches(path))?.route ?? 'unknown' };
}
