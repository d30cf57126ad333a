import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ApolloClient, HttpLink, InMemoryCache, gql } from '@apollo/client';
import { PersistedQueryLink } from '@apollo/client/link/persisted-queries';
import { Client as UrqlClient, fetchExchange } from '@urql/core';
import { persistedExchange } from '@urql/exchange-persisted';
import fc from 'fast-check';
import { parse } from 'graphql';
import { WebSocket } from 'ws';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { LIST_DOCUMENT } from '../../../src/dashboard/documents.js';
import { manifestOf } from '../../../src/graphql/trusted-documents.js';
import { JobsClient } from '../../../src/client/client.js';
import { JobsWorker } from '../../../src/sdk/worker.js';
import { describeDb } from '../../helpers/databases.js';
import { rest } from '../../helpers/http.js';
import { openEventStream } from '../../helpers/sse-client.js';
import { type TestApp, startTestApp, workspaceIdOf } from '../../helpers/test-app.js';
import { TestSocket } from '../../helpers/ws-client.js';

/**
 * Documents named by a hash instead of sent (automatic persisted queries, with Apollo Client's and
 * urql's own links) and the trusted-documents mode (TRUSTED_DOCUMENTS), over every transport.
 */

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

const JOBS = 'query PersistedJobs { jobs(limit: 20) { id status } }';
const CREATE = 'mutation PersistedCreate($input: CreateJobInput!) { createJob(input: $input) { id } }';
const WATCH = 'subscription PersistedWatch { jobUpdated { id status } }';

interface Sent {
  status: number;
  body: { data?: Record<string, unknown> | null; errors?: Array<{ message: string; extensions?: { code?: string } }> };
}

