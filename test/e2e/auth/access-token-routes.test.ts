import { createClient } from 'graphql-ws';
import { afterAll, beforeAll, expect, it } from 'vitest';
import WebSocket from 'ws';
import {
  CancelJobDocument,
  CreateAccessTokenDocument,
  CreateJobDocument,
  JobDocument,
  JobsDocument,
  JobsPageDocument,
  UpdateJobProgressDocument,
} from '../../../src/graphql/operations.generated.js';
import { describeDb } from '../../helpers/databases.js';
import { codesOf, graphql, graphqlOk, rest } from '../../helpers/http.js';
import { oneStepJob } from '../../helpers/jobs.js';
import { openEventStream } from '../../helpers/sse-client.js';
import { type TestApp, startTestApp } from '../../helpers/test-app.js';
import { TestSocket } from '../../helpers/ws-client.js';

const WATCH = 'subscription Watch($competitorId: ID, $after: String) { jobUpdated(competitorId: $competitorId, after: $after) { id progress changeCursor } }';

/** Access tokens on every route and transport: what their restriction lets them see, and nothing else. */
describeDb('access tokens on every route', () => {
  let t: TestApp;
  let key: string;
  /** Jobs of competitor c1 (two types) and of c2. */
  let c1: string;
  let c1Other: string;
  let c2: string;

  const mint = async (input: Record<string, unknown>, minter = key) =>
    (await graphqlOk(t.url, CreateAccessTokenDocument, { input: { scopes: ['jobs:read'], ...input } as never }, minter)).createAccessToken.token;
  const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
  const restAs = (token: string, method: string, path: string) => rest(t.url, method, path, undefined, bearer(token));

  beforeAll(async () => {
    t = await startTestApp({ env: { KEY_RECHECK_INTERVAL_MS: '200', AUTH_CACHE_TTL_MS: '200' } });
    key = await t.createKey('tokens', ['jobs:read', 'jobs:cancel', 'jobs:write']);
    c1 = (await graphqlOk(t.url, CreateJobDocument, { input: oneStepJob({ competitorId: 'c1', type: 'collect' }) }, key)).createJob.id;
    c1Other = (await graphqlOk(t.url, CreateJobDocument, { input: oneStepJob({ competitorId: 'c1', type: 'discover' }) }, key)).createJob.id;
    c2 = (await graphqlOk(t.url, CreateJobDocument, { input: oneStepJob({ competitorId: 'c2', type: 'collect' }) }, key)).createJob.id;
  });
  afterAll(() => t.close());

  it("sees only its competitor's jobs in lists, pages, single reads and REST; the rest is NOT_FOUND or left out", async () => {
    const token = await mint({ competitorId: 'c1' });
    const ids = (jobs: Array<{ id: string }>) => jobs.map((job) => job.id).sort();
    expect(ids((await graphqlOk(t.url, JobsDocument, {}, token)).jobs)).toEqual([c1, c1Other].sort());
    expect((await graphqlOk(t.url, JobsDocument, { competitorId: 'c2' }, token)).jobs).toEqual([]);
    expect(ids((await graphqlOk(t.url, JobsPageDocument, {}, token)).jobsConnection.edges.map((edge) => edge.node))).toEqual([c1, c1Other].sort());
    expect((await graphqlOk(t.url, JobDocument, { id: c2 }, token)).job).toBeNull();
    expect((await graphqlOk(t.url, JobDocument, { id: c1 }, token)).job?.id).toBe(c1);
    const list = await restAs(token, 'GET', '/api/jobs');
    expect(list.status).toBe(200);
    expect(ids((list.body as { jobs: Array<{ id: string }> }).jobs)).toEqual([c1, c1Other].sort());
    expect((await restAs(token, 'GET', `/api/jobs/${c2}`)).status).toBe(404);
    expect((await restAs(token, 'GET', `/api/jobs/${c1}`)).status).toBe(200);
    // Narrower still: one job of it.
    const one = await mint({ jobId: c1 });
    expect(ids((await graphqlOk(t.url, JobsDocument, {}, one)).jobs)).toEqual([c1]);
    // The key itself sees everything, also through the same cached query.
    expect((await graphqlOk(t.url, JobsDocument, {}, key)).jobs.length).toBeGreaterThanOrEqual(3);
  });

  it('cancels only with jobs:cancel and only what it sees (NOT_FOUND otherwise, the job untouched); never writes', async () => {
    const reader = await mint({ jobId: c1 });
    expect(codesOf(await graphql(t.url, CancelJobDocument, { id: c1 }, reader))).toEqual(['FORBIDDEN']);
    const canceller = await mint({ scopes: ['jobs:read', 'jobs:cancel'], competitorId: 'c2' });
    expect(codesOf(await graphql(t.url, CancelJobDocument, { id: c1 }, canceller))).toEqual(['NOT_FOUND']);
    expect((await restAs(canceller, 'POST', `/api/jobs/${c1}/cancel`)).status).toBe(404);
    expect((await graphqlOk(t.url, JobDocument, { id: c1 }, key)).job?.status).toBe('RUNNING');
    expect(codesOf(await graphql(t.url, UpdateJobProgressDocument, { input: { id: c2, progress: 5 } }, canceller))).toEqual(['FORBIDDEN']);
    const cancelled = await graphqlOk(t.url, CancelJobDocument, { id: c2 }, canceller);
    expect(cancelled.cancelJob.job.status).toBe('FAILED');
    c2 = (await graphqlOk(t.url, CreateJobDocument, { input: oneStepJob({ competitorId: 'c2', type: 'collect' }) }, key)).createJob.id;
  });

  it("hears only its jobs' changes over WebSockets and Server-Sent Events, also beside a key in the same group; other arguments are FORBIDDEN", async () => {
    const token = await mint({ competitorId: 'c1' });
    const mine = await TestSocket.open(t.url, { apiKey: token });
    const keys = await TestSocket.open(t.url, { apiKey: key });
    const stream = await openEventStream(t.url, token, WATCH);
    try {
      // The same document and variables from the key and the token: one group each, not one for both.
      mine.subscribe('w', WATCH);
      keys.subscribe('w', WATCH);
      mine.subscribe('other', WATCH, { competitorId: 'c2' });
      expect((await mine.waitFor((m) => m.id === 'other' && m.type === 'error')).payload).toMatchObject([{ extensions: { code: 'FORBIDDEN' } }]);
      await new Promise((resolve) => setTimeout(resolve, 300));
      await graphqlOk(t.url, UpdateJobProgressDocument, { input: { id: c2, progress: 11 } }, key);
      await graphqlOk(t.url, UpdateJobProgressDocument, { input: { id: c1, progress: 12 } }, key);
      await keys.waitFor((m) => m.id === 'w' && JSON.stringify(m.payload).includes(c1));
      await mine.waitFor((m) => m.id === 'w' && JSON.stringify(m.payload).includes(c1));
      const [event] = await stream.next(1);
      expect(JSON.stringify(event)).toContain(c1);
      const heard = (socket: TestSocket) => socket.nexts<{ data: { jobUpdated: { id: string } } }>('w').map((n) => n.data.jobUpdated.id);
      expect(heard(mine)).toEqual([c1]);
      expect(heard(keys)).toEqual(expect.arrayContaining([c1, c2]));
      // A resume replays only what it sees, too.
      const before = (await graphqlOk(t.url, JobsDocument, {}, key)).jobs.map((job) => BigInt(job.changeCursor)).reduce((a, b) => (a < b ? a : b));
      mine.subscribe('resume', WATCH, { after: String(before - 1n) });
      await mine.waitFor((m) => m.id === 'resume' && JSON.stringify(m.payload).includes(c1));
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(mine.nexts<{ data: { jobUpdated: { id: string } } }>('resume').every((n) => [c1, c1Other].includes(n.data.jobUpdated.id))).toBe(true);
    } finally {
      mine.close();
      keys.close();
      stream.close();
    }
  });

  it('ends with the key that minted it: 401 on HTTP, sockets closed with 4401', async () => {
    const minter = await t.createKey('tokens', ['jobs:read']);
    const token = await mint({}, minter);
    const socket = await TestSocket.open(t.url, { apiKey: token });
    expect((await restAs(token, 'GET', '/api/jobs')).status).toBe(200);
    const info = (await t.app.apiKeys.list('tokens')).find((candidate) => minter.startsWith(candidate.prefix));
    await t.app.apiKeys.revoke(info!.id);
    expect((await socket.waitForClose(5_000)).code).toBe(4401);
    expect((await restAs(token, 'GET', '/api/jobs')).status).toBe(401);
    expect(codesOf(await graphql(t.url, JobsDocument, {}, token))).toEqual(['UNAUTHENTICATED']);
  });

  it('refuses bad tokens with 401 and a WebSocket with 4401, and tokens cannot mint', async () => {
    const token = await mint({});
    for (const bad of [`${token.slice(0, -3)}abc`, token.split('.').slice(0, 2).join('.') + '.', 'a.b.c', `${token}x`]) {
      expect((await restAs(bad, 'GET', '/api/jobs')).status, bad.slice(-10)).toBe(401);
      expect(codesOf(await graphql(t.url, JobsDocument, {}, bad))).toEqual(['UNAUTHENTICATED']);
    }
    const socket = await TestSocket.open(t.url, { apiKey: `${token.slice(0, -3)}abc`, ack: false });
    expect((await socket.waitForClose(5_000)).code).toBe(4401);
    expect(codesOf(await graphql(t.url, CreateAccessTokenDocument, { input: { scopes: ['jobs:read'] } }, token))).toEqual(['FORBIDDEN']);
    expect(
      codesOf(await graphql(t.url, CreateAccessTokenDocument, { input: { scopes: ['jobs:read'], jobId: '00000000-0000-0000-0000-000000000000' } }, key)),
    ).toEqual(['NOT_FOUND']);
  });

  it('ends a Server-Sent Events stream when its token expires (UNAUTHENTICATED), and refuses the token from then on', { timeout: 30_000 }, async () => {
    const token = await mint({ competitorId: 'c1', ttlMs: 10_000 });
    const started = Date.now();
    const stream = await openEventStream(t.url, token, WATCH);
    const events = await stream.rest();
    expect(Date.now() - started).toBeGreaterThan(8_000);
    expect(events.at(-2)).toMatchObject({ event: 'next', data: { errors: [{ extensions: { code: 'UNAUTHENTICATED' } }] } });
    expect(events.at(-1)?.event).toBe('complete');
    // Past its expiry, the token is nothing (exp is whole seconds: within a second of the stream's end).
    await expect.poll(async () => (await restAs(token, 'GET', '/api/jobs')).status, { timeout: 10_000, interval: 500 }).toBe(401);
  });

  it('takes restrictions as createJob stores values (trimmed ids and text, any-case UUIDs), and tells a token nothing when it tries to mint', async () => {
    const trimmed = await mint({ competitorId: ' c1 ' });
    expect((await graphqlOk(t.url, JobsDocument, {}, trimmed)).jobs.map((job) => job.id).sort()).toEqual([c1, c1Other].sort());
    const one = await mint({ jobId: c1.toUpperCase() });
    const socket = await TestSocket.open(t.url, { apiKey: one });
    try {
      socket.subscribe('upper', 'subscription($id: ID) { jobUpdated(id: $id) { id progress } }', { id: c1.toUpperCase() });
      await new Promise((resolve) => setTimeout(resolve, 300));
      await graphqlOk(t.url, UpdateJobProgressDocument, { input: { id: c1, progress: 15 } }, key);
      await socket.waitFor((m) => m.id === 'upper' && m.type === 'next');
    } finally {
      socket.close();
    }
    // Whether a job exists is not for a token to learn: refused before anything is read.
    const missing = '00000000-0000-0000-0000-000000000000';
    expect(codesOf(await graphql(t.url, CreateAccessTokenDocument, { input: { scopes: ['jobs:read'], jobId: missing } }, one))).toEqual(['FORBIDDEN']);
    expect(codesOf(await graphql(t.url, CreateAccessTokenDocument, { input: { scopes: ['jobs:read'], jobId: c1 } }, one))).toEqual(['FORBIDDEN']);
  });

  it('closes a socket whose token expires with 4403, and graphql-ws, fetching a fresh token, resumes with no gap', { timeout: 60_000 }, async () => {
    let minted = 0;
    const received: Array<{ id: string; progress: number }> = [];
    const closes: number[] = [];
    const client = createClient({
      url: `${t.url.replace('http', 'ws')}/graphql`,
      webSocketImpl: WebSocket,
      connectionParams: async () => {
        minted++;
        return { token: await mint({ jobId: c1, ttlMs: 10_000 }) };
      },
      retryAttempts: 5,
      retryWait: () => new Promise((resolve) => setTimeout(resolve, 100)),
      on: { closed: (event) => closes.push((event as { code: number }).code) },
    });
    // From the job's state now: what changes before the subscription is live is replayed.
    let after = (await graphqlOk(t.url, JobDocument, { id: c1 }, key)).job!.changeCursor;
    const variables: Record<string, string | undefined> = { after };
    const done = new Promise<void>((resolve, reject) => {
      client.subscribe<{ jobUpdated: { id: string; progress: number; changeCursor: string } }>(
        { query: 'subscription($after: String) { jobUpdated(after: $after) { id progress changeCursor } }', variables },
        {
          next: ({ data }) => {
            received.push(data!.jobUpdated);
            after = data!.jobUpdated.changeCursor;
            variables.after = after;
          },
          error: reject,
          complete: resolve,
        },
      );
    });
    void done.catch(() => undefined);
    for (let progress = 20; progress <= 40; progress++) {
      await graphqlOk(t.url, UpdateJobProgressDocument, { input: { id: c1, progress } }, key);
      await new Promise((resolve) => setTimeout(resolve, 700));
    }
    await expect.poll(() => received.at(-1)?.progress, { timeout: 10_000, message: JSON.stringify({ closes, minted }) }).toBe(40);
    await client.dispose();
    expect(closes).toContain(4403);
    expect(minted).toBeGreaterThanOrEqual(2);
    // Every report reached it, in order, across the expiry: none lost.
    const progresses = received.map((job) => job.progress);
    for (let progress = 20; progress <= 40; progress++) expect(progresses, String(progress)).toContain(progress);
    expect(received.every((job) => job.id === c1)).toBe(true);
  });
});

