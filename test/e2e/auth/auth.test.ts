import http from 'node:http';
import { createHash, randomBytes } from 'node:crypto';
import type { TypedDocumentNode } from '@graphql-typed-document-node/core';
import fc from 'fast-check';
import { type GraphQLFormattedError, print } from 'graphql';
import { beforeAll, expect, it } from 'vitest';
import type { Scope } from '../../../src/auth/scopes.js';
import {
  CancelJobDocument,
  CompleteJobDocument,
  CreateJobDocument,
  type CreateJobInput,
  FailJobDocument,
  JobDocument,
  JobsDocument,
  UpdateJobProgressDocument,
} from '../../../src/graphql/operations.generated.js';
import { withoutCursor } from '../../helpers/cursor.js';
import { describeDb } from '../../helpers/databases.js';
import { codesOf, graphql, graphqlOk } from '../../helpers/http.js';
import { settleFeed } from '../../helpers/feed.js';
import { type TestApp, NO_BACKGROUND_READS, startTestApp } from '../../helpers/test-app.js';

/** The scopes that fields require (operations:arbitrary guards documents: test/e2e/graphql/persisted-documents.test.ts). */
type FieldScope = Exclude<Scope, 'operations:arbitrary'>;

const input: CreateJobInput = {
  type: 'collect',
  displayTitle: 'Guarded',
  competitorId: 'competitor-1',
  steps: [
    { id: 'collect', name: 'Collecting' },
    { id: 'ingest', name: 'Ingesting' },
  ],
  metadata: { source: 'auth-test' },
};
const MISSING = '00000000-0000-4000-8000-000000000000';

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');
/** A key of the right shape that was never issued. */
const neverIssued = () => `jg_${randomBytes(32).toString('base64url')}`;
/** Anything that looks like a stack frame or a source location. */
const STACK = /\n\s*at |\bat [\w.$<>[\] ]+ \(|\bat (file|node):|\.[cm]?[jt]s:\d+|node_modules/;

interface Sent<Data> {
  status: number;
  /** The raw response body, for what must never appear in it. */
  text: string;
  data?: Data | null;
  errors?: GraphQLFormattedError[];
}

type Headers = Record<string, string>;

/** The values of a response's root fields: `[null]` when the one field was refused (or `data` is null). */
const rootValues = (result: { data?: unknown }): unknown[] => (result.data == null ? [null] : Object.values(result.data as Record<string, unknown>));
const apiKey = (key: string): Headers => ({ 'x-api-key': key });
const bearer = (key: string): Headers => ({ authorization: `Bearer ${key}` });

describeDb('authentication, scopes and workspace isolation over GraphQL (HTTP)', () => {
  let t: TestApp;
  /** Every scope, workspace "ws-a". */
  let full: string;

  beforeAll(async () => {
    // Bad keys by the hundred from one address: their per-address budget is test/e2e/auth/bad-keys.test.ts's subject.
    t = await startTestApp({ env: { BAD_KEY_LIMIT_PER_ADDRESS: '0' } });
    full = await t.createKey('ws-a');
  });

  /** POST /graphql with exactly these headers. */
  async function send<Data, Variables>(document: TypedDocumentNode<Data, Variables>, variables: Variables, headers: Headers = {}): Promise<Sent<Data>> {
    const response = await fetch(`${t.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/graphql-response+json, application/json', ...headers },
      body: JSON.stringify({ query: print(document), variables }),
    });
    const text = await response.text();
    const body = JSON.parse(text) as { data?: Data | null; errors?: GraphQLFormattedError[] };
    return { status: response.status, text, ...body };
  }

  /** A raw body (possibly not even valid GraphQL) with these headers. */
  async function sendRaw(body: unknown, headers: Headers = {}): Promise<Sent<unknown>> {
    const response = await fetch(`${t.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify(body),
    });
    const text = await response.text();
    const parsed = JSON.parse(text) as { data?: unknown; errors?: GraphQLFormattedError[] };
    return { status: response.status, text, ...parsed };
  }

  // Compared over time to show that nothing changed: without the cursor (see helpers/cursor.ts).
  const newJob = async (key = full) => withoutCursor((await graphqlOk(t.url, CreateJobDocument, { input }, key)).createJob);
  const current = async (id: string) => withoutCursor((await graphqlOk(t.url, JobDocument, { id }, full)).job);
  const allJobs = async (key = full) => (await graphqlOk(t.url, JobsDocument, { limit: 200 }, key)).jobs.map((job) => withoutCursor(job));

  interface Operation {
    name: string;
    scope: FieldScope;
    send(headers: Headers): Promise<Sent<unknown>>;
  }

  /** Every query and mutation, aimed at job `id`, with the scope it needs. */
  const operations = (id: string): Operation[] => [
    { name: 'jobs', scope: 'jobs:read', send: (h) => send(JobsDocument, {}, h) },
    { name: 'job', scope: 'jobs:read', send: (h) => send(JobDocument, { id }, h) },
    { name: 'cancelJob', scope: 'jobs:cancel', send: (h) => send(CancelJobDocument, { id }, h) },
    { name: 'createJob', scope: 'jobs:write', send: (h) => send(CreateJobDocument, { input }, h) },
    {
      name: 'updateJobProgress',
      scope: 'jobs:write',
      send: (h) => send(UpdateJobProgressDocument, { input: { id, progress: 40, metadata: { touched: true } } }, h),
    },
    { name: 'completeJob', scope: 'jobs:write', send: (h) => send(CompleteJobDocument, { id }, h) },
    { name: 'failJob', scope: 'jobs:write', send: (h) => send(FailJobDocument, { id, error: 'boom' }, h) },
  ];

  /** Neither the key nor its hash, nor anything like a stack trace. */
  function expectNoSecrets(response: Sent<unknown>, ...keys: string[]): void {
    for (const key of keys) {
      expect(response.text).not.toContain(key);
      expect(response.text).not.toContain(sha256(key));
    }
    expect(response.text).not.toMatch(STACK);
  }

  it('answers UNAUTHENTICATED with HTTP 401 to every query and mutation without a key, and changes nothing', async () => {
    const job = await newJob();
    const before = await allJobs();
    const noKey: Headers[] = [{}, { 'x-api-key': '' }, { 'x-api-key': '   ' }, { authorization: '' }];
    for (const headers of noKey) {
      for (const op of operations(job.id)) {
        const result = await op.send(headers);
        expect(result.status, `${op.name} with ${JSON.stringify(headers)}`).toBe(401);
        expect(codesOf(result), op.name).toEqual(['UNAUTHENTICATED']);
        expect(result.errors?.[0]?.message).toMatch(/API key/);
        expect(rootValues(result), op.name).toEqual([null]);
        expectNoSecrets(result);
      }
    }
    expect(await current(job.id)).toEqual(job);
    expect(await allJobs()).toEqual(before);
  });

  it('answers UNAUTHENTICATED with HTTP 401 to an unknown key, via either header, and changes nothing', async () => {
    const job = await newJob();
    const before = await allJobs();
    const unknown = [neverIssued(), 'jg_short', 'not-even-prefixed', `${full}x`, full.slice(0, -1), full.toUpperCase(), `${full}${'x'.repeat(500)}`];
    for (const key of unknown) {
      for (const headers of [apiKey(key), bearer(key)]) {
        for (const op of operations(job.id)) {
          const result = await op.send(headers);
          expect(result.status, `${op.name} with ${key.slice(0, 12)}…`).toBe(401);
          expect(codesOf(result), op.name).toEqual(['UNAUTHENTICATED']);
          expect(rootValues(result)).toEqual([null]);
          expectNoSecrets(result, key, full);
        }
      }
    }
    expect(await current(job.id)).toEqual(job);
    expect(await allJobs()).toEqual(before);
  });

  it('answers UNAUTHENTICATED with HTTP 401 to a revoked key at once (even one just used), and changes nothing', async () => {
    const key = await t.createKey('ws-revoked');
    // Used first, so a cache of valid keys would know it.
    const own = await newJob(key);
    expect((await graphqlOk(t.url, JobsDocument, {}, key)).jobs.map((j) => j.id)).toEqual([own.id]);
    const [info, ...others] = await t.app.apiKeys.list('ws-revoked');
    expect(others).toEqual([]);
    expect(key.startsWith(info!.prefix)).toBe(true);
    await t.app.apiKeys.revoke(info!.id);

    for (const headers of [apiKey(key), bearer(key)]) {
      for (const op of operations(own.id)) {
        const result = await op.send(headers);
        expect(result.status, op.name).toBe(401);
        expect(codesOf(result), op.name).toEqual(['UNAUTHENTICATED']);
        expect(rootValues(result)).toEqual([null]);
        expectNoSecrets(result, key);
      }
    }
    // Nothing happened in its workspace: the job is as it was, and no job was created.
    const again = await t.createKey('ws-revoked');
    expect((await graphqlOk(t.url, JobsDocument, {}, again)).jobs.map((job) => withoutCursor(job))).toEqual([own]);
  });

  it('answers FORBIDDEN with HTTP 403, naming the scope, to a valid key without it, and changes nothing', async () => {
    const job = await newJob();
    const before = await allJobs();
    const lacking: Record<FieldScope, string> = {
      'jobs:read': await t.createKey('ws-a', ['jobs:cancel', 'jobs:write']),
      'jobs:cancel': await t.createKey('ws-a', ['jobs:read', 'jobs:write']),
      'jobs:write': await t.createKey('ws-a', ['jobs:read', 'jobs:cancel']),
      'webhooks:manage': await t.createKey('ws-a', ['jobs:read', 'jobs:cancel', 'jobs:write']),
    };
    const none = await t.createKey('ws-a', []);
    for (const op of operations(job.id)) {
      for (const key of [lacking[op.scope], none]) {
        for (const headers of [apiKey(key), bearer(key)]) {
          const result = await op.send(headers);
          expect(result.status, op.name).toBe(403);
          expect(codesOf(result), op.name).toEqual(['FORBIDDEN']);
          expect(result.errors?.[0]?.message, op.name).toContain(`"${op.scope}"`);
          expect(rootValues(result), op.name).toEqual([null]);
          expectNoSecrets(result, key);
        }
      }
    }
    // The job was not cancelled, advanced, completed or failed; no job was created.
    expect(await current(job.id)).toEqual(job);
    expect(await allJobs()).toEqual(before);
  });

  it('lets a key with a single scope do exactly what that scope covers', async () => {
    const reader = await t.createKey('ws-a', ['jobs:read']);
    const canceller = await t.createKey('ws-a', ['jobs:cancel']);
    const writer = await t.createKey('ws-a', ['jobs:write']);
    const job = await newJob();
    const outcome = async (key: string, op: Operation) => {
      const result = await op.send(apiKey(key));
      return { status: result.status, codes: codesOf(result) };
    };
    for (const op of operations(job.id).filter((o) => o.scope === 'jobs:read')) {
      expect(await outcome(reader, op), op.name).toEqual({ status: 200, codes: [] });
      expect(await outcome(canceller, op), op.name).toEqual({ status: 403, codes: ['FORBIDDEN'] });
      expect(await outcome(writer, op), op.name).toEqual({ status: 403, codes: ['FORBIDDEN'] });
    }
    // Writes by the writer alone, in an order that keeps the job running until completeJob.
    const byName = (id: string, name: string) => operations(id).find((o) => o.name === name)!;
    for (const name of ['createJob', 'updateJobProgress', 'completeJob']) {
      expect(await outcome(reader, byName(job.id, name)), name).toEqual({ status: 403, codes: ['FORBIDDEN'] });
      expect(await outcome(canceller, byName(job.id, name)), name).toEqual({ status: 403, codes: ['FORBIDDEN'] });
      expect(await outcome(writer, byName(job.id, name)), name).toEqual({ status: 200, codes: [] });
    }
    expect(await current(job.id)).toMatchObject({ status: 'COMPLETED', progress: 100, metadata: { source: 'auth-test', touched: true } });
    const toFail = await newJob();
    expect(await outcome(reader, byName(toFail.id, 'failJob'))).toEqual({ status: 403, codes: ['FORBIDDEN'] });
    expect(await outcome(canceller, byName(toFail.id, 'failJob'))).toEqual({ status: 403, codes: ['FORBIDDEN'] });
    expect(await outcome(writer, byName(toFail.id, 'failJob'))).toEqual({ status: 200, codes: [] });
    expect(await current(toFail.id)).toMatchObject({ status: 'FAILED', error: 'boom' });

    const toCancel = await newJob();
    expect(await outcome(reader, byName(toCancel.id, 'cancelJob'))).toEqual({ status: 403, codes: ['FORBIDDEN'] });
    expect(await outcome(writer, byName(toCancel.id, 'cancelJob'))).toEqual({ status: 403, codes: ['FORBIDDEN'] });
    expect(await current(toCancel.id)).toEqual(toCancel);
    expect(await outcome(canceller, byName(toCancel.id, 'cancelJob'))).toEqual({ status: 200, codes: [] });
    expect(await current(toCancel.id)).toMatchObject({ status: 'FAILED', error: 'Cancelled', currentStep: 'Cancelled' });
  });

  it('accepts Authorization: Bearer <key> exactly like X-API-Key', async () => {
    const viaHeader = await newJob();
    const viaBearer = await send(CreateJobDocument, { input }, bearer(full));
    expect(viaBearer.status).toBe(200);
    expect(viaBearer.errors).toBeUndefined();
    const created = viaBearer.data!.createJob;
    // Same workspace as the X-API-Key caller.
    expect(created.workspaceId).toBe(viaHeader.workspaceId);

    // Both read once the feed has caught up, so that both answer each job's own cursor.
    await settleFeed(t.app.feed);
    const listHeader = await send(JobsDocument, { limit: 200 }, apiKey(full));
    for (const scheme of [`Bearer ${full}`, `bearer ${full}`, `BEARER  ${full}  `]) {
      const listBearer = await send(JobsDocument, { limit: 200 }, { authorization: scheme });
      expect({ status: listBearer.status, data: listBearer.data, errors: listBearer.errors }).toEqual({
        status: listHeader.status,
        data: listHeader.data,
        errors: listHeader.errors,
      });
    }
    expect(listHeader.data!.jobs.map((j) => j.id)).toEqual(expect.arrayContaining([viaHeader.id, created.id]));

    // Every mutation goes through with Bearer.
    const progressed = await send(UpdateJobProgressDocument, { input: { id: created.id, progress: 30 } }, bearer(full));
    expect(progressed.data?.updateJobProgress).toMatchObject({ id: created.id, progress: 30 });
    expect((await send(CompleteJobDocument, { id: created.id }, bearer(full))).data?.completeJob).toMatchObject({ status: 'COMPLETED' });
    expect((await send(CancelJobDocument, { id: viaHeader.id }, bearer(full))).data?.cancelJob).toMatchObject({ success: true, job: { status: 'FAILED' } });
    const other = await newJob();
    expect((await send(FailJobDocument, { id: other.id, error: 'x' }, bearer(full))).data?.failJob).toMatchObject({ status: 'FAILED', error: 'x' });
    expect((await send(JobDocument, { id: other.id }, bearer(full))).data?.job).toMatchObject({ id: other.id, status: 'FAILED' });

    // Other schemes, or Bearer without a key, are no key at all.
    for (const authorization of [`Basic ${Buffer.from(`user:${full}`).toString('base64')}`, `Token ${full}`, 'Bearer', 'Bearer ', full]) {
      const result = await send(JobsDocument, {}, { authorization });
      expect(result.status, authorization.slice(0, 12)).toBe(401);
      expect(codesOf(result)).toEqual(['UNAUTHENTICATED']);
    }
  });

  it("treats another workspace's job exactly like one that does not exist", async () => {
    const a = full;
    const b = await t.createKey('ws-b');
    const running = await newJob(a);
    const finished = await newJob(a);
    const finishedNow = withoutCursor((await graphqlOk(t.url, CompleteJobDocument, { id: finished.id }, a)).completeJob);
    const ownOfB = await newJob(b);

    // B's list holds its own job only.
    const listedByB = (await graphqlOk(t.url, JobsDocument, { limit: 200 }, b)).jobs;
    expect(listedByB.map((j) => j.id)).toEqual([ownOfB.id]);
    for (const filter of [{ competitorId: 'competitor-1' }, { type: 'collect' }, { status: 'RUNNING' as const }, { status: 'COMPLETED' as const }]) {
      const ids = (await graphqlOk(t.url, JobsDocument, filter, b)).jobs.map((j) => j.id);
      expect(ids).not.toContain(running.id);
      expect(ids).not.toContain(finished.id);
    }

    // job(id) of A's job: null, exactly as for an id that does not exist.
    const missing = await send(JobDocument, { id: MISSING }, apiKey(b));
    expect(missing).toMatchObject({ status: 200, data: { job: null } });
    expect(missing.errors).toBeUndefined();
    for (const id of [running.id, finished.id]) {
      const theirs = await send(JobDocument, { id }, apiKey(b));
      expect({ status: theirs.status, data: theirs.data, errors: theirs.errors }).toEqual({
        status: missing.status,
        data: missing.data,
        errors: missing.errors,
      });
    }

    // Every write on A's job (running or not): NOT_FOUND, exactly as for an id that does not exist.
    const attempts = (id: string): Array<[string, () => Promise<Sent<unknown>>]> => [
      ['cancelJob', () => send(CancelJobDocument, { id }, apiKey(b))],
      ['updateJobProgress', () => send(UpdateJobProgressDocument, { input: { id, progress: 90 } }, apiKey(b))],
      ['completeJob', () => send(CompleteJobDocument, { id }, apiKey(b))],
      ['failJob', () => send(FailJobDocument, { id, error: 'from b' }, apiKey(b))],
    ];
    const shape = (result: Sent<unknown>, id: string) => ({
      status: result.status,
      data: result.data ?? null,
      codes: codesOf(result),
      messages: (result.errors ?? []).map((e) => e.message.replaceAll(id, '<id>')),
      paths: (result.errors ?? []).map((e) => e.path),
    });
    const expected = await Promise.all(attempts(MISSING).map(async ([name, run]) => [name, shape(await run(), MISSING)] as const));
    for (const [name, missingShape] of expected) expect(missingShape.codes, name).toEqual(['NOT_FOUND']);
    for (const id of [running.id, finished.id]) {
      for (const [index, [name, run]] of attempts(id).entries()) {
        expect(shape(await run(), id), `${name} on A's job`).toEqual(expected[index]![1]);
      }
    }

    // A's jobs are exactly as they were.
    expect(await current(running.id)).toEqual(running);
    expect(await current(finished.id)).toEqual(finishedNow);
  });

  it('keeps each workspace to exactly its own jobs under random interleavings (property)', { timeout: 240_000 }, async () => {
    type Action = 'cancel' | 'complete' | 'fail' | 'progress';
    type Command = { kind: 'create'; who: 0 | 1 } | { kind: 'list'; who: 0 | 1 } | { kind: Action; who: 0 | 1; owner: 0 | 1; pick: number };
    const who = fc.constantFrom<0 | 1>(0, 1);
    const command: fc.Arbitrary<Command> = fc.oneof(
      fc.record({ kind: fc.constant('create' as const), who }),
      fc.record({ kind: fc.constant('list' as const), who }),
      fc.record({ kind: fc.constantFrom<Action>('cancel', 'complete', 'fail', 'progress'), who, owner: who, pick: fc.nat({ max: 9 }) }),
    );
    interface Modelled {
      id: string;
      status: 'RUNNING' | 'COMPLETED' | 'FAILED';
      progress: number;
      error: string | null;
    }
    let run = 0;

    await fc.assert(
      fc.asyncProperty(fc.array(command, { minLength: 1, maxLength: 10 }), async (commands) => {
        run++;
        const keys = [await t.createKey(`prop-${run}-a`), await t.createKey(`prop-${run}-b`)] as const;
        const model: [Modelled[], Modelled[]] = [[], []];
        const workspaceOf: [string | undefined, string | undefined] = [undefined, undefined];

        const check = async (w: 0 | 1) => {
          const listed = (await graphqlOk(t.url, JobsDocument, { limit: 200 }, keys[w])).jobs;
          const actual = listed.map((j) => ({ id: j.id, status: j.status, progress: j.progress, error: j.error }));
          const byId = (x: { id: string }, y: { id: string }) => x.id.localeCompare(y.id);
          expect(actual.sort(byId)).toEqual([...model[w]].sort(byId));
          // Every listed job carries the caller's workspace id.
          for (const job of listed) expect(job.workspaceId).toBe(workspaceOf[w]);
        };

        for (const c of commands) {
          const key = keys[c.who];
          if (c.kind === 'create') {
            const job = (await graphqlOk(t.url, CreateJobDocument, { input }, key)).createJob;
            model[c.who].push({ id: job.id, status: 'RUNNING', progress: 0, error: null });
            workspaceOf[c.who] ??= job.workspaceId;
            expect(job.workspaceId).toBe(workspaceOf[c.who]);
            expect(job.workspaceId).not.toBe(workspaceOf[c.who === 0 ? 1 : 0]);
            continue;
          }
          if (c.kind === 'list') {
            await check(c.who);
            continue;
          }
          const targets = model[c.owner];
          const target = targets.length > 0 ? targets[c.pick % targets.length]! : undefined;
          const id = target?.id ?? MISSING;
          const next = target ? Math.min(100, target.progress + 10) : 10;
          const result =
            c.kind === 'cancel'
              ? await graphql(t.url, CancelJobDocument, { id }, key)
              : c.kind === 'complete'
                ? await graphql(t.url, CompleteJobDocument, { id }, key)
                : c.kind === 'fail'
                  ? await graphql(t.url, FailJobDocument, { id, error: `failed by ${c.who}` }, key)
                  : await graphql(t.url, UpdateJobProgressDocument, { input: { id, progress: next } }, key);
          if (!target || c.owner !== c.who) {
            expect(codesOf(result), `${c.kind} by ${c.who} on a job of ${c.owner}`).toEqual(['NOT_FOUND']);
            continue;
          }
          if (target.status !== 'RUNNING') {
            // Ending a job again the way it ended is answered as it is (a retry); anything else is refused.
            const repeat =
              (c.kind === 'complete' && target.status === 'COMPLETED') ||
              (c.kind === 'fail' && target.status === 'FAILED' && target.error === `failed by ${c.who}`);
            expect(codesOf(result), `${c.kind} on a finished job`).toEqual(repeat ? [] : ['JOB_NOT_RUNNING']);
            continue;
          }
          expect(result.errors, c.kind).toBeUndefined();
          if (c.kind === 'cancel') Object.assign(target, { status: 'FAILED', error: 'Cancelled' });
          else if (c.kind === 'complete') Object.assign(target, { status: 'COMPLETED', progress: 100 });
          else if (c.kind === 'fail') Object.assign(target, { status: 'FAILED', error: `failed by ${c.who}` });
          else target.progress = next;
        }
        await check(0);
        await check(1);
      }),
      { numRuns: 15 },
    );
  });

  it('never shows a key, its hash or a stack trace in an error response', async () => {
    const { key } = await t.app.apiKeys.create({ workspace: 'ws-secret', scopes: ['jobs:read'] });
    const revoked = await t.app.apiKeys.create({ workspace: 'ws-secret', scopes: ['jobs:read', 'jobs:cancel', 'jobs:write'] });
    await t.app.apiKeys.revoke(revoked.info.id);
    const tampered = `${key.slice(0, -2)}zz`;
    const responses: Array<[string, Sent<unknown>]> = [
      ['no key', await send(JobsDocument, {})],
      ['tampered key', await send(JobsDocument, {}, apiKey(tampered))],
      ['key with a suffix', await send(JobsDocument, {}, apiKey(`${key}-extra`))],
      ['oversized key', await send(JobsDocument, {}, apiKey(key.repeat(10)))],
      ['tampered Bearer', await send(JobsDocument, {}, bearer(tampered))],
      ['revoked key', await send(CreateJobDocument, { input }, apiKey(revoked.key))],
      ['revoked Bearer', await send(CreateJobDocument, { input }, bearer(revoked.key))],
      ['missing scope', await send(CancelJobDocument, { id: MISSING }, apiKey(key))],
      ['missing scope, Bearer', await send(CreateJobDocument, { input }, bearer(key))],
      ['bad limit', await send(JobsDocument, { limit: 5000 }, apiKey(key))],
      ['bad variable', await sendRaw({ query: print(JobsDocument), variables: { status: 'NOPE' } }, apiKey(key))],
      ['syntax error', await sendRaw({ query: '{ jobs { id ' }, apiKey(key))],
      ['unknown field', await sendRaw({ query: '{ apiKeys { keyHash } }' }, apiKey(key))],
      ['missing query', await sendRaw({ variables: {} }, apiKey(key))],
    ];
    for (const [what, response] of responses) {
      expect(response.errors?.length, what).toBeGreaterThan(0);
      for (const secret of [key, revoked.key, tampered]) {
        expect(response.text, what).not.toContain(secret);
        expect(response.text, what).not.toContain(sha256(secret));
      }
      expect(response.text, what).not.toMatch(STACK);
    }
  });

  it('remembers a valid key for AUTH_CACHE_TTL_MS: no read per request; a revocation made elsewhere holds after the TTL', async () => {
    // A TTL long enough that the steps before the wait cannot outlast it, even on a loaded machine.
    const cached = await startTestApp({ env: { ...NO_BACKGROUND_READS, AUTH_CACHE_TTL_MS: '3000' } });
    try {
      const key = await cached.createKey('ws-cached');
      const keys = cached.app.apiKeys;
      const first = await keys.authenticate(key);
      expect(first).not.toBeNull();
      const before = cached.app.database.queries.count;
      expect(await keys.authenticate(key)).toEqual(first);
      expect(cached.app.database.queries.count - before).toBe(0);
      // Revoked behind this store's back (the CLI, another instance): remembered until the TTL ends.
      await cached.app.database.sql.query('UPDATE "ApiKey" SET "revokedAt" = now() WHERE id = $1', [first!.keyId]);
      expect(await keys.authenticate(key)).toEqual(first);
      await new Promise((resolve) => setTimeout(resolve, 3100));
      expect(await keys.authenticate(key)).toBeNull();
    } finally {
      await cached.close();
    }
  });

  it('masks a database failure: no key, hash or stack trace reaches the client', async () => {
    // No auth cache: the second request must reach the (broken) key table.
    const broken = await startTestApp({ env: { AUTH_CACHE_TTL_MS: '0' } });
    const key = await broken.createKey('ws-broken');
    expect((await graphqlOk(broken.url, JobsDocument, {}, key)).jobs).toEqual([]);
    const hash = sha256(key);
    const sql = broken.app.database.sql;
    const post = async (headers: Headers, variables: Record<string, unknown> = {}): Promise<Sent<unknown>> => {
      const response = await fetch(`${broken.url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        body: JSON.stringify({ query: print(JobsDocument), variables }),
      });
      const text = await response.text();
      const body = JSON.parse(text) as { errors?: GraphQLFormattedError[] };
      return { status: response.status, text, ...body };
    };
    try {
      // The job table is away: the resolver's database error is masked. (A query not asked before:
      // the response cache would answer the one above from memory until the feed's next read fails.)
      await sql.exec('ALTER TABLE "Job" RENAME TO "Job_away"');
      const failedQuery = await post(apiKey(key), { limit: 7 });
      expect(failedQuery.errors?.map((e) => e.message)).toEqual(['Unexpected error.']);
      expect(failedQuery.text).not.toMatch(/Job_away|does not exist|prisma/i);
      // Then the key table: authentication itself fails.
      await sql.exec('ALTER TABLE "ApiKey" RENAME TO "ApiKey_away"');
      const failedAuth = await post(bearer(key));
      expect(failedAuth.status).toBeGreaterThanOrEqual(500);
      expect(failedAuth.text).not.toMatch(/ApiKey|does not exist|prisma/i);
      for (const response of [failedQuery, failedAuth]) {
        expect(response.text).not.toContain(key);
        expect(response.text).not.toContain(hash);
        expect(response.text).not.toContain('ApiKey_away');
        expect(response.text).not.toMatch(STACK);
      }
    } finally {
      await sql.exec('ALTER TABLE IF EXISTS "ApiKey_away" RENAME TO "ApiKey"');
      await sql.exec('ALTER TABLE IF EXISTS "Job_away" RENAME TO "Job"');
      await broken.close();
    }
  });

  it('serves GraphiQL to a browser without a key, but no data without one', async () => {
    const page = await fetch(`${t.url}/graphql`, { headers: { accept: 'text/html' } });
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toContain('text/html');
    const html = await page.text();
    expect(html).toMatch(/<html/i);
    expect(html).toContain('<title>jobs-gateway</title>');
    expect(html).not.toContain(full);

    // Served compressed (a fraction of its 9 MB) and revalidated by ETag rather than downloaded again.
    const raw = await new Promise<{ status: number; headers: http.IncomingHttpHeaders; bytes: number }>((resolve, reject) => {
      http
        .get(`${t.url}/graphql`, { headers: { accept: 'text/html', 'accept-encoding': 'gzip, br' } }, (response) => {
          let bytes = 0;
          response.on('data', (chunk: Buffer) => (bytes += chunk.length));
          response.on('end', () => resolve({ status: response.statusCode!, headers: response.headers, bytes }));
        })
        .on('error', reject);
    });
    expect(raw.status).toBe(200);
    expect(raw.headers['content-encoding']).toBe('br');
    expect(raw.bytes).toBeLessThan(Buffer.byteLength(html) / 3);
    expect(raw.headers['cache-control']).toMatch(/max-age=\d+/);
    const revalidated = await fetch(`${t.url}/graphql`, { headers: { accept: 'text/html', 'if-none-match': raw.headers.etag! } });
    expect(revalidated.status).toBe(304);
    expect(await revalidated.text()).toBe('');

    // A GET with a query is an API call like any other: no key, no data.
    const query = encodeURIComponent('{ jobs { id } }');
    const get = await fetch(`${t.url}/graphql?query=${query}`, { headers: { accept: 'application/json' } });
    expect(get.status).toBe(401);
    const body = (await get.json()) as { data?: unknown; errors?: GraphQLFormattedError[] };
    expect(codesOf(body)).toEqual(['UNAUTHENTICATED']);
    expect(body.data ?? null).toBeNull();
  });
});
