import { beforeAll, describe, expect, it } from 'vitest';
import {
  CompleteJobDocument,
  CreateJobDocument,
  FailJobDocument,
  JobDocument,
  UpdateJobProgressDocument,
  type CreateJobInput,
  type FullJobFragment,
} from '../../../src/graphql/operations.generated.js';
import { describeDb } from '../../helpers/databases.js';
import { type RestResult, codesOf, graphql, graphqlOk, rest } from '../../helpers/http.js';
import { competitorAnalysis } from '../../helpers/jobs.js';
import { type TestApp, startTestApp } from '../../helpers/test-app.js';

/** The fields of a job in the Jobs API (see the README, REST), in the order its clients know. */
const REFERENCE_FIELDS = [
  'id',
  'workspaceId',
  'competitorId',
  'type',
  'displayTitle',
  'status',
  'progress',
  'currentStep',
  'steps',
  'startedAt',
  'completedAt',
  'metadata',
];
const STEP_FIELDS = ['id', 'name', 'status'];
const ISO_UTC_MS = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
const MISSING = '00000000-0000-4000-8000-000000000000';
/** What `jq -r '.job.status'` may print in the reference's polling loop. */
const POLL_STATUSES = ['running', 'completed', 'failed'];

interface RestStep {
  id: string;
  name: string;
  status: string;
}

interface RestJob {
  id: string;
  workspaceId: string;
  competitorId: string | null;
  type: string;
  displayTitle: string;
  status: string;
  progress: number;
  currentStep: string | null;
  steps: RestStep[];
  startedAt: string;
  completedAt: string | null;
  metadata: unknown;
}

interface ErrorBody {
  error: { code: string; message: string };
}

/**
 * The reference's rendering of a job as GraphQL returns it (FullJob): its fields in its order,
 * lowercase statuses, null where absent. Written out here, independently of src/rest/routes.ts.
 */
const referenceJob = (job: FullJobFragment): RestJob => ({
  id: job.id,
  workspaceId: job.workspaceId,
  competitorId: job.competitorId ?? null,
  type: job.type,
  displayTitle: job.displayTitle,
  status: job.status.toLowerCase(),
  progress: job.progress,
  currentStep: job.currentStep ?? null,
  steps: job.steps.map((step) => ({ id: step.key, name: step.name, status: step.status.toLowerCase() })),
  startedAt: job.startedAt,
  completedAt: job.completedAt ?? null,
  metadata: job.metadata,
});

/** Asserts the exact reference layout of one job: key order of the job and of each step. */
function expectReferenceKeys(job: RestJob): void {
  expect(Object.keys(job)).toEqual(REFERENCE_FIELDS);
  for (const step of job.steps) expect(Object.keys(step)).toEqual(STEP_FIELDS);
  expect(job.startedAt).toMatch(ISO_UTC_MS);
  if (job.completedAt !== null) expect(job.completedAt).toMatch(ISO_UTC_MS);
}

/** A 200 with `{"job": {...}}` and nothing else; returns the job. */
function jobBody(res: RestResult): RestJob {
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^application\/json/);
  const body = res.body as { job: RestJob };
  expect(Object.keys(body)).toEqual(['job']);
  expectReferenceKeys(body.job);
  return body.job;
}

/** A 200 with `{"jobs": [...], "nextCursor"}` (the reference's body, plus paging) and nothing else; returns the jobs. */
function jobsBody(res: RestResult): RestJob[] {
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^application\/json/);
  const body = res.body as { jobs: RestJob[]; nextCursor: unknown };
  expect(Object.keys(body)).toEqual(['jobs', 'nextCursor']);
  expect(body.nextCursor === null || typeof body.nextCursor === 'string').toBe(true);
  expect(Array.isArray(body.jobs)).toBe(true);
  for (const job of body.jobs) expectReferenceKeys(job);
  return body.jobs;
}

/**
 * An error answer: the status, JSON `{"error": {"code", "message"}}` and nothing else, a message
 * that is not empty, no stack trace, and none of `secrets` (the keys in play).
 */