describeDb('access tokens against the limits', () => {
  it('count their sockets against the key that minted them, and valid tokens behind one address spend none of its budget for bad keys', async () => {
    const t = await startTestApp({ env: { MAX_CONNECTIONS_PER_KEY: '2', BAD_KEY_LIMIT_PER_ADDRESS: '1' } });
    try {
      const key = await t.createKey('limits', ['jobs:read']);
      const token = async () => (await graphqlOk(t.url, CreateAccessTokenDocument, { input: { scopes: ['jobs:read'] } }, key)).createAccessToken.token;
      // Forty requests at once with valid tokens from one address: none refused for bad keys.
      const tokens = await Promise.all(Array.from({ length: 4 }, token));
      const answers = await Promise.all(
        Array.from({ length: 40 }, (_, i) => rest(t.url, 'GET', '/api/jobs', undefined, { authorization: `Bearer ${tokens[i % 4]!}` })),
      );
      expect(answers.map((answer) => answer.status)).toEqual(Array.from({ length: 40 }, () => 200));
      // The key's two connection slots, shared by its tokens.
      const first = await TestSocket.open(t.url, { apiKey: tokens[0]! });
      const second = await TestSocket.open(t.url, { apiKey: tokens[1]! });
      const third = await TestSocket.open(t.url, { apiKey: tokens[2]!, ack: false });
      expect((await third.waitForClose(5_000)).code).toBe(1013);
      first.close();
      second.close();
    } finally {
      await t.close();
    }
  });
});

