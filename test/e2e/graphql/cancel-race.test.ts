import { beforeAll, expect, it } from 'vitest';
import { CancelJobDocument, CompleteJobDocument, CreateJobDocument, JobDocument } from '../../../src/graphql/operations.generated.js';
import { FeedFrontier } from '../../../src/jobs/feed-frontier.js';
import { JobStore } from '../../../src/jobs/job-store.js';
import { describeDb, describePostgres, freshDatabase } from '../../helpers/databases.js';
import { withoutCursor } from '../../helpers/cursor.js';
import { codesOf, graphql, graphqlOk } from '../../helpers/http.js';
import { type TestApp, NO_BACKGROUND_READS, startTestApp } from '../../helpers/test-app.js';
import { settleFeed } from '../../helpers/feed.js';
import { RememberedJobs } from '../../../src/jobs/remembered-jobs.js';
import { oneStepJob } from '../../helpers/jobs.js';

describeDb('a cancel racing a worker', () => {
  let t: TestApp;
  let dashboard: string;
  let worker: string;

  beforeAll(async () => {
    t = await startTestApp();
    dashboard = await t.createKey('race', ['jobs:read', 'jobs:cancel']);
    worker = await t.createKey('race', ['jobs:read', 'jobs:write']);
  });

  it('ends in exactly one consistent outcome; the loser learns JOB_NOT_RUNNING and writes nothing', async () => {
    for (let round = 0; round < 15; round++) {
      const { createJob: job } = await graphqlOk(
        t.url,
        CreateJobDocument,
        {
          input: {
            type: 'collect',
            displayTitle: `Race ${round}`,
            steps: [
              { id: 'a', name: 'A' },
              { id: 'b', name: 'B' },
            ],
          },
        },
        worker,
      );
      const [cancel, complete] = await Promise.all([
        graphql(t.url, CancelJobDocument, { id: job.id }, dashboard),
        graphql(t.url, CompleteJobDocument, { id: job.id }, worker),
      ]);
      const cancelWon = !cancel.errors;
      const completeWon = !complete.errors;
      expect(cancelWon !== completeWon, `round ${round}: exactly one wins`).toBe(true);
      expect(codesOf(cancelWon ? complete : cancel)).toEqual(['JOB_NOT_RUNNING']);

      const { job: final } = await graphqlOk(t.url, JobDocument, { id: job.id }, dashboard);
      // The job is exactly what the winner answered: the loser wrote nothing after it.
      const winner = cancelWon ? cancel.data!.cancelJob.job : complete.data!.completeJob;
      expect(withoutCursor(final!)).toEqual(withoutCursor(winner));
      if (cancelWon) {
        expect(cancel.data?.cancelJob).toMatchObject({ success: true, job: { status: 'FAILED', currentStep: 'Cancelled' } });
        expect(final).toMatchObject({ status: 'FAILED', currentStep: 'Cancelled', error: 'Cancelled', progress: 0 });
        expect(final!.steps.map((s) => s.status)).toEqual(['FAILED', 'PENDING']);
      } else {
        expect(final).toMatchObject({ status: 'COMPLETED', progress: 100, error: null, currentStep: 'A' });
        expect(final!.steps.map((s) => s.status)).toEqual(['COMPLETED', 'COMPLETED']);
      }
      expect(final!.completedAt).not.toBeNull();
    }
  });
});

describeDb('a transition that starts from a remembered state', () => {
  it('is one statement while the memory is current; when another writer changed the job, it reads and applies to the current state', async () => {
    // Statements are counted for the whole app: its feed must not read on its own meanwhile.
    const t = await startTestApp({ env: NO_BACKGROUND_READS });
    await t.createKey('remembered', ['jobs:write']);
    const { id: workspaceId } = await (await t.app.database.prisma()).workspace.findUniqueOrThrow({ where: { slug: 'remembered' } });
    // A store of its own: no change feed refreshes its memory behind the test's back.
    const store = new JobStore(t.app.database.sql, new FeedFrontier(), new RememberedJobs(), { heartbeatTimeoutMs: 300_000, idempotencyTtlMs: 86_400_000 });
    const statements = () => t.app.database.queries.count;
    const job = await store.create(workspaceId, oneStepJob({ displayTitle: 'x' }));
    // Let the app's own feed settle (it dispatches the creation), so that none of its work is counted below.
    await settleFeed(t.app.feed);

    let before = statements();
    await store.updateProgress(workspaceId, job.id, { progress: 10, metadata: { fromWorker: 1 } });
    expect(statements() - before).toBe(1);

    // Another writer (a SQL console, another instance) changes the job behind this store's back.
    await t.app.database.sql.query(`UPDATE "Job" SET progress = 20, metadata = metadata || '{"fromSql": true}' WHERE id = $1`, [job.id]);
    before = statements();
    const updated = await store.updateProgress(workspaceId, job.id, { metadata: { again: 2 } });
    // The stale write matched nothing, then one read and the write on what the job is now.
    expect(statements() - before).toBe(3);
    expect(updated).toMatchObject({ progress: 20, metadata: { fromWorker: 1, fromSql: true, again: 2 } });

    await t.app.database.sql.query(`UPDATE "Job" SET status = 'COMPLETED', progress = 100 WHERE id = $1`, [job.id]);
    await expect(store.updateProgress(workspaceId, job.id, { progress: 50 })).rejects.toMatchObject({ extensions: { code: 'JOB_NOT_RUNNING' } });
    expect(await (await t.app.database.prisma()).job.findUniqueOrThrow({ where: { id: job.id } })).toMatchObject({ status: 'COMPLETED', progress: 100 });
  });
});

describePostgres('a cancel on one instance racing a completeJob on another', () => {
  it('ends in one outcome: the conditional write decides, not the instance', async () => {
    const database = await freshDatabase();
    const first = await startTestApp({ database });
    const second = await startTestApp({ database });
    const dashboard = await first.createKey('race2', ['jobs:read', 'jobs:cancel']);
    const worker = await first.createKey('race2', ['jobs:read', 'jobs:write']);
    for (let round = 0; round < 15; round++) {
      const { createJob: job } = await graphqlOk(first.url, CreateJobDocument, { input: oneStepJob({ displayTitle: `Race ${round}` }) }, worker);
      const [cancel, complete] = await Promise.all([
        graphql(first.url, CancelJobDocument, { id: job.id }, dashboard),
        graphql(second.url, CompleteJobDocument, { id: job.id }, worker),
      ]);
      expect(!cancel.errors !== !complete.errors, `round ${round}: exactly one wins`).toBe(true);
      expect(codesOf(cancel.errors ? cancel : complete)).toEqual(['JOB_NOT_RUNNING']);
      const { job: final } = await graphqlOk(second.url, JobDocument, { id: job.id }, dashboard);
      expect(final!.status).toBe(cancel.errors ? 'COMPLETED' : 'FAILED');
      expect(final!.steps[0]!.status).toBe(cancel.errors ? 'COMPLETED' : 'FAILED');
    }
    await first.close();
    await second.close();
    await database.drop();
  });
});