function expectError(res: RestResult, status: number, code: string, secrets: readonly string[] = []): ErrorBody {
  const text = JSON.stringify(res.body);
  expect(res.status, text).toBe(status);
  expect(res.headers.get('content-type')).toMatch(/^application\/json/);
  expect(res.body).toEqual({ error: { code, message: expect.any(String) } });
  const body = res.body as ErrorBody;
  expect(Object.keys(body)).toEqual(['error']);
  expect(Object.keys(body.error)).toEqual(['code', 'message']);
  expect(body.error.message.trim()).not.toBe('');
  expect(text).not.toMatch(/\n\s+at |\bat .+:\d+:\d+|\.[cm]?[jt]s:\d+|node_modules|"stack"/);
  for (const secret of secrets) expect(text).not.toContain(secret);
  return body;
}

describeDb('REST Jobs API over real HTTP: GET /api/jobs, GET /api/jobs/{id}, POST /api/jobs/{id}/cancel', () => {
  let t: TestApp;
  /** All scopes, workspace "rest-main". */
  let key: string;
  let workspaceId: string;

  beforeAll(async () => {
    t = await startTestApp();
    key = await t.createKey('rest-main');
    const principal = await t.app.apiKeys.authenticate(key);
    if (!principal) throw new Error('the new key does not authenticate');
    workspaceId = principal.workspaceId;
  });

  /**
   * The reference body of a job created by `create()` (from `competitorAnalysis()`), in the state given:
   * every field literal except those that follow from the state.
   */
  const collectBody = (
    created: { id: string; startedAt: string },
    state: { status: string; progress: number; currentStep: string; stepStatuses: string[]; completedAt: unknown; competitorId?: string },
  ) => ({
    job: {
      id: created.id,
      workspaceId,
      competitorId: state.competitorId ?? 'competitor-id',
      type: 'collect',
      displayTitle: 'Analyzing Competitor',
      status: state.status,
      progress: state.progress,
      currentStep: state.currentStep,
      steps: [
        { id: 'collect', name: 'Collecting Intel', status: state.stepStatuses[0] },
        { id: 'ingest', name: 'Processing Intel', status: state.stepStatuses[1] },
        { id: 'build-matrix', name: 'Building Competitor Matrix', status: state.stepStatuses[2] },
        { id: 'build-battlecard', name: 'Generating Battle Card', status: state.stepStatuses[3] },
      ],
      startedAt: created.startedAt,
      completedAt: state.completedAt,
      metadata: { competitorName: 'Competitor Inc', isFirstRun: true, productIds: ['product-id-1'] },
    },
  });
  const create = async (overrides: Partial<CreateJobInput> = {}, as = key) =>
    (await graphqlOk(t.url, CreateJobDocument, { input: competitorAnalysis(overrides) }, as)).createJob;
  const fullJob = async (id: string, as = key) => {
    const { job } = await graphqlOk(t.url, JobDocument, { id }, as);
    if (!job) throw new Error(`job ${id} not found over GraphQL`);
    return job;
  };
  // `as`: the X-API-Key to send (the all-scopes key unless told), or null for none.
  const getJob = (id: string, as: string | null = key, headers: Record<string, string> = {}) => rest(t.url, 'GET', `/api/jobs/${id}`, as ?? undefined, headers);
  const cancel = (id: string, as: string | null = key, headers: Record<string, string> = {}) =>
    rest(t.url, 'POST', `/api/jobs/${id}/cancel`, as ?? undefined, headers);
  const list = (query = '', as: string | null = key, headers: Record<string, string> = {}) => rest(t.url, 'GET', `/api/jobs${query}`, as ?? undefined, headers);

  describe('GET /api/jobs/{id}', () => {
    it('answers exactly the reference body: its fields in its order, lowercase statuses, ISO-8601 UTC times', async () => {
      const created = await create();
      expect(created.workspaceId).toBe(workspaceId);
      await graphqlOk(t.url, UpdateJobProgressDocument, { input: { id: created.id, progress: 50, stepId: 'ingest', stepStatus: 'RUNNING' } }, key);

      const res = await getJob(created.id);
      const job = jobBody(res);
      expect(res.body).toEqual(
        collectBody(created, {
          status: 'running',
          progress: 50,
          currentStep: 'Processing Intel',
          stepStatuses: ['completed', 'running', 'pending', 'pending'],
          completedAt: null,
        }),
      );
      expect(job.startedAt).toMatch(ISO_UTC_MS);
      expect(new Date(job.startedAt).toISOString()).toBe(job.startedAt);
      // The reference's polling loop: `jq -r '.job.status'` prints running, completed or failed.
      expect(POLL_STATUSES).toContain(job.status);
    });

    it('answers null for competitorId, currentStep and completedAt where absent, and {} for no metadata', async () => {
      const created = await create({ competitorId: null, steps: [], metadata: null, type: 'discover-profile', displayTitle: 'Profile' });
      const res = await getJob(created.id);
      jobBody(res);
      expect(res.body).toEqual({
        job: {
          id: created.id,
          workspaceId,
          competitorId: null,
          type: 'discover-profile',
          displayTitle: 'Profile',
          status: 'running',
          progress: 0,
          currentStep: null,
          steps: [],
          startedAt: created.startedAt,
          completedAt: null,
          metadata: {},
        },
      });
    });

    it('shows a completed job and a failed job as the reference does, and the poll loop sees them finish', async () => {
      const done = await create();
      const completed = (await graphqlOk(t.url, CompleteJobDocument, { id: done.id }, key)).completeJob;
      const doneRes = await getJob(done.id);
      const doneJob = jobBody(doneRes);
      expect(doneRes.body).toEqual(
        collectBody(done, {
          status: 'completed',
          progress: 100,
          currentStep: 'Collecting Intel',
          stepStatuses: ['completed', 'completed', 'completed', 'completed'],
          completedAt: completed.completedAt,
        }),
      );
      expect(doneJob.completedAt).toMatch(ISO_UTC_MS);
      expect(Date.parse(doneJob.completedAt ?? '')).toBeGreaterThanOrEqual(Date.parse(doneJob.startedAt));
      expect(POLL_STATUSES).toContain(doneJob.status);

      const broken = await create({ competitorId: 'c-fail' });
      await graphqlOk(t.url, UpdateJobProgressDocument, { input: { id: broken.id, progress: 30, stepId: 'ingest', stepStatus: 'RUNNING' } }, key);
      const failed = (await graphqlOk(t.url, FailJobDocument, { id: broken.id, error: 'Scraper timed out' }, key)).failJob;
      const failedRes = await getJob(broken.id);
      const failedJob = jobBody(failedRes);
      expect(failedRes.body).toEqual(
        collectBody(broken, {
          status: 'failed',
          progress: 30,
          currentStep: 'Processing Intel',
          stepStatuses: ['completed', 'failed', 'pending', 'pending'],
          completedAt: failed.completedAt,
          competitorId: 'c-fail',
        }),
      );
      expect(failedJob.completedAt).toMatch(ISO_UTC_MS);
      expect(POLL_STATUSES).toContain(failedJob.status);
    });
  });

  describe('GET /api/jobs', () => {
    let lister: string;
    /** Created in this order: a, b, c, d; each with a later startedAt than the one before. */
    let a: FullJobFragment;
    let b: FullJobFragment;
    let c: FullJobFragment;
    let d: FullJobFragment;
    let otherWorkspaceJob: FullJobFragment;

    beforeAll(async () => {
      lister = await t.createKey('rest-lister');
      const inOrder: FullJobFragment[] = [];
      for (const overrides of [
        { competitorId: 'c-a' },
        {
          competitorId: null,
          type: 'discover-products',
          displayTitle: 'Discovering Products',
          metadata: null,
          steps: [{ id: 'discover', name: 'Discovering' }],
        },
        { competitorId: 'c-a', type: 'discover-profile', displayTitle: 'Discovering Profile' },
        { competitorId: 'c-b' },
      ] satisfies Array<Partial<CreateJobInput>>) {
        const previous = inOrder.at(-1);
        // "Newest first" orders by startedAt, stored to the millisecond: give each job its own
        // millisecond so that creation order is the expected order. (No sleep: this only waits for
        // the clock to pass a timestamp already written, at most about a millisecond.)
        if (previous) while (Date.now() <= Date.parse(previous.startedAt) + 1) await new Promise<void>((resolve) => setImmediate(resolve));
        inOrder.push(await create(overrides, lister));
      }
      [a, b, c, d] = inOrder as [FullJobFragment, FullJobFragment, FullJobFragment, FullJobFragment];
      for (let i = 1; i < inOrder.length; i++) {
        expect(Date.parse(inOrder[i]!.startedAt)).toBeGreaterThan(Date.parse(inOrder[i - 1]!.startedAt));
      }
      await graphqlOk(t.url, CompleteJobDocument, { id: c.id }, lister);
      await graphqlOk(t.url, FailJobDocument, { id: d.id, error: 'boom' }, lister);
      // A job of another workspace, with the same competitor id and type: never listed here.
      otherWorkspaceJob = await create({ competitorId: 'c-a' }, await t.createKey('rest-lister-other'));
    });

    const ids = async (query: string) => jobsBody(await list(query, lister)).map((job) => job.id);

    it('answers {"jobs": [...]}: every job of the workspace in the reference shape, newest first', async () => {
      const res = await list('', lister);
      jobsBody(res);
      const current = await Promise.all([d, c, b, a].map((job) => fullJob(job.id, lister)));
      expect(res.body).toEqual({ jobs: current.map(referenceJob), nextCursor: null });
      // Spot-check the mapping against literal values, so a shared mistake cannot hide.
      const [listedD, listedC, listedB, listedA] = (res.body as { jobs: RestJob[] }).jobs;
      expect(listedD).toMatchObject({ id: d.id, status: 'failed', competitorId: 'c-b', completedAt: expect.stringMatching(ISO_UTC_MS) });
      expect(listedD?.steps.map((s) => s.status)).toEqual(['failed', 'pending', 'pending', 'pending']);
      expect(listedC).toMatchObject({ id: c.id, status: 'completed', progress: 100, completedAt: expect.stringMatching(ISO_UTC_MS) });
      expect(listedB).toEqual({
        id: b.id,
        workspaceId: b.workspaceId,
        competitorId: null,
        type: 'discover-products',
        displayTitle: 'Discovering Products',
        status: 'running',
        progress: 0,
        currentStep: 'Discovering',
        steps: [{ id: 'discover', name: 'Discovering', status: 'running' }],
        startedAt: b.startedAt,
        completedAt: null,
        metadata: {},
      });
      expect(listedA).toMatchObject({ id: a.id, status: 'running', competitorId: 'c-a', currentStep: 'Collecting Intel', completedAt: null });
      expect((res.body as { jobs: RestJob[] }).jobs.map((j) => j.id)).not.toContain(otherWorkspaceJob.id);
    });

    it('filters by competitorId; without it, lists all jobs of the workspace (with or without a competitor)', async () => {
      expect(await ids('')).toEqual([d.id, c.id, b.id, a.id]);
      expect(await ids('?competitorId=c-a')).toEqual([c.id, a.id]);
      expect(await ids('?competitorId=c-b')).toEqual([d.id]);
      expect(await ids('?competitorId=nobody')).toEqual([]);
    });

    it('filters by type', async () => {
      expect(await ids('?type=collect')).toEqual([d.id, a.id]);
      expect(await ids('?type=discover-products')).toEqual([b.id]);
      expect(await ids('?type=discover-profile')).toEqual([c.id]);
      expect(await ids('?type=analyze-product-capabilities')).toEqual([]);
    });

    it('filters by lowercase status: running, completed, failed', async () => {
      expect(await ids('?status=running')).toEqual([b.id, a.id]);
      expect(await ids('?status=completed')).toEqual([c.id]);
      expect(await ids('?status=failed')).toEqual([d.id]);
      const statuses = jobsBody(await list('?status=running', lister)).map((job) => job.status);
      expect(statuses).toEqual(['running', 'running']);
    });

    it('limits the number of results, keeping the newest; filters combine', async () => {
      expect(await ids('?limit=1')).toEqual([d.id]);
      expect(await ids('?limit=3')).toEqual([d.id, c.id, b.id]);
      expect(await ids('?limit=4')).toEqual([d.id, c.id, b.id, a.id]);
      expect(await ids('?limit=200')).toEqual([d.id, c.id, b.id, a.id]);
      expect(await ids('?competitorId=c-a&limit=1')).toEqual([c.id]);
      expect(await ids('?competitorId=c-a&status=running')).toEqual([a.id]);
      expect(await ids('?competitorId=c-a&type=collect&status=running&limit=5')).toEqual([a.id]);
      expect(await ids('?competitorId=c-a&status=failed')).toEqual([]);
      expect(await ids('?type=collect&status=failed')).toEqual([d.id]);
    });
  });

  describe('POST /api/jobs/{id}/cancel', () => {
    it('answers exactly {"success": true, "job": {"id", "status": "failed", "currentStep": "Cancelled"}} and fails the job', async () => {
      const created = await create();
      await graphqlOk(t.url, UpdateJobProgressDocument, { input: { id: created.id, progress: 40, stepId: 'ingest', stepStatus: 'RUNNING' } }, key);

      const res = await cancel(created.id);
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/^application\/json/);
      expect(res.body).toEqual({ success: true, job: { id: created.id, status: 'failed', currentStep: 'Cancelled' } });
      const body = res.body as { success: boolean; job: Record<string, unknown> };
      expect(Object.keys(body)).toEqual(['success', 'job']);
      expect(Object.keys(body.job)).toEqual(['id', 'status', 'currentStep']);

      const afterRes = await getJob(created.id);
      const after = jobBody(afterRes);
      expect(afterRes.body).toEqual(
        collectBody(created, {
          status: 'failed',
          progress: 40,
          currentStep: 'Cancelled',
          stepStatuses: ['completed', 'failed', 'pending', 'pending'],
          completedAt: expect.stringMatching(ISO_UTC_MS),
        }),
      );
      expect(Date.parse(after.completedAt ?? '')).toBeGreaterThanOrEqual(Date.parse(after.startedAt));
      // The poll loop of the reference stops on it.
      expect(POLL_STATUSES).toContain(after.status);
      expect(after.status).toBe('failed');
      // The worker learns of the cancellation: its next write is refused; the reason is kept.
      expect((await fullJob(created.id)).error).toBe('Cancelled');
      expect(codesOf(await graphql(t.url, UpdateJobProgressDocument, { input: { id: created.id, progress: 60 } }, key))).toEqual(['JOB_NOT_RUNNING']);
      // And the listing shows the same.
      const listed = jobsBody(await list('?status=failed')).find((job) => job.id === created.id);
      expect(listed).toEqual(after);
    });

    it('answers 400 JOB_NOT_RUNNING when cancelling again, and changes nothing', async () => {
      const created = await create();
      expect((await cancel(created.id)).status).toBe(200);
      const before = jobBody(await getJob(created.id));
      expectError(await cancel(created.id), 400, 'JOB_NOT_RUNNING', [key]);
      expect(jobBody(await getJob(created.id))).toEqual(before);
    });

    it('answers 400 JOB_NOT_RUNNING for a completed job or a failed job, and leaves them as they were', async () => {
      const done = await create();
      await graphqlOk(t.url, CompleteJobDocument, { id: done.id }, key);
      const doneBefore = jobBody(await getJob(done.id));
      expect(doneBefore.status).toBe('completed');
      expectError(await cancel(done.id), 400, 'JOB_NOT_RUNNING', [key]);
      expect(jobBody(await getJob(done.id))).toEqual(doneBefore);

      const broken = await create();
      await graphqlOk(t.url, FailJobDocument, { id: broken.id, error: 'boom' }, key);
      const brokenBefore = jobBody(await getJob(broken.id));
      expectError(await cancel(broken.id), 400, 'JOB_NOT_RUNNING', [key]);
      expect(jobBody(await getJob(broken.id))).toEqual(brokenBefore);
      expect((await fullJob(broken.id)).error).toBe('boom');
    });
  });

  describe('errors', () => {
    it('answers 400 BAD_USER_INPUT for an unknown status and a limit that is not an integer from 1 to 200', async () => {
      for (const query of [
        'status=sleeping',
        'status=pending',
        'status=cancelled',
        'limit=0',
        'limit=201',
        'limit=abc',
        'limit=1.5',
        'limit=-1',
        'limit=1e2',
        'limit=99999999999',
        'limit=5&status=bogus',
      ]) {
        expectError(await list(`?${query}`), 400, 'BAD_USER_INPUT', [key]);
      }
      // The edges themselves are fine.
      expect((await list('?limit=1')).status).toBe(200);
      expect((await list('?limit=200')).status).toBe(200);
    });

    it('answers an unknown status the same way whatever its name, including names of Object.prototype members', async () => {
      const reference = expectError(await list('?status=sleeping'), 400, 'BAD_USER_INPUT', [key]);
      expect(reference.error.message).toMatch(/running.*completed.*failed/);
      for (const status of ['constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf']) {
        const res = await list(`?status=${status}`);
        expect(expectError(res, 400, 'BAD_USER_INPUT', [key]), `status=${status}`).toEqual(reference);
      }
    });

    it('answers a filter value PostgreSQL cannot store (a NUL character) as a client error, never a 500', async () => {
      for (const query of ['?competitorId=%00', '?type=a%00b', '?competitorId=c%00&status=running']) {
        const res = await list(query);
        // No job can match such a value: an empty list and a 400 are both correct answers.
        if (res.status === 200) expect(jobsBody(res), query).toEqual([]);
        else expectError(res, 400, 'BAD_USER_INPUT', [key]);
      }
    });

    it('answers 401 UNAUTHENTICATED on every route without a key, with an unknown key, and with a revoked key', async () => {
      const job = await create();
      const slug = 'rest-revoked';
      const doomed = await t.createKey(slug, ['jobs:read', 'jobs:cancel']);
      const keys = await t.app.apiKeys.list(slug);
      const doomedInfo = keys.find((info) => doomed.startsWith(info.prefix));
      expect(keys).toHaveLength(1);
      if (!doomedInfo) throw new Error('the new key is not listed');
      // It works before it is revoked.
      expect((await list('', doomed)).status).toBe(200);
      await t.app.apiKeys.revoke(doomedInfo.id);

      const unknown = 'jg_thisKeyWasNeverIssued0000000000000000000000';
      const bodies: unknown[] = [];
      const requests = (as: string | null, headers: Record<string, string> = {}) => [
        list('', as, headers),
        list('?status=running&limit=5', as, headers),
        getJob(job.id, as, headers),
        getJob(MISSING, as, headers),
        cancel(job.id, as, headers),
      ];
      for (const [what, pending] of [
        ['no key', requests(null)],
        ['an unknown key', requests(unknown)],
        ['an unknown key as Bearer', requests(null, { authorization: `Bearer ${unknown}` })],
        ['a revoked key', requests(doomed)],
        ['a revoked key as Bearer', requests(null, { authorization: `Bearer ${doomed}` })],
        ['an empty X-API-Key', requests(null, { 'x-api-key': '' })],
        ['a Basic authorization', requests(null, { authorization: `Basic ${Buffer.from(`u:${key}`).toString('base64')}` })],
      ] as const) {
        for (const [i, res] of (await Promise.all(pending)).entries()) {
          expect(res.status, `${what} #${i}`).toBe(401);
          const body = expectError(res, 401, 'UNAUTHENTICATED', [unknown, doomed, key]);
          expect(body.error.message, what).not.toBe('');
          bodies.push(body);
        }
      }
      // The same answer whatever the reason: nothing tells a revoked key from an unknown one.
      expect(new Set(bodies.map((body) => JSON.stringify(body))).size).toBe(1);
      // None of the refused cancels landed.
      expect(jobBody(await getJob(job.id)).status).toBe('running');
    });

    it('answers 403 FORBIDDEN for a key without the route scope, and changes nothing', async () => {
      const job = await create();
      const readOnly = await t.createKey('rest-main', ['jobs:read']);
      const cancelOnly = await t.createKey('rest-main', ['jobs:cancel']);
      const writeOnly = await t.createKey('rest-main', ['jobs:write']);
      const secrets = [readOnly, cancelOnly, writeOnly, key];

      const refusedCancel = expectError(await cancel(job.id, readOnly), 403, 'FORBIDDEN', secrets);
      expect(refusedCancel.error.message).toContain('jobs:cancel');
      expectError(await cancel(job.id, writeOnly), 403, 'FORBIDDEN', secrets);
      const refusedList = expectError(await list('', cancelOnly), 403, 'FORBIDDEN', secrets);
      expect(refusedList.error.message).toContain('jobs:read');
      expectError(await list('?status=running', writeOnly), 403, 'FORBIDDEN', secrets);
      expectError(await getJob(job.id, cancelOnly), 403, 'FORBIDDEN', secrets);
      expectError(await getJob(job.id, writeOnly), 403, 'FORBIDDEN', secrets);
      expectError(await cancel(job.id, readOnly, { authorization: `Bearer ${key}` }), 403, 'FORBIDDEN', secrets); // X-API-Key wins

      // The read-only key reads; the job is still running, untouched.
      const after = jobBody(await getJob(job.id, readOnly));
      expect(after).toMatchObject({ id: job.id, status: 'running', currentStep: 'Collecting Intel', completedAt: null });
      expect(jobsBody(await list('', readOnly)).map((j) => j.id)).toContain(job.id);
    });

    it("answers 404 NOT_FOUND for a job that does not exist, a malformed id, and another workspace's job, alike", async () => {
      const otherKey = await t.createKey('rest-other');
      const theirs = await create({ competitorId: 'theirs' }, otherKey);
      const theirsBefore = jobBody(await getJob(theirs.id, otherKey));
      const secrets = [key, otherKey];

      const missingGet = expectError(await getJob(MISSING), 404, 'NOT_FOUND', secrets);
      const theirsGet = expectError(await getJob(theirs.id), 404, 'NOT_FOUND', secrets);
      // Exactly the same answer as for a job that does not exist.
      expect(theirsGet).toEqual(missingGet);
      expect(JSON.stringify(theirsGet)).not.toContain('theirs');

      const missingCancel = expectError(await cancel(MISSING), 404, 'NOT_FOUND', secrets);
      const theirsCancel = expectError(await cancel(theirs.id), 404, 'NOT_FOUND', secrets);
      // The same, but for the id the caller sent itself.
      expect(JSON.stringify(theirsCancel).replaceAll(theirs.id, '<id>')).toBe(JSON.stringify(missingCancel).replaceAll(MISSING, '<id>'));

      for (const id of ['not-a-uuid', '%E0%A4%A', encodeURIComponent('\'; DROP TABLE "Job"; --'), `${MISSING}0`, '12345']) {
        expectError(await getJob(id), 404, 'NOT_FOUND', secrets);
        expectError(await cancel(id), 404, 'NOT_FOUND', secrets);
      }

      // Their job is untouched (the cancel did not land) and never listed here.
      expect(jobBody(await getJob(theirs.id, otherKey))).toEqual(theirsBefore);
      expect((await fullJob(theirs.id, otherKey)).error).toBeNull();
      expect(jobsBody(await list('?limit=200')).map((job) => job.id)).not.toContain(theirs.id);
      expect(jobsBody(await list('?competitorId=theirs'))).toEqual([]);
    });

    it('answers 404 NOT_FOUND for an unknown /api path', async () => {
      const job = await create();
      for (const path of ['/api', '/api/nothing', '/api/job', `/api/jobs/${job.id}/nothing`, `/api/jobs/${job.id}/cancel/again`, '/api/jobs/cancel/x/y']) {
        expectError(await rest(t.url, 'GET', path, key), 404, 'NOT_FOUND', [key]);
      }
      expectError(await rest(t.url, 'POST', `/api/jobs/${job.id}/stop`, key), 404, 'NOT_FOUND', [key]);
      expect(jobBody(await getJob(job.id)).status).toBe('running');
    });

    it('answers 405 METHOD_NOT_ALLOWED with an Allow header for a wrong method, and changes nothing', async () => {
      const job = await create();
      for (const [method, path, allow] of [
        ['DELETE', `/api/jobs/${job.id}`, 'GET'],
        ['PUT', `/api/jobs/${job.id}`, 'GET'],
        ['PATCH', `/api/jobs/${job.id}`, 'GET'],
        ['POST', `/api/jobs/${job.id}`, 'GET'],
        ['POST', '/api/jobs', 'GET'],
        ['DELETE', '/api/jobs', 'GET'],
        ['GET', `/api/jobs/${job.id}/cancel`, 'POST'],
        ['PUT', `/api/jobs/${job.id}/cancel`, 'POST'],
      ] as const) {
        const res = await rest(t.url, method, path, key);
        expectError(res, 405, 'METHOD_NOT_ALLOWED', [key]);
        expect(res.headers.get('allow'), `${method} ${path}`).toBe(allow);
      }
      expect(jobBody(await getJob(job.id)).status).toBe('running');
    });

    it('never puts a stack trace or a key in an error body', async () => {
      const { key: probe } = await t.app.apiKeys.create({ workspace: 'rest-main', scopes: ['jobs:read'] });
      const responses = [
        await list('?limit=abc', probe),
        await list('?status=%3Cscript%3E', probe),
        await getJob(MISSING, probe),
        await getJob('%E0%A4%A', probe),
        await cancel(MISSING, probe),
        await list('', `${probe}x`),
        await list('', null, { authorization: `Bearer ${probe}x` }),
        await rest(t.url, 'DELETE', `/api/jobs/${MISSING}`, probe),
        await rest(t.url, 'GET', '/api/secret', probe),
      ];
      for (const [i, res] of responses.entries()) {
        expect(res.status, `response ${i}: ${JSON.stringify(res.body).slice(0, 200)}`).toBeGreaterThanOrEqual(400);
        expectError(res, res.status, (res.body as ErrorBody).error.code, [probe, key]);
        expect(JSON.stringify(res.body)).not.toContain(probe.slice(3));
      }
    });
  });

  describe('authentication headers', () => {
    it('accepts Authorization: Bearer <key> exactly like X-API-Key on every route', async () => {
      const job = await create({ competitorId: 'bearer' });
      const bearer = { authorization: `Bearer ${key}` };

      const viaHeader = await getJob(job.id);
      const viaBearer = await getJob(job.id, null, bearer);
      jobBody(viaBearer);
      expect(viaBearer.body).toEqual(viaHeader.body);

      const listHeader = await list('?competitorId=bearer');
      const listBearer = await list('?competitorId=bearer', null, bearer);
      expect(jobsBody(listBearer).map((j) => j.id)).toEqual([job.id]);
      expect(listBearer.body).toEqual(listHeader.body);

      const cancelled = await cancel(job.id, null, bearer);
      expect(cancelled.status).toBe(200);
      expect(cancelled.body).toEqual({ success: true, job: { id: job.id, status: 'failed', currentStep: 'Cancelled' } });
      expect(jobBody(await getJob(job.id, null, bearer))).toMatchObject({ status: 'failed', currentStep: 'Cancelled' });
    });

    it('serves the README polling loop: curl -H "X-API-Key: ..." .../api/jobs/<id> | jq -r ".job.status"', async () => {
      const job = await create();
      const poll = async () => {
        const res = await getJob(job.id);
        const status = (res.body as { job: { status: unknown } }).job.status;
        expect(POLL_STATUSES).toContain(status);
        return status;
      };
      expect(await poll()).toBe('running');
      await graphqlOk(t.url, UpdateJobProgressDocument, { input: { id: job.id, progress: 75 } }, key);
      expect(await poll()).toBe('running');
      await graphqlOk(t.url, CompleteJobDocument, { id: job.id }, key);
      // The loop's exit condition: completed (or failed).
      expect(await poll()).toBe('completed');
    });
  });
});
