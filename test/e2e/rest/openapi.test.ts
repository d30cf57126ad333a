import net from 'node:net';
import { Validator } from '@seriousme/openapi-schema-validator';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { describeDb, sqlAsAnotherProgram } from '../../helpers/databases.js';
import { type TestApp, startTestApp, workspaceIdOf } from '../../helpers/test-app.js';

/**
 * GET /api/openapi.json against the shim as it really answers: the document is valid OpenAPI 3.1,
 * every response of every route (successes and errors, produced here for real) matches what the
 * document says of its path, method and status, and every response the document lists was seen.
 */

interface OpenApi {
  openapi: string;
  paths: Record<string, Record<string, { responses: Record<string, { content: { 'application/json': { schema: unknown } } }> }>>;
}

let doc: OpenApi;
const ajv = new Ajv2020({ strict: false, allErrors: true });
addFormats.default(ajv);
const seen = new Set<string>();
const apps: TestApp[] = [];
afterAll(async () => {
  for (const app of apps) await app.close();
});

/** Checks one live response against the document: documented, and its body valid. */
async function check(template: string, method: string, response: Response): Promise<unknown> {
  const text = await response.text();
  const body = text ? (JSON.parse(text) as unknown) : undefined;
  const operation = doc.paths[template]?.[method.toLowerCase()];
  expect(operation, `${method} ${template} is documented`).toBeDefined();
  const documented = operation!.responses[String(response.status)];
  expect(documented, `${method} ${template} ${response.status} is documented (got ${text})`).toBeDefined();
  const pointer = ['paths', template, method.toLowerCase(), 'responses', String(response.status), 'content', 'application/json', 'schema']
    .map((part) => part.replaceAll('~', '~0').replaceAll('/', '~1'))
    .join('/');
  const validate = ajv.getSchema(`openapi#/${pointer}`)!;
  expect(validate(body), `${method} ${template} ${response.status}: ${JSON.stringify(validate.errors)} in ${text}`).toBe(true);
  seen.add(`${method.toLowerCase()} ${template} ${response.status}`);
  return body;
}

/** A request Node's fetch cannot make (a GET with a body, a chunked body without Content-Length), over a socket. */
async function rawRequest(url: string, method: string, path: string, key: string, body: { chunked: true } | { bytes: number }): Promise<Response> {
  const { hostname, port } = new URL(url);
  const socket = net.connect(Number(port), hostname);
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  let raw = '';
  socket.on('data', (chunk) => (raw += chunk.toString()));
  const head = `${method} ${path} HTTP/1.1\r\nHost: x\r\nX-API-Key: ${key}\r\nConnection: close\r\n`;
  if ('chunked' in body) socket.write(`${head}Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n`);
  else socket.write(`${head}Content-Length: ${body.bytes}\r\n\r\n${'x'.repeat(body.bytes)}`);
  await new Promise((resolve) => socket.once('close', resolve));
  const [status, rest] = raw.split('\r\n\r\n', 2) as [string, string];
  return new Response(rest, { status: Number(status.split(' ')[1]) });
}

