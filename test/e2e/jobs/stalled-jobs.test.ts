import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  CompleteJobDocument,
  CreateJobDocument,
  HeartbeatDocument,
  JobDocument,
  UpdateJobProgressDocument,
} from '../../../src/graphql/operations.generated.js';
import { HEARTBEAT_TIMEOUT_MS } from '../../../src/limits/fixed.js';
import { withoutCursor } from '../../helpers/cursor.js';
import { settleFeed } from '../../helpers/feed.js';
import { describeDb, describePostgres, freshDatabase } from '../../helpers/databases.js';
import { codesOf, graphql, graphqlOk, rest } from '../../helpers/http.js';
import { competitorAnalysis, oneStepJob } from '../../helpers/jobs.js';
import { type TestApp, startTestApp } from '../../helpers/test-app.js';
import { TestSocket } from '../../helpers/ws-client.js';

const TIMEOUT_MS = HEARTBEAT_TIMEOUT_MS.min;
const WATCH = `subscription Watch($id: ID, $after: String) { jobUpdated(id: $id, after: $after) { id status progress currentStep error completedAt steps { key status } } }`;

interface Update {
  data: {
    jobUpdated: {
      id: string;
      status: string;
      progress: number;
      currentStep: string | null;
      error: string | null;
      completedAt: string | null;
      steps: Array<{ key: string; status: string }>;
    };
  };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * The subscription's FAILED state. (Resuming from the cursor a mutation answered may send the state
 * it answered once more first: that cursor can be a floor, see JobStore.cursorOf.)
 */
async function failedState(socket: TestSocket, id: string): Promise<Update['data']['jobUpdated']> {
  const message = await socket.waitFor(
    (m) => m.type === 'next' && m.id === id && (m.payload as Update).data.jobUpdated.status === 'FAILED',
    TIMEOUT_MS + 10_000,
  );
  return (message.payload as Update).data.jobUpdated;
}

