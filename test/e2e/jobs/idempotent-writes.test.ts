import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import {
  CancelJobDocument,
  CompleteJobDocument,
  CreateJobDocument,
  FailJobDocument,
  JobDocument,
  JobsDocument,
  UpdateJobProgressDocument,
} from '../../../src/graphql/operations.generated.js';
import { EXPIRED_KEY_SWEEP, JOB_LIMITS } from '../../../src/limits/fixed.js';
import { describeDb } from '../../helpers/databases.js';
import { codesOf, graphql, graphqlOk } from '../../helpers/http.js';
import { oneStepJob } from '../../helpers/jobs.js';
import { scrape } from '../../helpers/metrics.js';
import { type TestApp, startTestApp } from '../../helpers/test-app.js';

describeDb('idempotent creation', () => {
  let t: TestApp;
  let worker: string;

  beforeAll(async () => {
    t = await startTestApp({ env: { IDEMPOTENCY_TTL_MS: '1500', JOB_STALL_SWEEP_INTERVAL_MS: '200' } });
    worker = await t.createKey('idempotency', ['jobs:read', 'jobs:write']);
  });
  afterAll(() => t.close());

  const titled = async (key: string, displayTitle: string) =>
    (await graphqlOk(t.url, JobsDocument, { limit: 200 }, key)).jobs.filter((job) => job.displayTitle === displayTitle);

  it('answers a repeated key with the job it first created, as it is now, and creates nothing more', async () => {
    const input = oneStepJob({ displayTitle: 'once', idempotencyKey: 'create-once' });
    const { createJob: first } = await graphqlOk(t.url, CreateJobDocument, { input }, worker);
    await graphqlOk(t.url, UpdateJobProgressDocument, { input: { id: first.id, progress: 40 } }, worker);
    const { createJob: again } = await graphqlOk(t.url, CreateJobDocument, { input }, worker);
    expect(again).toMatchObject({ id: first.id, progress: 40 });
    expect(await titled(worker, 'once')).toHaveLength(1);
  });

  it('creates one job for 20 concurrent requests with one key, and answers it to each', async () => {
    const input = oneStepJob({ displayTitle: 'concurrent', idempotencyKey: 'twenty-at-once' });
    const answers = await Promise.all(Array.from({ length: 20 }, () => graphqlOk(t.url, CreateJobDocument, { input }, worker)));
    expect(new Set(answers.map((answer) => answer.createJob.id)).size).toBe(1);
    expect(await titled(worker, 'concurrent')).toHaveLength(1);
  });

  it('refuses the same key with a different input (BAD_USER_INPUT), and creates nothing', async () => {
    await graphqlOk(t.url, CreateJobDocument, { input: oneStepJob({ displayTitle: 'original', idempotencyKey: 'reused' }) }, worker);
    const refused = await graphql(t.url, CreateJobDocument, { input: oneStepJob({ displayTitle: 'different', idempotencyKey: 'reused' }) }, worker);
    expect(codesOf(refused)).toEqual(['BAD_USER_INPUT']);
    expect(refused.errors![0]!.message).toMatch(/idempotencyKey was already used/);
    expect(await titled(worker, 'different')).toEqual([]);
  });

  it('keeps the keys of different workspaces apart', async () => {
    const other = await t.createKey('idempotency-other', ['jobs:read', 'jobs:write']);
    const input = oneStepJob({ displayTitle: 'per workspace', idempotencyKey: 'shared-key' });
    const mine = (await graphqlOk(t.url, CreateJobDocument, { input }, worker)).createJob;
    const theirs = (await graphqlOk(t.url, CreateJobDocument, { input }, other)).createJob;
    expect(theirs.id).not.toBe(mine.id);
    expect(theirs.workspaceId).not.toBe(mine.workspaceId);
  });

  it('forgets a key after IDEMPOTENCY_TTL_MS: the same key then creates a new job', async () => {
    const input = oneStepJob({ displayTitle: 'expiring', idempotencyKey: 'short-lived' });
    const first = (await graphqlOk(t.url, CreateJobDocument, { input }, worker)).createJob;
    await new Promise((resolve) => setTimeout(resolve, 1_600));
    const second = (await graphqlOk(t.url, CreateJobDocument, { input }, worker)).createJob;
    expect(second.id).not.toBe(first.id);
    // And the new job is the key's from then on.
    expect((await graphqlOk(t.url, CreateJobDocument, { input }, worker)).createJob.id).toBe(second.id);
  });

  it('deletes expired keys on its own, a backlog of several batches too, and leaves their jobs and the keys still alive', async () => {
    const { createJob: job } = await graphqlOk(
      t.url,
      CreateJobDocument,
      { input: oneStepJob({ displayTitle: 'kept', idempotencyKey: 'soon-expired' }) },
      worker,
    );
    // A backlog of more than one batch, long expired (as after an outage).
    const backlog = EXPIRED_KEY_SWEEP.batch * 2 + 7;
    await t.app.database.sql.query(
      `INSERT INTO "JobIdempotencyKey" ("workspaceId", key, "inputHash", "jobId", "createdAt")
       SELECT $1::uuid, 'backlog-' || n, 'hash', $2::uuid, now() - interval '1 day' FROM generate_series(1, ${backlog}) AS n`,
      [job.workspaceId, job.id],
    );
    const keysOf = async () =>
      (await t.app.database.sql.query<{ key: string }>('SELECT key FROM "JobIdempotencyKey" WHERE "jobId" = $1 ORDER BY key', [job.id])).map((row) => row.key);
    const before = t.app.sweeper.stats().expiredKeys;
    await vi.waitFor(async () => expect(await keysOf()).toEqual([]), { timeout: 10_000, interval: 100 });
    expect(t.app.sweeper.stats().expiredKeys - before).toBeGreaterThanOrEqual(backlog + 1);
    expect((await scrape(t.url)).value('jobs_gateway_idempotency_keys_expired_total')).toBeGreaterThanOrEqual(before + backlog + 1);
    // The job stays; a key created just now stays until its own TTL has passed.
    const { createJob: fresh } = await graphqlOk(
      t.url,
      CreateJobDocument,
      { input: oneStepJob({ displayTitle: 'fresh', idempotencyKey: 'fresh-key' }) },
      worker,
    );
    expect((await graphqlOk(t.url, JobDocument, { id: job.id }, worker)).job?.id).toBe(job.id);
    const freshKey = () => t.app.database.sql.query('SELECT 1 FROM "JobIdempotencyKey" WHERE "jobId" = $1', [fresh.id]);
    expect(await freshKey()).toHaveLength(1);
    await vi.waitFor(async () => expect(await freshKey()).toHaveLength(0), { timeout: 10_000, interval: 100 });
  });

  it('refuses a key that is empty, too long or not well-formed text, and creates nothing', async () => {
    for (const idempotencyKey of ['', 'k'.repeat(JOB_LIMITS.idempotencyKey + 1), 'nul\u0000', 'half\ud800']) {
      const refused = await graphql(t.url, CreateJobDocument, { input: oneStepJob({ displayTitle: 'bad key', idempotencyKey }) }, worker);
      expect(codesOf(refused), JSON.stringify(idempotencyKey).slice(0, 40)).toEqual(['BAD_USER_INPUT']);
    }
    const notText = await graphql(
      t.url,
      CreateJobDocument,
      { input: { ...oneStepJob({ displayTitle: 'bad key' }), idempotencyKey: { not: 'text' } as never } },
      worker,
    );
    expect(codesOf(notText)).toEqual(['BAD_USER_INPUT']);
    expect(await titled(worker, 'bad key')).toEqual([]);
    // The longest key is a key.
    await graphqlOk(
      t.url,
      CreateJobDocument,
      { input: oneStepJob({ displayTitle: 'long key', idempotencyKey: 'k'.repeat(JOB_LIMITS.idempotencyKey) }) },
      worker,
    );
  });
});

