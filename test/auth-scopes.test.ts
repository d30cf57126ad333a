import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { beforeAll, expect, it } from 'vitest';
import {
  CancelJobDocument,
  CompleteJobDocument,
  CreateJobDocument,
  FailJobDocument,
  JobDocument,
  JobsDocument,
  UpdateJobProgressDocument,
} from '../src/graphql/operations.generated.js';
import { describeDb } from './helpers/databases.js';
import { codesOf, graphql, graphqlOk } from './helpers/http.js';
import { type TestApp, startTestApp } from './helpers/test-app.js';

const input = { type: 'collect', displayTitle: 'Scoped', steps: [{ id: 'a', name: 'A' }] };
const MISSING = '00000000-0000-4000-8000-000000000000';

describeDb('API keys over GraphQL: authentication, scopes, workspaces', () => {
  let t: TestApp;
  let all: string;

  beforeAll(async () => {
    t = await startTestApp();
    all = await t.createKey('auth-a');
  });

  const newJob = async (key = all) => (await graphqlOk(t.url, CreateJobDocument, { input }, key)).createJob;

  /** Every operation, as [name, scope, request]. */
  const operations = (id: string) =>
    [
      ['jobs', 'jobs:read', (key?: string) => graphql(t.url, JobsDocument, {}, key)],
      ['job', 'jobs:read', (key?: string) => graphql(t.url, JobDocument, { id }, key)],
      ['cancelJob', 'jobs:cancel', (key?: string) => graphql(t.url, CancelJobDocument, { id }, key)],
      ['createJob', 'jobs:write', (key?: string) => graphql(t.url, CreateJobDocument, { input }, key)],
      ['updateJobProgress', 'jobs:write', (key?: string) => graphql(t.url, UpdateJobProgressDocument, { input: { id, progress: 10 } }, key)],
      ['completeJob', 'jobs:write', (key?: string) => graphql(t.url, CompleteJobDocument, { id }, key)],
      ['failJob', 'jobs:write', (key?: string) => graphql(t.url, FailJobDocument, { id, error: 'x' }, key)],
    ] as const;

  it('answers UNAUTHENTICATED with HTTP 401 without a valid key, for every operation', async () => {
    const job = await newJob();
    const { key: revoked, info } = await t.app.apiKeys.create({ workspace: 'auth-a', scopes: ['jobs:read', 'jobs:cancel', 'jobs:write'] });
    await t.app.apiKeys.revoke(info.id);
    for (const [name, , send] of operations(job.id)) {
      for (const key of [undefined, 'jg_not-a-key', revoked]) {
        const result = await send(key);
        expect(result.status, `${name} with ${key ? 'a bad' : 'no'} key`).toBe(401);
        expect(codesOf(result)).toEqual(['UNAUTHENTICATED']);
        expect(JSON.stringify(result)).not.toContain(revoked);
      }
    }
    expect((await graphqlOk(t.url, JobDocument, { id: job.id }, all)).job).toMatchObject({ status: 'RUNNING', progress: 0 });
  });

  it('answers FORBIDDEN with HTTP 403 for a key without the scope, and changes nothing', async () => {
    const job = await newJob();
    const keys = {
      'jobs:read': await t.createKey('auth-a', ['jobs:cancel', 'jobs:write']),
      'jobs:cancel': await t.createKey('auth-a', ['jobs:read', 'jobs:write']),
      'jobs:write': await t.createKey('auth-a', ['jobs:read', 'jobs:cancel']),
    };
    const before = (await graphqlOk(t.url, JobsDocument, {}, all)).jobs.length;
    for (const [name, scope, send] of operations(job.id)) {
      const result = await send(keys[scope]);
      expect(result.status, name).toBe(403);
      expect(codesOf(result), name).toEqual(['FORBIDDEN']);
      expect(result.errors?.[0]?.message).toContain(scope);
    }
    expect((await graphqlOk(t.url, JobDocument, { id: job.id }, all)).job).toMatchObject({ status: 'RUNNING', progress: 0 });
    expect((await graphqlOk(t.url, JobsDocument, {}, all)).jobs.length).toBe(before);
  });

  it('accepts Authorization: Bearer like X-API-Key', async () => {
    const job = await newJob();
    const response = await fetch(`${t.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${all}` },
      body: JSON.stringify({ query: `{ job(id: "${job.id}") { id } }` }),
    });
    expect(await response.json()).toEqual({ data: { job: { id: job.id } } });
  });

  it("treats another workspace's job exactly like one that does not exist", async () => {
    const mine = await newJob();
    const other = await t.createKey('auth-b');
    expect((await graphql(t.url, JobDocument, { id: mine.id }, other)).data).toEqual({ job: null });
    expect((await graphqlOk(t.url, JobsDocument, {}, other)).jobs.map((j) => j.id)).not.toContain(mine.id);
    const attempts = [
      [graphql(t.url, CancelJobDocument, { id: mine.id }, other), graphql(t.url, CancelJobDocument, { id: MISSING }, other)],
      [graphql(t.url, UpdateJobProgressDocument, { input: { id: mine.id, progress: 5 } }, other), graphql(t.url, UpdateJobProgressDocument, { input: { id: MISSING, progress: 5 } }, other)],
      [graphql(t.url, CompleteJobDocument, { id: mine.id }, other), graphql(t.url, CompleteJobDocument, { id: MISSING }, other)],
      [graphql(t.url, FailJobDocument, { id: mine.id, error: 'x' }, other), graphql(t.url, FailJobDocument, { id: MISSING, error: 'x' }, other)],
    ];
    for (const [theirs, missing] of attempts) {
      const [a, b] = await Promise.all([theirs!, missing!]);
      expect(codesOf(a)).toEqual(['NOT_FOUND']);
      expect(a.status).toBe(b.status);
      expect(a.errors?.[0]?.message.replace(mine.id, '<id>')).toBe(b.errors?.[0]?.message.replace(MISSING, '<id>'));
    }
    expect((await graphqlOk(t.url, JobDocument, { id: mine.id }, all)).job).toMatchObject({ status: 'RUNNING', progress: 0, error: null });
  });

  it('keeps workspaces apart under any interleaving of their writes (property)', async () => {
    const keys = [await t.createKey('prop-x'), await t.createKey('prop-y')];
    const created: string[][] = [[], []];
    await fc.assert(
      fc.asyncProperty(fc.array(fc.record({ who: fc.integer({ min: 0, max: 1 }), action: fc.constantFrom('create', 'complete', 'cancel') }), { minLength: 1, maxLength: 6 }), async (steps) => {
        for (const { who, action } of steps) {
          const key = keys[who]!;
          const own = created[who]!;
          if (action === 'create' || own.length === 0) own.push((await newJob(key)).id);
          else if (action === 'complete') await graphql(t.url, CompleteJobDocument, { id: own.at(-1)! }, key);
          else await graphql(t.url, CancelJobDocument, { id: created[1 - who]!.at(-1) ?? MISSING }, key); // tries the other's job
        }
        for (const who of [0, 1]) {
          const listed = (await graphqlOk(t.url, JobsDocument, { limit: 200 }, keys[who]!)).jobs;
          expect(listed.map((j) => j.id).sort()).toEqual([...created[who]!].sort());
          // A cancel aimed at the other workspace never lands.
          expect(listed.every((j) => j.error !== 'Cancelled')).toBe(true);
        }
      }),
      { numRuns: 12 },
    );
  });

  it('never shows a key or its hash in an error, nor a stack trace', async () => {
    const { key } = await t.app.apiKeys.create({ workspace: 'auth-a', scopes: ['jobs:read'] });
    const hash = createHash('sha256').update(key).digest('hex');
    const responses = [
      await graphql(t.url, CancelJobDocument, { id: MISSING }, key),
      await graphql(t.url, JobDocument, { id: 'x' }, `${key}tampered`),
      await graphql(t.url, JobsDocument, { limit: 5000 }, key),
    ];
    for (const response of responses) {
      const text = JSON.stringify(response);
      expect(text).not.toContain(key);
      expect(text).not.toContain(hash);
      expect(text).not.toMatch(/\n\s+at |\.ts:\d+/);
    }
  });

  it('serves GraphiQL to a browser without a key', async () => {
    const response = await fetch(`${t.url}/graphql`, { headers: { accept: 'text/html' } });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toContain('text/html');
    expect(await response.text()).toContain('<title>jobs-gateway</title>');
  });
});