describeDb('jobs whose worker stops reporting', () => {
  let t: TestApp;
  let worker: string;
  let dashboard: string;

  beforeAll(async () => {
    t = await startTestApp();
    worker = await t.createKey('stalls', ['jobs:read', 'jobs:write']);
    dashboard = await t.createKey('stalls', ['jobs:read', 'jobs:cancel']);
  });
  afterAll(() => t.close());

  it('fail as stalled within their timeout plus 2 s, with no traffic at all: subscribers, reads and REST all see it end', async () => {
    const { createJob: job } = await graphqlOk(t.url, CreateJobDocument, { input: competitorAnalysis({ heartbeatTimeoutMs: TIMEOUT_MS }) }, worker);
    const socket = await TestSocket.open(t.url, { apiKey: dashboard });
    socket.subscribe('watch', WATCH, { id: job.id, after: job.changeCursor });

    const ended = await failedState(socket, 'watch');
    socket.close();
    expect(ended).toMatchObject({
      id: job.id,
      status: 'FAILED',
      currentStep: 'Stalled',
      error: 'Stalled: no report for 1 s',
      steps: [
        { key: 'collect', status: 'FAILED' },
        { key: 'ingest', status: 'PENDING' },
        { key: 'build-matrix', status: 'PENDING' },
        { key: 'build-battlecard', status: 'PENDING' },
      ],
    });
    // Not before its timeout, and within it plus 2 s (the sweep's interval and its write): from the
    // job's last change to its end, as the gateway and the database timed them.
    const silentMs = Date.parse(ended.completedAt!) - Date.parse(job.updatedAt);
    expect(silentMs).toBeGreaterThanOrEqual(TIMEOUT_MS);
    expect(silentMs).toBeLessThan(TIMEOUT_MS + 2_000);

    const { job: read } = await graphqlOk(t.url, JobDocument, { id: job.id }, dashboard);
    expect(read).toMatchObject({ status: 'FAILED', error: 'Stalled: no report for 1 s' });
    const viaRest = await rest(t.url, 'GET', `/api/jobs/${job.id}`, dashboard);
    // The REST shape is the reference's: no `error`; the step says why, as a cancel's does.
    expect(viaRest.body).toMatchObject({ job: { status: 'failed', currentStep: 'Stalled' } });
  });

  it('refuse the presumed-dead worker afterwards with JOB_NOT_RUNNING, and change nothing', async () => {
    const { createJob: job } = await graphqlOk(t.url, CreateJobDocument, { input: oneStepJob({ heartbeatTimeoutMs: TIMEOUT_MS }) }, worker);
    await expect.poll(async () => (await graphqlOk(t.url, JobDocument, { id: job.id }, worker)).job?.status, { timeout: TIMEOUT_MS + 5_000 }).toBe('FAILED');
    const { job: stalled } = await graphqlOk(t.url, JobDocument, { id: job.id }, worker);

    expect(codesOf(await graphql(t.url, UpdateJobProgressDocument, { input: { id: job.id, progress: 50 } }, worker))).toEqual(['JOB_NOT_RUNNING']);
    expect(codesOf(await graphql(t.url, HeartbeatDocument, { id: job.id }, worker))).toEqual(['JOB_NOT_RUNNING']);
    expect(codesOf(await graphql(t.url, CompleteJobDocument, { id: job.id }, worker))).toEqual(['JOB_NOT_RUNNING']);
    // Nothing changed (changeCursor aside: read while another write is in flight, it is a lower bound).
    expect(withoutCursor((await graphqlOk(t.url, JobDocument, { id: job.id }, worker)).job!)).toEqual(withoutCursor(stalled!));
  });

  it('keep running while their worker heartbeats or reports; a heartbeat alone tells subscribers nothing and changes nothing', async () => {
    const { createJob: job } = await graphqlOk(t.url, CreateJobDocument, { input: oneStepJob({ heartbeatTimeoutMs: TIMEOUT_MS }) }, worker);
    // The creation dispatched before the subscription starts: under load it could otherwise reach it
    // as its first state, which this test does not count.
    await settleFeed(t.app.feed);
    const socket = await TestSocket.open(t.url, { apiKey: dashboard });
    socket.subscribe('watch', WATCH, { id: job.id });
    const changeSeq = async () =>
      (await t.app.database.sql.query<{ changeSeq: string }>('SELECT "changeSeq"::text FROM "Job" WHERE id = $1', [job.id]))[0]!.changeSeq;
    const created = await changeSeq();
    // Three timeouts long: heartbeats at a third of it, then reports.
    for (let i = 0; i < 5; i++) {
      await sleep(TIMEOUT_MS / 3);
      const { heartbeat } = await graphqlOk(t.url, HeartbeatDocument, { id: job.id }, worker);
      expect(heartbeat).toMatchObject({ status: 'RUNNING', progress: 0, updatedAt: job.updatedAt, heartbeatTimeoutMs: TIMEOUT_MS });
    }
    // Not a change: the database recorded none.
    expect(await changeSeq()).toBe(created);
    for (let i = 1; i <= 5; i++) {
      await sleep(TIMEOUT_MS / 3);
      await graphqlOk(t.url, UpdateJobProgressDocument, { input: { id: job.id, progress: i } }, worker);
    }
    const updates = await socket.waitForNexts<Update>('watch', 5);
    // The five reports, and nothing for the heartbeats (a sixth state would have arrived by now, as
    // the reports' did).
    expect(updates.map((u) => u.data.jobUpdated.progress)).toEqual([1, 2, 3, 4, 5]);
    socket.close();
    const { completeJob } = await graphqlOk(t.url, CompleteJobDocument, { id: job.id }, worker);
    expect(completeJob.status).toBe('COMPLETED');
  });

  it('refuse a heartbeat with a coded error and change nothing: another workspace’s job, no jobs:write, no such job, a bad timeout', async () => {
    const { createJob: job } = await graphqlOk(t.url, CreateJobDocument, { input: oneStepJob() }, worker);
    expect(job.status).toBe('RUNNING');
    const otherWorker = await t.createKey('stalls-other', ['jobs:read', 'jobs:write']);
    expect(codesOf(await graphql(t.url, HeartbeatDocument, { id: job.id }, otherWorker))).toEqual(['NOT_FOUND']);
    expect(codesOf(await graphql(t.url, HeartbeatDocument, { id: job.id }, dashboard))).toEqual(['FORBIDDEN']);
    expect(codesOf(await graphql(t.url, HeartbeatDocument, { id: '00000000-0000-4000-8000-000000000000' }, worker))).toEqual(['NOT_FOUND']);
    expect(codesOf(await graphql(t.url, HeartbeatDocument, { id: 'not-a-uuid' }, worker))).toEqual(['NOT_FOUND']);
    const before = (await graphqlOk(t.url, JobDocument, { id: job.id }, worker)).job;
    for (const heartbeatTimeoutMs of [HEARTBEAT_TIMEOUT_MS.min - 1, HEARTBEAT_TIMEOUT_MS.max + 1, 0, -5]) {
      const refused = await graphql(t.url, CreateJobDocument, { input: oneStepJob({ displayTitle: 'refused', heartbeatTimeoutMs }) }, worker);
      expect(codesOf(refused), String(heartbeatTimeoutMs)).toEqual(['BAD_USER_INPUT']);
    }
    expect((await graphqlOk(t.url, JobDocument, { id: job.id }, worker)).job).toEqual(before);
    const { body } = await rest(t.url, 'GET', '/api/jobs?limit=200', worker);
    expect((body as { jobs: Array<{ displayTitle: string }> }).jobs.filter((j) => j.displayTitle === 'refused')).toEqual([]);
  });

  it('take the default timeout (JOB_HEARTBEAT_TIMEOUT_MS) when created without one', async () => {
    const { createJob: job } = await graphqlOk(t.url, CreateJobDocument, { input: oneStepJob() }, worker);
    expect((await graphqlOk(t.url, HeartbeatDocument, { id: job.id }, worker)).heartbeat.heartbeatTimeoutMs).toBe(300_000);
  });
});