describeDb('access tokens in logs and metrics', () => {
  it('never appear in a log line or a metric, and bad ones log nothing at error level', async () => {
    const t = await startTestApp({ captureLogs: true });
    try {
      const key = await t.createKey('quiet', ['jobs:read']);
      const token = (await graphqlOk(t.url, CreateAccessTokenDocument, { input: { scopes: ['jobs:read'] } }, key)).createAccessToken.token;
      const bad = [`${token.slice(0, -4)}AAAA`, 'e30.e30.', `${token.split('.')[0]!}.e30.x`, 'a'.repeat(5_000) + '.b.c'];
      for (const credential of [token, ...bad]) {
        await rest(t.url, 'GET', '/api/jobs', undefined, { authorization: `Bearer ${credential}` });
        await graphql(t.url, JobsDocument, {}, credential);
        const socket = await TestSocket.open(t.url, { apiKey: credential, ack: false });
        await socket.waitFor((m) => m.type === 'connection_ack', 2_000).catch(() => undefined);
        socket.close();
      }
      const metrics = await (await fetch(`${t.url}/metrics`)).text();
      const logged = JSON.stringify(t.logs);
      for (const credential of [token, ...bad]) {
        expect(logged.includes(credential.slice(-20))).toBe(false);
        expect(metrics.includes(credential.slice(-20))).toBe(false);
      }
      expect(t.logs.filter((entry) => entry.level >= 50)).toEqual([]);
    } finally {
      await t.close();
    }
  });
});