describeDb('idempotent endings', () => {
  let t: TestApp;
  let worker: string;
  let dashboard: string;

  beforeAll(async () => {
    t = await startTestApp();
    worker = await t.createKey('endings', ['jobs:read', 'jobs:write']);
    dashboard = await t.createKey('endings', ['jobs:read', 'jobs:cancel']);
  });
  afterAll(() => t.close());

  const changeSeq = async (id: string) =>
    (await t.app.database.sql.query<{ changeSeq: string }>('SELECT "changeSeq"::text FROM "Job" WHERE id = $1', [id]))[0]!.changeSeq;

  it('answers a repeated completeJob, or failJob with the same error, with the job unchanged: no new change, no error', async () => {
    const { createJob: completed } = await graphqlOk(t.url, CreateJobDocument, { input: oneStepJob() }, worker);
    const { completeJob: first } = await graphqlOk(t.url, CompleteJobDocument, { id: completed.id }, worker);
    const seq = await changeSeq(completed.id);
    expect((await graphqlOk(t.url, CompleteJobDocument, { id: completed.id }, worker)).completeJob).toEqual({ ...first, changeCursor: expect.any(String) });
    expect(await changeSeq(completed.id)).toBe(seq);

    const { createJob: failed } = await graphqlOk(t.url, CreateJobDocument, { input: oneStepJob() }, worker);
    const { failJob: firstFail } = await graphqlOk(t.url, FailJobDocument, { id: failed.id, error: 'Scraper timed out' }, worker);
    const failedSeq = await changeSeq(failed.id);
    expect((await graphqlOk(t.url, FailJobDocument, { id: failed.id, error: 'Scraper timed out' }, worker)).failJob).toEqual({
      ...firstFail,
      changeCursor: expect.any(String),
    });
    expect(await changeSeq(failed.id)).toBe(failedSeq);
  });

  it('still refuses ending a job the other way with JOB_NOT_RUNNING, saying how it ended, and changes nothing', async () => {
    const { createJob: failed } = await graphqlOk(t.url, CreateJobDocument, { input: oneStepJob() }, worker);
    await graphqlOk(t.url, FailJobDocument, { id: failed.id, error: 'first reason' }, worker);
    const { createJob: cancelled } = await graphqlOk(t.url, CreateJobDocument, { input: oneStepJob() }, worker);
    await graphqlOk(t.url, CancelJobDocument, { id: cancelled.id }, dashboard);
    const { createJob: completed } = await graphqlOk(t.url, CreateJobDocument, { input: oneStepJob() }, worker);
    await graphqlOk(t.url, CompleteJobDocument, { id: completed.id }, worker);
    const before = await Promise.all([failed, cancelled, completed].map((job) => changeSeq(job.id)));

    const refusals = [
      [await graphql(t.url, CompleteJobDocument, { id: failed.id }, worker), 'FAILED'],
      [await graphql(t.url, FailJobDocument, { id: failed.id, error: 'another reason' }, worker), 'FAILED'],
      [await graphql(t.url, CompleteJobDocument, { id: cancelled.id }, worker), 'CANCELLED'],
      [await graphql(t.url, FailJobDocument, { id: cancelled.id, error: 'Cancelled' }, worker), 'CANCELLED'],
      [await graphql(t.url, FailJobDocument, { id: completed.id, error: 'too late' }, worker), 'COMPLETED'],
    ] as const;
    for (const [result, endedAs] of refusals) {
      expect(codesOf(result)).toEqual(['JOB_NOT_RUNNING']);
      expect(result.errors![0]!.extensions).toMatchObject({ endedAs });
    }
    expect(await Promise.all([failed, cancelled, completed].map((job) => changeSeq(job.id)))).toEqual(before);
  });
});
