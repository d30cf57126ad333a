import { beforeAll, expect, it } from 'vitest';
import { CompleteJobDocument, CreateJobDocument, type CreateJobInput, UpdateJobProgressDocument } from '../src/graphql/operations.generated.js';
import { describeDb } from './helpers/databases.js';
import { graphqlOk, rest } from './helpers/http.js';
import { type TestApp, startTestApp } from './helpers/test-app.js';

const REFERENCE_FIELDS = ['id', 'workspaceId', 'competitorId', 'type', 'displayTitle', 'status', 'progress', 'currentStep', 'steps', 'startedAt', 'completedAt', 'metadata'];
const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

const input = (overrides: Partial<CreateJobInput> = {}): CreateJobInput => ({
  type: 'collect',
  displayTitle: 'Analyzing Competitor',
  competitorId: 'competitor-id',
  steps: [
    { id: 'collect', name: 'Collecting Intel' },
    { id: 'ingest', name: 'Processing Intel' },
  ],
  metadata: { competitorName: 'Competitor Inc', isFirstRun: true, productIds: ['product-id-1'] },
  ...overrides,
});

describeDb('REST: the Jobs API reference', () => {
  let t: TestApp;
  let worker: string;
  let dashboard: string;
  let workspaceId: string;

  beforeAll(async () => {
    t = await startTestApp();
    worker = await t.createKey('rest', ['jobs:read', 'jobs:write']);
    dashboard = await t.createKey('rest', ['jobs:read', 'jobs:cancel']);
    workspaceId = (await t.app.apiKeys.authenticate(dashboard))!.workspaceId;
  });

  const create = async (overrides?: Partial<CreateJobInput>, key = worker) => (await graphqlOk(t.url, CreateJobDocument, { input: input(overrides) }, key)).createJob;
  const expectError = (result: { status: number; body: unknown }, status: number, code: string) => {
    expect(result.status).toBe(status);
    expect(result.body).toEqual({ error: { code, message: expect.any(String) } });
    expect(JSON.stringify(result.body)).not.toMatch(/\n\s+at |\.ts:\d+/);
  };

  it('GET /api/jobs/{id} answers the reference body: its fields, in its order, lowercase values', async () => {
    const job = await create();
    await graphqlOk(t.url, UpdateJobProgressDocument, { input: { id: job.id, progress: 50, stepId: 'ingest', stepStatus: 'RUNNING' } }, worker);
    const res = await rest(t.url, 'GET', `/api/jobs/${job.id}`, dashboard);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('application/json');
    const body = res.body as { job: Record<string, unknown> };
    expect(Object.keys(body)).toEqual(['job']);
    expect(Object.keys(body.job)).toEqual(REFERENCE_FIELDS);
    expect(body.job).toEqual({
      id: job.id,
      workspaceId,
      competitorId: 'competitor-id',
      type: 'collect',
      displayTitle: 'Analyzing Competitor',
      status: 'running',
      progress: 50,
      currentStep: 'Processing Intel',
      steps: [
        { id: 'collect', name: 'Collecting Intel', status: 'completed' },
        { id: 'ingest', name: 'Processing Intel', status: 'running' },
      ],
      startedAt: expect.stringMatching(ISO),
      completedAt: null,
      metadata: { competitorName: 'Competitor Inc', isFirstRun: true, productIds: ['product-id-1'] },
    });
    for (const step of (body.job.steps as Array<Record<string, unknown>>)) expect(Object.keys(step)).toEqual(['id', 'name', 'status']);
    // The polling loop of the reference: `jq -r '.job.status'` is running, completed or failed.
    expect(['running', 'completed', 'failed']).toContain(body.job.status);
  });

  it('GET /api/jobs lists the workspace, newest first, and filters by competitorId, type, status and limit', async () => {
    const slug = `list-${Math.random().toString(36).slice(2, 8)}`;
    const w = await t.createKey(slug, ['jobs:read', 'jobs:write']);
    const a = await create({ competitorId: 'c-a' }, w);
    const b = await create({ competitorId: null, type: 'discover-products', metadata: null }, w);
    const c = await create({ competitorId: 'c-a', type: 'discover-profile' }, w);
    await graphqlOk(t.url, CompleteJobDocument, { id: c.id }, w);

    const ids = async (query: string) => {
      const res = await rest(t.url, 'GET', `/api/jobs${query}`, w);
      expect(res.status, query).toBe(200);
      const body = res.body as { jobs: Array<Record<string, unknown>> };
      expect(Object.keys(body)).toEqual(['jobs']);
      for (const job of body.jobs) expect(Object.keys(job)).toEqual(REFERENCE_FIELDS);
      return body.jobs.map((j) => j.id);
    };
    expect(await ids('')).toEqual([c.id, b.id, a.id]);
    expect(await ids('?competitorId=c-a')).toEqual([c.id, a.id]);
    expect(await ids('?type=discover-products')).toEqual([b.id]);
    expect(await ids('?status=running')).toEqual([b.id, a.id]);
    expect(await ids('?status=completed')).toEqual([c.id]);
    expect(await ids('?status=failed')).toEqual([]);
    expect(await ids('?limit=1')).toEqual([c.id]);
    expect(await ids('?competitorId=c-a&status=running&limit=200')).toEqual([a.id]);
    expect(await ids('?competitorId=')).toEqual([c.id, b.id, a.id]);

    const listed = ((await rest(t.url, 'GET', '/api/jobs?type=discover-products', w)).body as { jobs: Array<Record<string, unknown>> }).jobs[0]!;
    expect(listed).toMatchObject({ competitorId: null, currentStep: 'Collecting Intel', completedAt: null, metadata: {} });
    const done = ((await rest(t.url, 'GET', '/api/jobs?status=completed', w)).body as { jobs: Array<Record<string, unknown>> }).jobs[0]!;
    expect(done).toMatchObject({ status: 'completed', progress: 100, completedAt: expect.stringMatching(ISO) });
  });

  it('POST /api/jobs/{id}/cancel answers exactly the reference body and fails the job', async () => {
    const job = await create();
    const res = await rest(t.url, 'POST', `/api/jobs/${job.id}/cancel`, dashboard);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ success: true, job: { id: job.id, status: 'failed', currentStep: 'Cancelled' } });
    expect(Object.keys((res.body as { job: object }).job)).toEqual(['id', 'status', 'currentStep']);
    const after = (await rest(t.url, 'GET', `/api/jobs/${job.id}`, dashboard)).body as { job: Record<string, unknown> };
    expect(after.job).toMatchObject({
      status: 'failed',
      currentStep: 'Cancelled',
      completedAt: expect.stringMatching(ISO),
      steps: [
        { id: 'collect', name: 'Collecting Intel', status: 'failed' },
        { id: 'ingest', name: 'Processing Intel', status: 'pending' },
      ],
    });
    expectError(await rest(t.url, 'POST', `/api/jobs/${job.id}/cancel`, dashboard), 400, 'JOB_NOT_RUNNING');
    const completed = await create();
    await graphqlOk(t.url, CompleteJobDocument, { id: completed.id }, worker);
    expectError(await rest(t.url, 'POST', `/api/jobs/${completed.id}/cancel`, dashboard), 400, 'JOB_NOT_RUNNING');
  });

  it('answers 400 for bad parameters, each as {"error": {"code", "message"}}', async () => {
    for (const query of ['status=sleeping', 'status=', 'limit=0', 'limit=201', 'limit=abc', 'limit=1.5', 'limit=-1', 'limit=99999999999']) {
      const res = await rest(t.url, 'GET', `/api/jobs?${query}`, dashboard);
      if (query === 'status=') {
        expect(res.status).toBe(200); // an empty parameter is no filter
        continue;
      }
      expectError(res, 400, 'BAD_USER_INPUT');
    }
  });

  it('answers 401 without a valid key: none, unknown, revoked; Bearer works like X-API-Key', async () => {
    const job = await create();
    for (const [method, path] of [['GET', '/api/jobs'], ['GET', `/api/jobs/${job.id}`], ['POST', `/api/jobs/${job.id}/cancel`]] as const) {
      expectError(await rest(t.url, method, path), 401, 'UNAUTHENTICATED');
      expectError(await rest(t.url, method, path, 'jg_unknown'), 401, 'UNAUTHENTICATED');
    }
    const { key, info } = await t.app.apiKeys.create({ workspace: 'rest', scopes: ['jobs:read'] });
    expect((await rest(t.url, 'GET', '/api/jobs', key)).status).toBe(200);
    await t.app.apiKeys.revoke(info.id);
    expectError(await rest(t.url, 'GET', '/api/jobs', key), 401, 'UNAUTHENTICATED');

    const viaBearer = await rest(t.url, 'GET', `/api/jobs/${job.id}`, undefined, { authorization: `Bearer ${dashboard}` });
    expect(viaBearer.status).toBe(200);
    expect((viaBearer.body as { job: { id: string } }).job.id).toBe(job.id);
    // The key never appears in an error.
    expect(JSON.stringify((await rest(t.url, 'GET', '/api/jobs', `${key}x`)).body)).not.toContain(key);
  });

  it('answers 403 for a key without the route scope, and changes nothing', async () => {
    const job = await create();
    const readOnly = await t.createKey('rest', ['jobs:read']);
    const cancelOnly = await t.createKey('rest', ['jobs:cancel']);
    expectError(await rest(t.url, 'POST', `/api/jobs/${job.id}/cancel`, readOnly), 403, 'FORBIDDEN');
    expectError(await rest(t.url, 'GET', '/api/jobs', cancelOnly), 403, 'FORBIDDEN');
    expectError(await rest(t.url, 'GET', `/api/jobs/${job.id}`, cancelOnly), 403, 'FORBIDDEN');
    expect(((await rest(t.url, 'GET', `/api/jobs/${job.id}`, dashboard)).body as { job: { status: string } }).job.status).toBe('running');
  });

  it("answers 404 for a missing, malformed or other workspace's job, exactly alike, and never touches the other's job", async () => {
    const other = await t.createKey('rest-other', ['jobs:read', 'jobs:write', 'jobs:cancel']);
    const theirs = await create({}, other);
    const missing = '00000000-0000-4000-8000-000000000000';
    const answers = [];
    for (const id of [missing, theirs.id, 'not-a-uuid', '%E0%A4%A', "1'%20OR%20'1'='1"]) {
      const get = await rest(t.url, 'GET', `/api/jobs/${id}`, dashboard);
      expectError(get, 404, 'NOT_FOUND');
      const cancel = await rest(t.url, 'POST', `/api/jobs/${id}/cancel`, dashboard);
      expectError(cancel, 404, 'NOT_FOUND');
      answers.push(get.status, cancel.status);
    }
    expect(new Set(answers)).toEqual(new Set([404]));
    // The other workspace's job is untouched, and its owner still sees it running.
    expect(((await rest(t.url, 'GET', `/api/jobs/${theirs.id}`, other)).body as { job: { status: string } }).job.status).toBe('running');
    // And it never shows in this workspace's list.
    const listed = ((await rest(t.url, 'GET', '/api/jobs?limit=200', dashboard)).body as { jobs: Array<{ id: string }> }).jobs.map((j) => j.id);
    expect(listed).not.toContain(theirs.id);
  });

  it('answers 404 for unknown routes and 405 with Allow for a wrong method', async () => {
    expectError(await rest(t.url, 'GET', '/api/nothing', dashboard), 404, 'NOT_FOUND');
    expectError(await rest(t.url, 'GET', '/api', dashboard), 404, 'NOT_FOUND');
    const job = await create();
    const wrong = await rest(t.url, 'DELETE', `/api/jobs/${job.id}`, dashboard);
    expectError(wrong, 405, 'METHOD_NOT_ALLOWED');
    expect(wrong.headers.get('allow')).toBe('GET');
    const getCancel = await rest(t.url, 'GET', `/api/jobs/${job.id}/cancel`, dashboard);
    expectError(getCancel, 405, 'METHOD_NOT_ALLOWED');
    expect(getCancel.headers.get('allow')).toBe('POST');
  });
});