describePostgres('stalled jobs with two gateways on one PostgreSQL', () => {
  it('are failed once, by whichever instance gets there first: one change, one count', async () => {
    const database = await freshDatabase();
    const first = await startTestApp({ database, env: { JOB_STALL_SWEEP_INTERVAL_MS: '100' } });
    const second = await startTestApp({ database, env: { JOB_STALL_SWEEP_INTERVAL_MS: '100' } });
    try {
      const worker = await first.createKey('two-sweepers', ['jobs:read', 'jobs:write']);
      const sockets = await Promise.all([TestSocket.open(first.url, { apiKey: worker }), TestSocket.open(second.url, { apiKey: worker })]);
      const jobs = [];
      for (let i = 0; i < 10; i++)
        jobs.push((await graphqlOk(first.url, CreateJobDocument, { input: oneStepJob({ heartbeatTimeoutMs: TIMEOUT_MS }) }, worker)).createJob);
      for (const socket of sockets) for (const job of jobs) socket.subscribe(job.id, WATCH, { id: job.id, after: job.changeCursor });
      for (const socket of sockets) for (const job of jobs) await failedState(socket, job.id);
      // Every sweep of both instances has run over these jobs by now, many times.
      await sleep(1_000);
      for (const socket of sockets) {
        for (const job of jobs) {
          // The creation's state perhaps (see failedState), then the end, once, and nothing after it.
          const statuses = socket.nexts<Update>(job.id).map((u) => u.data.jobUpdated.status);
          expect(statuses.at(-1), job.id).toBe('FAILED');
          expect(
            statuses.filter((status) => status === 'FAILED'),
            job.id,
          ).toHaveLength(1);
        }
        socket.close();
      }
      expect(first.app.sweeper.stats().stalled + second.app.sweeper.stats().stalled).toBe(jobs.length);
      const changes = await first.app.database.sql.query<{ previousStatus: string; status: string }>(
        `SELECT "previousStatus", status FROM "Job" WHERE id = ANY($1::uuid[])`,
        [jobs.map((job) => job.id)],
      );
      expect(changes).toEqual(jobs.map(() => ({ previousStatus: 'RUNNING', status: 'FAILED' })));
    } finally {
      await first.close();
      await second.close();
      await database.drop();
    }
  });

  it('are found by one bounded read of the running jobs’ lease index, however many ended jobs there are', async () => {
    const database = await freshDatabase();
    const t = await startTestApp({ database });
    try {
      const worker = await t.createKey('many-ended', ['jobs:read', 'jobs:write']);
      const { createJob: job } = await graphqlOk(t.url, CreateJobDocument, { input: oneStepJob() }, worker);
      await t.app.database.sql.query(
        `INSERT INTO "Job" (id, "workspaceId", type, "displayTitle", status) SELECT gen_random_uuid(), $1, 'old', 'ended', 'COMPLETED' FROM generate_series(1, 20000)`,
        [job.workspaceId],
      );
      await t.app.database.sql.query('ANALYZE "Job"');
      const plan = await t.app.database.sql.query<{ 'QUERY PLAN': string }>(
        `EXPLAIN SELECT * FROM "Job" WHERE status = 'RUNNING' AND "leaseExpiresAt" < clock_timestamp() ORDER BY "leaseExpiresAt" LIMIT 100`,
      );
      expect(plan.map((line) => line['QUERY PLAN']).join('\n')).toMatch(/Index Scan using "Job_running_leaseExpiresAt_idx"/);
    } finally {
      await t.close();
      await database.drop();
    }
  });
});