/** A POST of `/graphql` with any parameters, as a client of the protocol would send them. */
async function post(url: string, key: string, params: Record<string, unknown>): Promise<Sent> {
  const response = await fetch(`${url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-api-key': key },
    body: JSON.stringify(params),
  });
  return { status: response.status, body: (await response.json()) as Sent['body'] };
}

/** A GET of `/graphql`, its parameters in the query string. */
async function get(url: string, key: string, params: Record<string, unknown>): Promise<Sent> {
  const search = new URLSearchParams(Object.entries(params).map(([name, value]) => [name, typeof value === 'string' ? value : JSON.stringify(value)]));
  const response = await fetch(`${url}/graphql?${search}`, { headers: { 'x-api-key': key, accept: 'application/graphql-response+json' } });
  return { status: response.status, body: (await response.json()) as Sent['body'] };
}

const persisted = (hash: string) => ({ persistedQuery: { version: 1, sha256Hash: hash } });
const codes = (sent: Sent) => (sent.body.errors ?? []).map((error) => error.extensions?.code);

/** A fetch that records what a client library sends before sending it. */
function recordingFetch(requests: Array<{ method: string; query: boolean }>): typeof fetch {
  return async (input, init) => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    const method = init?.method ?? 'GET';
    const body = typeof init?.body === 'string' ? (JSON.parse(init.body) as { query?: string }) : undefined;
    requests.push({ method, query: Boolean(body?.query ?? url.searchParams.get('query')) });
    return fetch(input, init);
  };
}

describeDb('automatic persisted queries', () => {
  let t: TestApp;
  let key: string;
  const cleanups: Array<() => unknown> = [];
  beforeAll(async () => {
    t = await startTestApp();
    key = await t.createKey('apq', ['jobs:read', 'jobs:write']);
    await t.app.jobs.create(await workspaceIdOf(t.app.apiKeys, key), { type: 'collect', displayTitle: 'collect', steps: [] });
  });
  afterAll(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  it('Apollo Client’s PersistedQueryLink: a miss sends the document once, then the hash alone serves every client of the workspace, over POST and GET', async () => {
    const run = async (useGETForHashedQueries: boolean) => {
      const requests: Array<{ method: string; query: boolean }> = [];
      const client = new ApolloClient({
        cache: new InMemoryCache(),
        link: new PersistedQueryLink({ sha256, useGETForHashedQueries }).concat(
          new HttpLink({ uri: `${t.url}/graphql`, headers: { 'x-api-key': key }, fetch: recordingFetch(requests) }),
        ),
      });
      cleanups.push(() => client.stop());
      const { data } = await client.query({ query: gql(JOBS), fetchPolicy: 'network-only' });
      return { data, requests };
    };
    const first = await run(false);
    expect((first.data as { jobs: unknown[] }).jobs).toHaveLength(1);
    // Not known yet: the hash, PERSISTED_QUERY_NOT_FOUND, then the hash with the document.
    expect(first.requests).toEqual([
      { method: 'POST', query: false },
      { method: 'POST', query: true },
    ]);
    // Another client of the workspace (a new page load): the hash alone, by POST and by GET.
    for (const viaGet of [false, true]) {
      const next = await run(viaGet);
      expect(next.data).toEqual(first.data);
      expect(next.requests).toEqual([{ method: viaGet ? 'GET' : 'POST', query: false }]);
    }
  });

  it('urql’s persistedExchange, GET for hashed queries: a miss, then the hash alone', async () => {
    const query = 'query PersistedJobsUrql { jobs(limit: 5) { id type } }';
    const run = async () => {
      const requests: Array<{ method: string; query: boolean }> = [];
      const client = new UrqlClient({
        url: `${t.url}/graphql`,
        fetchOptions: { headers: { 'x-api-key': key } },
        fetch: recordingFetch(requests),
        exchanges: [persistedExchange({ preferGetForPersistedQueries: true }), fetchExchange],
      });
      const result = await client.query(query, {}, { requestPolicy: 'network-only' }).toPromise();
      expect(result.error).toBeUndefined();
      return { data: result.data as { jobs: Array<{ type: string }> }, requests };
    };
    const first = await run();
    expect(first.data.jobs.map((job) => job.type)).toEqual(['collect']);
    // urql sends the document by GET too while the URL stays short.
    expect(first.requests).toEqual([
      { method: 'GET', query: false },
      { method: 'GET', query: true },
    ]);
    const second = await run();
    expect(second.data).toEqual(first.data);
    expect(second.requests).toEqual([{ method: 'GET', query: false }]);
  });

  it('keeps each workspace’s registrations its own: another workspace’s key is told PERSISTED_QUERY_NOT_FOUND', async () => {
    const query = 'query PersistedPrivate { jobs(competitorId: "acme-secret-project") { id } }';
    expect((await post(t.url, key, { query, extensions: persisted(sha256(query)) })).status).toBe(200);
    expect((await post(t.url, key, { extensions: persisted(sha256(query)) })).body.data).toEqual({ jobs: [] });
    const stranger = await t.createKey('apq-stranger', ['jobs:read']);
    const probed = await post(t.url, stranger, { extensions: persisted(sha256(query)) });
    expect({ status: probed.status, codes: codes(probed), message: probed.body.errors?.[0]?.message }).toEqual({
      status: 404,
      codes: ['PERSISTED_QUERY_NOT_FOUND'],
      message: 'PersistedQueryNotFound',
    });
  });

  it('refuses a hash that is not the document’s, 400, and runs nothing', async () => {
    const workspaceId = await workspaceIdOf(t.app.apiKeys, key);
    expect((await post(t.url, key, { query: JOBS, extensions: persisted(sha256(JOBS)) })).status).toBe(200);
    const before = (await t.app.jobs.list(workspaceId, { limit: 200 })).length;
    const sent = await post(t.url, key, {
      query: CREATE,
      variables: { input: { type: 'collect', displayTitle: 'Collect', steps: [] } },
      extensions: persisted(sha256(JOBS)),
    });
    expect({ status: sent.status, codes: codes(sent) }).toEqual({ status: 400, codes: ['BAD_USER_INPUT'] });
    // Nor was the mutation registered under that hash: it still names the query.
    expect(Object.keys((await post(t.url, key, { extensions: persisted(sha256(JOBS)) })).body.data ?? {})).toEqual(['jobs']);
    expect((await t.app.jobs.list(workspaceId, { limit: 200 })).length).toBe(before);
  });

  it('answers any persistedQuery or documentId a client can send with a 200, 400 or 404, never a 500, and creates a job only for a matching hash', async () => {
    const workspaceId = await workspaceIdOf(t.app.apiKeys, key);
    const value = fc.oneof(
      fc.constantFrom(null, 1, 2, '', 'sha256:', sha256(CREATE), sha256(JOBS).toUpperCase(), 'x'.repeat(300)),
      fc.string({ maxLength: 80 }),
      fc.integer(),
      fc.dictionary(fc.string({ maxLength: 10 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 3 }),
    );
    await fc.assert(
      fc.asyncProperty(
        fc.record(
          {
            query: fc.constantFrom<unknown>(CREATE, undefined, '', 123, {}, true, null),
            extensions: fc.oneof(fc.record({ persistedQuery: fc.oneof(value, fc.record({ version: value, sha256Hash: value })) }), value),
            documentId: value,
          },
          { requiredKeys: [] },
        ),
        fc.boolean(),
        async (params, viaGet) => {
          const before = (await t.app.jobs.list(workspaceId, { limit: 200 })).length;
          const sent = viaGet
            ? await get(t.url, key, params)
            : await post(t.url, key, { ...params, variables: { input: { type: 'fuzz', displayTitle: 'Fuzz', steps: [] } } });
          expect([200, 400, 404, 405]).toContain(sent.status);
          const created = (await t.app.jobs.list(workspaceId, { limit: 200 })).length - before;
          const hash = (params.extensions as { persistedQuery?: { sha256Hash?: unknown } } | undefined)?.persistedQuery?.sha256Hash;
          if (created > 0) {
            expect(viaGet).toBe(false);
            expect(params.query === CREATE || hash === sha256(CREATE) || params.documentId === sha256(CREATE)).toBe(true);
          }
        },
      ),
      { numRuns: 60 },
    );
  });

  it('names a subscription’s document by its hash over WebSockets (graphql-ws sends an empty query)', async () => {
    const socket = await TestSocket.open(t.url, { apiKey: key });
    cleanups.push(() => socket.close());
    socket.send({ id: 'missing', type: 'subscribe', payload: { query: '', extensions: persisted(sha256(WATCH)) } });
    const missing = await socket.waitFor((m) => m.id === 'missing' && m.type === 'error');
    expect(missing.payload).toEqual([expect.objectContaining({ message: 'PersistedQueryNotFound', extensions: { code: 'PERSISTED_QUERY_NOT_FOUND' } })]);
    socket.send({ id: 'register', type: 'subscribe', payload: { query: WATCH, extensions: persisted(sha256(WATCH)) } });
    socket.send({ id: 'by-hash', type: 'subscribe', payload: { query: '', extensions: persisted(sha256(WATCH)) } });
    await expect.poll(() => t.app.webSockets.multiplexer.memberCount).toBe(2);
    const job = await t.app.jobs.create(await workspaceIdOf(t.app.apiKeys, key), { type: 'watched', displayTitle: 'watched', steps: [] });
    for (const id of ['register', 'by-hash']) {
      const next = await socket.waitFor((m) => m.id === id && m.type === 'next');
      expect(next.payload).toEqual({ data: { jobUpdated: { id: job.id, status: 'RUNNING' } } });
    }
  });
});

describeDb('trusted documents (TRUSTED_DOCUMENTS)', () => {
  let t: TestApp;
  /** A dashboard's key: no operations:arbitrary. */
  let key: string;
  /** An operator's key, for GraphiQL and ad hoc queries. */
  let operator: string;
  let workspaceId: string;
  const LISTED = 'query AppJobs { jobs(limit: 10) { id type status } }';
  const UNLISTED = 'query Unlisted { jobs(limit: 10) { id metadata } }';
  const manifest = manifestOf([parse(LISTED)]);
  const listedId = Object.keys(manifest)[0]!;
  const cleanups: Array<() => unknown> = [];

  beforeAll(async () => {
    const file = path.join(os.tmpdir(), `trusted-${process.pid}-${Date.now()}.json`);
    await writeFile(file, JSON.stringify(manifest));
    t = await startTestApp({ env: { TRUSTED_DOCUMENTS: file } });
    key = await t.createKey('trusted', ['jobs:read', 'jobs:cancel', 'jobs:write']);
    operator = await t.createKey('trusted', ['jobs:read', 'jobs:write', 'operations:arbitrary']);
    workspaceId = await workspaceIdOf(t.app.apiKeys, key);
    await t.app.jobs.create(workspaceId, { type: 'collect', displayTitle: 'collect', steps: [] });
  });
  afterAll(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  const refused = (sent: Sent) => ({ status: sent.status, codes: codes(sent), data: sent.body.data ?? null });
  const FORBIDDEN = { status: 403, codes: ['FORBIDDEN'], data: null };

  it('runs a listed document sent in full (however it is spaced or ordered), by its documentId, or by its hash', async () => {
    const expected = { jobs: [expect.objectContaining({ type: 'collect', status: 'RUNNING' })] };
    const respaced = '# the same document\nquery AppJobs {\n  jobs(limit: 10) { status type id }\n}';
    for (const params of [
      { query: LISTED },
      { query: respaced },
      { documentId: listedId },
      { documentId: `sha256:${listedId}` },
      { extensions: persisted(listedId) },
    ]) {
      const sent = await post(t.url, key, params);
      expect({ status: sent.status, data: sent.body.data }, JSON.stringify(params)).toEqual({ status: 200, data: expected });
    }
    expect((await get(t.url, key, { documentId: listedId })).body.data).toEqual(expected);
    // An APQ client's own hash (of the text it sends) serves it too, once registered.
    const spaced = 'query AppJobs { jobs(limit: 10) { id type status } }\n';
    expect(codes(await post(t.url, key, { extensions: persisted(sha256(spaced)) }))).toEqual(['PERSISTED_QUERY_NOT_FOUND']);
    expect((await post(t.url, key, { query: spaced, extensions: persisted(sha256(spaced)) })).body.data).toEqual(expected);
    expect((await post(t.url, key, { extensions: persisted(sha256(spaced)) })).body.data).toEqual(expected);
  });

  it('refuses anything else for a key without operations:arbitrary, over POST, GET, Server-Sent Events and WebSockets; runs it for one with', async () => {
    const before = (await t.app.jobs.list(workspaceId, { limit: 200 })).length;
    expect(refused(await post(t.url, key, { query: UNLISTED }))).toEqual(FORBIDDEN);
    expect(refused(await get(t.url, key, { query: UNLISTED }))).toEqual(FORBIDDEN);
    expect(refused(await post(t.url, key, { query: CREATE, variables: { input: { type: 'untrusted', displayTitle: 'Untrusted', steps: [] } } }))).toEqual(
      FORBIDDEN,
    );
    // A listed document with a field added is another document.
    expect(refused(await post(t.url, key, { query: LISTED.replace('status', 'status progress') }))).toEqual(FORBIDDEN);
    // Registering it as a persisted query does not make it trusted, nor stores it.
    expect(refused(await post(t.url, key, { query: UNLISTED, extensions: persisted(sha256(UNLISTED)) }))).toEqual(FORBIDDEN);
    expect(codes(await post(t.url, operator, { extensions: persisted(sha256(UNLISTED)) }))).toEqual(['PERSISTED_QUERY_NOT_FOUND']);
    expect((await t.app.jobs.list(workspaceId, { limit: 200 })).length).toBe(before);

    const stream = await fetch(`${t.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream', 'x-api-key': key },
      body: JSON.stringify({ query: WATCH }),
    });
    const text = await stream.text();
    expect(text).toContain('"FORBIDDEN"');
    expect(text).not.toContain('"jobUpdated"');

    const socket = await TestSocket.open(t.url, { apiKey: key });
    cleanups.push(() => socket.close());
    // jobUpdated (which the WebSocket server runs itself, multiplexed) and a query (which yoga's executor runs).
    socket.subscribe('watch', WATCH);
    socket.subscribe('query', UNLISTED);
    const watchError = await socket.waitFor((m) => m.id === 'watch' && m.type === 'error');
    expect((watchError.payload as Array<{ extensions?: { code?: string } }>).map((e) => e.extensions?.code)).toEqual(['FORBIDDEN']);
    // A query's refusal is its result, as over HTTP.
    const queryResult = await socket.waitFor((m) => m.id === 'query' && m.type === 'next');
    expect(queryResult.payload).toEqual({ errors: [expect.objectContaining({ extensions: expect.objectContaining({ code: 'FORBIDDEN' }) })] });
    expect(t.app.webSockets.multiplexer.memberCount).toBe(0);

    // The operator's key runs them all.
    const ran = await post(t.url, operator, { query: UNLISTED });
    expect({ status: ran.status, errors: ran.body.errors }).toEqual({ status: 200, errors: undefined });
    expect(Object.keys((ran.body.data as { jobs: object[] }).jobs[0]!)).toEqual(['id', 'metadata']);
    const watching = await openEventStream(t.url, operator, WATCH);
    cleanups.push(() => watching.close());
    const job = await t.app.jobs.create(workspaceId, { type: 'seen-by-operator', displayTitle: 'seen-by-operator', steps: [] });
    expect(await watching.next(1)).toEqual([{ data: { jobUpdated: { id: job.id, status: 'RUNNING' } } }]);
  });

  it('keeps the gateway’s own parts working for keys without it: the REST routes, the worker SDK, the client library and the dashboard’s documents', async () => {
    const listed = await rest(t.url, 'GET', '/api/jobs?limit=5', key);
    expect(listed.status).toBe(200);
    const worker = new JobsWorker({ url: t.url, apiKey: key, retries: 0 });
    cleanups.push(() => worker.close());
    const job = await worker.createJob({ type: 'sdk', displayTitle: 'SDK', steps: [{ id: 'one', name: 'One' }] });
    await job.report({ progress: 50, stepId: 'one', stepStatus: 'RUNNING' });
    await job.complete();
    expect((await rest(t.url, 'GET', `/api/jobs/${job.id}`, key)).body).toEqual({ job: expect.objectContaining({ status: 'completed', progress: 100 }) });
    const dashboard = await post(t.url, key, { query: LIST_DOCUMENT, variables: { after: null } });
    expect(dashboard.status).toBe(200);
    expect((dashboard.body.data as { viewer: { scopes: string[] } }).viewer.scopes.sort()).toEqual(['jobs:cancel', 'jobs:read', 'jobs:write']);
    const client = new JobsClient({ url: t.url, credential: key, webSocketImpl: WebSocket });
    cleanups.push(() => client.close());
    expect((await client.listPage({}, { first: 5 })).jobs.length).toBeGreaterThan(0);
    expect((await client.getJob(job.id))?.status).toBe('COMPLETED');
    const watched = client.watchJobs({ type: 'client-watched' });
    const next = watched.next();
    await expect.poll(() => t.app.webSockets.multiplexer.memberCount).toBeGreaterThan(0);
    const created = await t.app.jobs.create(workspaceId, { type: 'client-watched', displayTitle: 'Watched', steps: [] });
    expect((await next).value).toEqual(expect.objectContaining({ id: created.id, status: 'RUNNING' }));
    await watched.return?.(undefined);
    const cancel = await rest(
      t.url,
      'POST',
      `/api/jobs/${(await t.app.jobs.create(workspaceId, { type: 'to-cancel', displayTitle: 'to-cancel', steps: [] })).id}/cancel`,
      key,
    );
    expect(cancel.status).toBe(200);
  });

  it('never gives operations:arbitrary to an access token', async () => {
    const sent = await post(t.url, operator, {
      query: 'mutation RestCreateAccessToken($input: CreateAccessTokenInput!) { createAccessToken(input: $input) { token expiresAt } }',
      variables: { input: { scopes: ['jobs:read', 'operations:arbitrary'] } },
    });
    expect(codes(sent)).toEqual(['BAD_USER_INPUT']);
    expect(sent.body.errors?.[0]?.message).toContain('operations:arbitrary cannot be given to a token');
  });

  it('accepts no generated document but the listed one, whatever a key without the scope sends', async () => {
    const field = fc.constantFrom('id', 'type', 'status', 'progress', 'metadata', 'displayTitle');
    await fc.assert(
      fc.asyncProperty(fc.uniqueArray(field, { minLength: 1, maxLength: 6 }), fc.integer({ min: 1, max: 20 }), async (fields, limit) => {
        const query = `query AppJobs { jobs(limit: ${limit}) { ${fields.join(' ')} } }`;
        const sent = await post(t.url, key, { query });
        const listed = limit === 10 && [...fields].sort().join() === 'id,status,type';
        expect(sent.status).toBe(listed ? 200 : 403);
      }),
      { numRuns: 40 },
    );
  });
});
