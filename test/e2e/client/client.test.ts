import { JobsClient, JobsClientError, type Job } from 'jobs-gateway/client';
import { afterEach, expect, it } from 'vitest';
import WebSocket from 'ws';
import { CreateAccessTokenDocument, CreateJobDocument } from '../../../src/graphql/operations.generated.js';
import { describeDb, freshDatabase } from '../../helpers/databases.js';
import { graphqlOk } from '../../helpers/http.js';
import { oneStepJob } from '../../helpers/jobs.js';
import { startTestApp, workspaceIdOf } from '../../helpers/test-app.js';

/** Collects what an iterator yields, in the background, until it ends or throws. */
function drain(iterator: AsyncIterableIterator<Job>) {
  const seen: Job[] = [];
  const done = (async () => {
    for await (const job of iterator) seen.push(job);
  })();
  return { seen, done };
}

const clients: JobsClient[] = [];
const withoutToken = (key: string) => {
  const client = new JobsClient({ url: currentUrl, credential: key, webSocketImpl: WebSocket });
  clients.push(client);
  return client;
};
let currentUrl = '';

describeDb('the client library (jobs-gateway/client), against a real gateway', () => {
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((client) => client.close()));
  });

  it('follows a job from its state now to its end with a minted token, and pages through history', { timeout: 60_000 }, async () => {
    const t = await startTestApp();
    currentUrl = t.url;
    try {
      const key = await t.createKey('client', ['jobs:read', 'jobs:write']);
      const workspaceId = await workspaceIdOf(t.app.apiKeys, key);
      const jobs = [];
      for (let i = 0; i < 7; i++) jobs.push((await graphqlOk(t.url, CreateJobDocument, { input: oneStepJob({ displayTitle: `job ${i}` }) }, key)).createJob);
      const target = jobs[3]!;
      const tokenFor = async () =>
        (await graphqlOk(t.url, CreateAccessTokenDocument, { input: { scopes: ['jobs:read'], jobId: target.id } }, key)).createAccessToken.token;
      const client = new JobsClient({ url: t.url, credential: tokenFor, webSocketImpl: WebSocket });
      const watch = drain(client.watchJob(target.id));
      await expect.poll(() => watch.seen.length).toBeGreaterThanOrEqual(1);
      expect(watch.seen[0]).toMatchObject({ id: target.id, status: 'RUNNING' });
      await new Promise((resolve) => setTimeout(resolve, 300));
      await t.app.jobs.updateProgress(workspaceId, target.id, { progress: 30 });
      await t.app.jobs.updateProgress(workspaceId, jobs[4]!.id, { progress: 99 }); // not its job
      // States of a job written faster than the feed reads may merge into the newest: let this one arrive first.
      await expect.poll(() => watch.seen.length).toBeGreaterThanOrEqual(2);
      await t.app.jobs.complete(workspaceId, target.id);
      await watch.done; // it ends with the job
      expect(watch.seen.map((job) => [job.id, job.status, job.progress])).toEqual([
        [target.id, 'RUNNING', 0],
        [target.id, 'RUNNING', 30],
        [target.id, 'COMPLETED', 100],
      ]);
      expect(watch.seen.at(-1)?.endedAs).toBe('COMPLETED');

      // The callback form: the same states, and a function that stops it.
      const called: Job[] = [];
      const stopWatching = client.subscribe({ jobId: target.id }, (job) => called.push(job));
      await expect.poll(() => called.map((job) => job.status)).toEqual(['COMPLETED']);
      stopWatching();
      const fromCallbacks: Job[] = [];
      const errors: unknown[] = [];
      const stopAll = withoutToken(key).subscribe(
        { status: 'RUNNING' },
        (job) => fromCallbacks.push(job),
        (error) => errors.push(error),
      );
      await new Promise((resolve) => setTimeout(resolve, 300));
      await t.app.jobs.updateProgress(workspaceId, jobs[5]!.id, { progress: 55 });
      await expect.poll(() => fromCallbacks.map((job) => [job.id, job.progress])).toEqual([[jobs[5]!.id, 55]]);
      stopAll();
      expect(errors).toEqual([]);

      // With a key, every job, newest first, across pages of 3.
      const withKey = new JobsClient({ url: t.url, credential: key, webSocketImpl: WebSocket });
      const listed: string[] = [];
      for await (const job of withKey.listJobs({}, { pageSize: 3 })) listed.push(job.displayTitle);
      expect(listed).toEqual(jobs.map((job) => job.displayTitle).reverse());
      // A token sees its job only; a job it may not see is NOT_FOUND.
      const restricted: string[] = [];
      for await (const job of client.listJobs()) restricted.push(job.id);
      expect(restricted).toEqual([target.id]);
      await expect(drain(client.watchJob(jobs[0]!.id)).done).rejects.toMatchObject({ code: 'NOT_FOUND' });
      await client.close();
      await withKey.close();
    } finally {
      await t.close();
    }
  });

  it('resumes across a gateway restart and a token expiry, ending on the database’s state, and stops on its signal', { timeout: 90_000 }, async () => {
    const database = await freshDatabase();
    let t = await startTestApp({ database });
    const port = new URL(t.url).port;
    try {
      const key = await t.createKey('client-restart', ['jobs:read', 'jobs:write']);
      const workspaceId = await workspaceIdOf(t.app.apiKeys, key);
      const job = (await graphqlOk(t.url, CreateJobDocument, { input: oneStepJob({ competitorId: 'c1' }) }, key)).createJob;
      let minted = 0;
      const client = new JobsClient({
        url: t.url,
        credential: async () => {
          minted++;
          return (await graphqlOk(t.url, CreateAccessTokenDocument, { input: { scopes: ['jobs:read'], competitorId: 'c1', ttlMs: 10_000 } }, key))
            .createAccessToken.token;
        },
        webSocketImpl: WebSocket,
        retryDelayMs: 100,
        maxRetryDelayMs: 500,
      });
      const stop = new AbortController();
      const watch = drain(client.watchJobs({ competitorId: 'c1' }, { after: job.changeCursor, signal: stop.signal }));
      let progress = 0;
      const report = async () => t.app.jobs.updateProgress(workspaceId, job.id, { progress: ++progress });
      for (let i = 0; i < 5; i++) {
        await report();
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      // The gateway goes away and comes back on the same port; a change made meanwhile arrives by replay.
      await t.close();
      t = await startTestApp({ database, env: { PORT: port } });
      await report();
      // Past the first token's expiry (10 s): the socket closes with 4403, the client mints again.
      for (let i = 0; i < 14; i++) {
        await report();
        await new Promise((resolve) => setTimeout(resolve, 800));
      }
      await expect.poll(() => watch.seen.at(-1)?.progress, { timeout: 20_000 }).toBe(progress);
      stop.abort();
      await watch.done;
      // Never backwards, nothing twice, and ending on the database's state; while the socket was down,
      // the state the job was left in (a replay brings each job's state now, not every step).
      const progresses = watch.seen.map((seen) => seen.progress);
      for (let i = 1; i < progresses.length; i++) expect(progresses[i]!, `${progresses.join(',')}`).toBeGreaterThan(progresses[i - 1]!);
      expect(progresses.at(-1)).toBe(progress);
      expect(progresses.length).toBeGreaterThanOrEqual(progress - 3);
      expect(minted).toBeGreaterThanOrEqual(2);
      await client.close();
    } finally {
      await t.close();
      await database.drop();
    }
  });

  it('closes cleanly while it waits to reconnect, its last watch stopped', async () => {
    const t = await startTestApp();
    try {
      const key = await t.createKey('client-close', ['jobs:read']);
      let closedOnce!: () => void;
      const closed = new Promise<void>((resolve) => (closedOnce = resolve));
      // A second's wait before the reconnect: the stop and the close land inside it.
      const client = new JobsClient({ url: t.url, credential: key, webSocketImpl: WebSocket, retryDelayMs: 1_000, on: { closed: () => closedOnce() } });
      const stop = new AbortController();
      const watch = drain(client.watchJobs({}, { signal: stop.signal }));
      // The socket opens lazily with the first watch; the gateway then goes away.
      await expect.poll(() => t.app.webSockets.stats().connections).toBe(1);
      await t.close();
      await closed;
      stop.abort();
      await watch.done;
      // graphql-ws's dispose waits for the pending reconnect, which gives up with a close event: not an error of closing.
      await expect(client.close()).resolves.toBeUndefined();
    } finally {
      await t.close();
    }
  });

  it('ends an iterator with a JobsClientError when the gateway refuses the credential', async () => {
    const t = await startTestApp();
    try {
      // A token that is not one: 401 on HTTP, 4401 on the socket (which graphql-ws does not retry).
      const client = new JobsClient({ url: t.url, credential: 'not.a.token', webSocketImpl: WebSocket });
      const refused = drain(client.watchJob('00000000-0000-0000-0000-000000000000')).done;
      await expect(refused).rejects.toBeInstanceOf(JobsClientError);
      await expect(refused).rejects.toMatchObject({ code: 'UNAUTHENTICATED' });
      const closed = drain(client.watchJobs()).done;
      await expect(closed).rejects.toBeInstanceOf(JobsClientError);
      await expect(closed).rejects.toMatchObject({ code: 'UNAUTHENTICATED' });
      await client.close();
    } finally {
      await t.close();
    }
  });
});