describeDb('the OpenAPI document of the REST routes', () => {
  let t: TestApp;
  let key: string;
  let workspaceId: string;
  const call = (path: string, init: RequestInit & { key?: string | null } = {}) =>
    fetch(`${t.url}${path}`, { ...init, headers: { ...(init.key !== null && { 'x-api-key': init.key ?? key }), ...init.headers } });

  beforeAll(async () => {
    t = await startTestApp({ env: { MAX_BODY_BYTES: '1024' } });
    apps.push(t);
    key = await t.createKey('openapi');
    workspaceId = await workspaceIdOf(t.app.apiKeys, key);
    const response = await fetch(`${t.url}/api/openapi.json`);
    expect(response.status).toBe(200);
    doc = (await response.json()) as OpenApi;
    ajv.addSchema(doc, 'openapi');
  });

  it('is served without a key, cacheable, and is valid OpenAPI 3.1', async () => {
    const response = await fetch(`${t.url}/api/openapi.json`);
    expect(response.headers.get('content-type')).toContain('application/json');
    expect(response.headers.get('cache-control')).toMatch(/max-age=\d+/);
    const etag = response.headers.get('etag');
    expect(etag).toBeTruthy();
    // Revalidation as RFC 9110 has it: the tag itself, its weak form, a list that holds it, or `*`.
    for (const ifNoneMatch of [etag!, `W/${etag}`, `"other", ${etag}`, `W/"other",W/${etag}`, '*']) {
      expect((await fetch(`${t.url}/api/openapi.json`, { headers: { 'if-none-match': ifNoneMatch } })).status, ifNoneMatch).toBe(304);
    }
    for (const ifNoneMatch of ['"other"', `${etag!.slice(0, -2)}"`, 'W/"other"']) {
      expect((await fetch(`${t.url}/api/openapi.json`, { headers: { 'if-none-match': ifNoneMatch } })).status, ifNoneMatch).toBe(200);
    }
    expect(doc.openapi).toBe('3.1.0');
    const result = await new Validator().validate(doc as unknown as Parameters<Validator['validate']>[0]);
    expect(result.errors ?? []).toEqual([]);
    expect(result.valid).toBe(true);
    // One path per route of the table, no more.
    expect(Object.keys(doc.paths).sort()).toEqual(['/api/jobs', '/api/jobs/{id}', '/api/jobs/{id}/cancel', '/api/tokens']);
  });

  /** Every live response of every route, successes and errors, each checked against the document. */
  async function everyRouteResponse(): Promise<void> {
    const reader = await t.createKey('openapi', ['jobs:read']);
    const job = await t.app.jobs.create(workspaceId, {
      type: 'collect',
      displayTitle: 'Analyzing',
      competitorId: 'c1',
      steps: [{ id: 'collect', name: 'Collecting' }],
    });
    await t.app.jobs.create(workspaceId, { type: 'discover-profile', displayTitle: 'Profile', steps: [], metadata: { deep: { a: [1, 2] } } });
    const done = await t.app.jobs.create(workspaceId, { type: 'collect', displayTitle: 'Done', steps: [] });
    await t.app.jobs.complete(workspaceId, done.id);
    const missing = '00000000-0000-4000-8000-000000000000';

    // What every route answers, whatever it does.
    const writer = await t.createKey('openapi', ['jobs:write']); // neither jobs:read nor jobs:cancel
    const every: Array<[string, string, string, string]> = [
      ['/api/jobs', 'GET', '/api/jobs', 'DELETE'],
      ['/api/jobs/{id}', 'GET', `/api/jobs/${job.id}`, 'POST'],
      ['/api/jobs/{id}/cancel', 'POST', `/api/jobs/${done.id}/cancel`, 'GET'],
      ['/api/tokens', 'POST', '/api/tokens', 'GET'],
    ];
    for (const [template, method, path, wrongMethod] of every) {
      await check(template, method, await call(path, { method, key: null }));
      await check(template, method, await call(path, { method, key: 'jg_unknown' }));
      await check(template, method, await call(path, { method, key: writer }));
      await check(template, method, await call(path, { method: wrongMethod }));
      await check(template, method, await rawRequest(t.url, method, path, key, { chunked: true }));
      await check(template, method, await rawRequest(t.url, method, path, key, { bytes: 2048 }));
    }

    // GET /api/jobs
    const list = (await check('/api/jobs', 'GET', await call('/api/jobs?status=running&limit=5'))) as { jobs: unknown[] };
    expect(list.jobs.length).toBeGreaterThan(0);
    await check('/api/jobs', 'GET', await call('/api/jobs'));
    await check('/api/jobs', 'GET', await call('/api/jobs?status=bogus'));
    // GET /api/jobs/{id}
    await check('/api/jobs/{id}', 'GET', await call(`/api/jobs/${job.id}`));
    await check('/api/jobs/{id}', 'GET', await call(`/api/jobs/${missing}`));
    await check('/api/jobs/{id}', 'GET', await call('/api/jobs/not-a-uuid'));
    // POST /api/jobs/{id}/cancel
    await check('/api/jobs/{id}/cancel', 'POST', await call(`/api/jobs/${job.id}/cancel`, { method: 'POST', key: reader }));
    await check('/api/jobs/{id}/cancel', 'POST', await call(`/api/jobs/${job.id}/cancel`, { method: 'POST' }));
    await check('/api/jobs/{id}/cancel', 'POST', await call(`/api/jobs/${job.id}/cancel`, { method: 'POST' }));
    await check('/api/jobs/{id}/cancel', 'POST', await call(`/api/jobs/${missing}/cancel`, { method: 'POST' }));

    // POST /api/tokens
    const mint = (body: unknown, as = key) =>
      call('/api/tokens', { method: 'POST', key: as, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const minted = (await check('/api/tokens', 'POST', await mint({ scopes: ['jobs:read'], competitorId: 'c1', ttlMs: 60_000 }))) as { token: string };
    expect((await call('/api/jobs', { key: null, headers: { authorization: `Bearer ${minted.token}` } })).status).toBe(200);
    await check('/api/tokens', 'POST', await mint({ scopes: ['jobs:write'] }));
    await check('/api/tokens', 'POST', await mint(['jobs:read']));
    await check('/api/tokens', 'POST', await call('/api/tokens', { method: 'POST', body: '{"scopes": ' }));
    await check('/api/tokens', 'POST', await mint({ scopes: ['jobs:cancel'] }, reader));
    await check('/api/tokens', 'POST', await mint({ scopes: ['jobs:read'], jobId: missing }));

    // CONFLICT: a job whose every update is dropped by a trigger of the test's own (as if another
    // writer always got there first), so that each of the gateway's conditional writes misses.
    const stuck = await t.app.jobs.create(workspaceId, { type: 'collect', displayTitle: 'Contended', steps: [] });
    const dropUpdates = [
      'CREATE FUNCTION test_drop_updates() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$',
      `CREATE TRIGGER test_drop_updates BEFORE UPDATE ON "Job" FOR EACH ROW WHEN (OLD.id = '${stuck.id}') EXECUTE FUNCTION test_drop_updates()`,
    ];
    for (const sql of dropUpdates) await sqlAsAnotherProgram(t.app.database, sql);
    await check('/api/jobs/{id}/cancel', 'POST', await call(`/api/jobs/${stuck.id}/cancel`, { method: 'POST' }));
  }

  /** The refusals of a key over its rate and of a database that is away, checked against the document. */
  async function refusals(): Promise<void> {
    const limited = await startTestApp({ env: { RATE_LIMIT_PER_KEY: '1', RATE_LIMIT_BURST: '1', RESPONSE_CACHE: 'false' } });
    apps.push(limited);
    const limitedKey = await limited.createKey('openapi-limits');
    const job = await limited.app.jobs.create(await workspaceIdOf(limited.app.apiKeys, limitedKey), { type: 'collect', displayTitle: 'x', steps: [] });
    const routes: Array<[string, string, string]> = [
      ['/api/jobs', 'GET', '/api/jobs'],
      ['/api/jobs/{id}', 'GET', `/api/jobs/${job.id}`],
      ['/api/jobs/{id}/cancel', 'POST', `/api/jobs/${job.id}/cancel`],
      ['/api/tokens', 'POST', '/api/tokens'],
    ];
    for (const [template, method, path] of routes) {
      let response: Response;
      do response = await fetch(`${limited.url}${path}`, { method, headers: { 'x-api-key': limitedKey } });
      while (response.status !== 429);
      expect(response.headers.get('retry-after')).toMatch(/^\d+$/);
      await check(template, method, response);
    }
    await new Promise((resolve) => setTimeout(resolve, 1_100)); // the bucket refills; the key stays remembered
    await limited.app.database.close();
    for (const [template, method, path] of routes) {
      await check(template, method, await fetch(`${limited.url}${path}`, { method, headers: { 'x-api-key': limitedKey } }));
      await new Promise((resolve) => setTimeout(resolve, 1_100));
    }
  }

  // One test, so that it holds alone and in any order: the document lists exactly what the routes
  // were seen to answer.
  it('describes every response of every route, successes, errors and refusals, and lists no other', { timeout: 60_000 }, async () => {
    await everyRouteResponse();
    await refusals();
    const documented = Object.entries(doc.paths).flatMap(([path, methods]) =>
      Object.entries(methods).flatMap(([method, operation]) => Object.keys(operation.responses).map((status) => `${method} ${path} ${status}`)),
    );
    expect([...seen].sort()).toEqual(documented.sort());
  });
});
