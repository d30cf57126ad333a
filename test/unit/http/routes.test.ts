import fc from 'fast-check';
import { expect, it } from 'vitest';
import { requestRoute } from '../../../src/http/routes.js';

it('routes each path to the part that answers it', () => {
  const cases: Array<[string, string]> = [
    ['/graphql', 'graphql'],
    ['/graphql?query=%7B__typename%7D', 'graphql'],
    ['/api', 'rest'],
    ['/api/jobs', 'rest'],
    ['/api/jobs/123/cancel', 'rest'],
    ['/api/openapi.json', 'rest'],
    ['/', 'dashboard'],
    ['/dashboard/app.js', 'dashboard'],
    ['/healthz', 'healthz'],
    ['/readyz', 'readyz'],
    ['/metrics', 'metrics'],
    ['/graphql/', 'unknown'],
    ['/apix', 'unknown'],
    ['/metrics/x', 'unknown'],
    ['/favicon.ico', 'unknown'],
  ];
  for (const [target, route] of cases) expect(requestRoute(target).route, target).toBe(route);
});

it('keeps the parsed URL, and a target that is no URL has none (and the route unknown)', () => {
  const { url } = requestRoute('/api/jobs?status=running&limit=5');
  expect(url?.pathname).toBe('/api/jobs');
  expect(url?.searchParams.get('status')).toBe('running');
  expect(requestRoute('http://[')).toEqual({ url: undefined, route: 'unknown' });
});

it('labels any target with one of a bounded set of routes, never throwing (the metrics label by it)', () => {
  const labels = new Set(['graphql', 'rest', 'dashboard', 'healthz', 'readyz', 'metrics', 'unknown']);
  fc.assert(
    fc.property(fc.oneof(fc.string(), fc.webPath(), fc.webUrl()), (target) => {
      expect(labels).toContain(requestRoute(target).route);
    }),
  );
  // Below /api, whatever follows (but dot segments, which the URL resolves away: /api/.. is /).
  const segment = fc.webSegment().filter((part) => part !== '.' && part !== '..' && part.toLowerCase() !== '%2e' && part.toLowerCase() !== '%2e%2e');
  fc.assert(
    fc.property(fc.array(segment, { minLength: 1, maxLength: 4 }), (parts) => {
      expect(requestRoute(`/api/${parts.join('/')}`).route).toBe('rest');
    }),
  );
});
