import { beforeAll, expect, it } from 'vitest';
import {
  CompleteJobDocument,
  CreateJobDocument,
  FailJobDocument,
  JobDocument,
  JobsDocument,
  UpdateJobProgressDocument,
} from '../../../src/graphql/operations.generated.js';
import { describeDb } from '../../helpers/databases.js';
import { codesOf, graphql, graphqlOk } from '../../helpers/http.js';
import { competitorAnalysis } from '../../helpers/jobs.js';
import { type TestApp, startTestApp } from '../../helpers/test-app.js';

describeDb('jobs over GraphQL: worker mutations and queries', () => {
  let t: TestApp;
  let key: string;

  beforeAll(async () => {
    t = await startTestApp();
    key = await t.createKey('acme');
  });

  it('createJob starts the job on its first step', async () => {
    const before = Date.now();
    const { createJob: job } = await graphqlOk(t.url, CreateJobDocument, { input: competitorAnalysis() }, key);
    expect(job).toMatchObject({
      competitorId: 'competitor-id',
      type: 'collect',
      displayTitle: 'Analyzing Competitor',
      status: 'RUNNING',
      progress: 0,
      currentStep: 'Collecting Intel',
      steps: [
        { key: 'collect', name: 'Collecting Intel', status: 'RUNNING' },
        { key: 'ingest', name: 'Processing Intel', status: 'PENDING' },
        { key: 'build-matrix', name: 'Building Competitor Matrix', status: 'PENDING' },
        { key: 'build-battlecard', name: 'Generating Battle Card', status: 'PENDING' },
      ],
      completedAt: null,
      error: null,
      metadata: { competitorName: 'Competitor Inc', isFirstRun: true, productIds: ['product-id-1'] },
    });
    expect(job.id).toMatch(/^[0-9a-f-]{36}$/);
    // A step's id is unique across jobs (what client caches identify it by); its key is its own.
    expect(job.steps.map((step) => step.id)).toEqual(['collect', 'ingest', 'build-matrix', 'build-battlecard'].map((key) => `${job.id}:${key}`));
    expect(job.startedAt).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(new Date(job.startedAt).getTime()).toBeGreaterThanOrEqual(before - 1000);
    expect(BigInt(job.changeCursor)).toBeGreaterThan(0n);
  });

  it('keeps variables written inside a metadata literal, and literals inside input objects', async () => {
    const { createJob: job } = await graphqlOk(t.url, CreateJobDocument, { input: competitorAnalysis() }, key);
    const response = await fetch(`${t.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': key },
      body: JSON.stringify({
        query:
          'mutation($id: ID!, $count: Int, $names: [String]) { updateJobProgress(input: { id: $id, progress: 10, metadata: { count: $count, names: $names, fixed: "yes" } }) { progress metadata } }',
        variables: { id: job.id, count: 7, names: ['a', 'b'] },
      }),
    });
    expect(await response.json()).toEqual({
      data: {
        updateJobProgress: {
          progress: 10,
          metadata: { competitorName: 'Competitor Inc', isFirstRun: true, productIds: ['product-id-1'], count: 7, names: ['a', 'b'], fixed: 'yes' },
        },
      },
    });
  });

  it('updateJobProgress moves progress forward, runs steps in order and merges metadata', async () => {
    const { createJob: job } = await graphqlOk(t.url, CreateJobDocument, { input: competitorAnalysis() }, key);
    const { updateJobProgress: updated } = await graphqlOk(
      t.url,
      UpdateJobProgressDocument,
      { input: { id: job.id, progress: 50, stepId: 'ingest', stepStatus: 'RUNNING', metadata: { productIds: ['p1'] } } },
      key,
    );
    expect(updated).toMatchObject({
      progress: 50,
      currentStep: 'Processing Intel',
      steps: [
        { key: 'collect', status: 'COMPLETED' },
        { key: 'ingest', status: 'RUNNING' },
        { key: 'build-matrix', status: 'PENDING' },
        { key: 'build-battlecard', status: 'PENDING' },
      ],
      metadata: { competitorName: 'Competitor Inc', isFirstRun: true, productIds: ['p1'] },
    });
    // Never smaller than before; equal only when both are floors below a transaction still open
    // elsewhere (see change-position.ts). The change's own position always grows.
    expect(BigInt(updated.changeCursor)).toBeGreaterThanOrEqual(BigInt(job.changeCursor));
    expect(new Date(updated.updatedAt).getTime()).toBeGreaterThanOrEqual(new Date(job.updatedAt).getTime());

    const backwards = await graphql(t.url, UpdateJobProgressDocument, { input: { id: job.id, progress: 20 } }, key);
    expect(codesOf(backwards)).toEqual(['BAD_USER_INPUT']);
    for (const input of [
      { id: job.id, progress: 101 },
      { id: job.id, progress: -1 },
      { id: job.id, stepId: 'nope', stepStatus: 'RUNNING' as const },
      { id: job.id, stepId: 'ingest' },
      { id: job.id, metadata: ['not', 'an', 'object'] },
    ]) {
      expect(codesOf(await graphql(t.url, UpdateJobProgressDocument, { input }, key)), JSON.stringify(input)).toEqual(['BAD_USER_INPUT']);
    }
    // A rejected update changes nothing.
    const { job: after } = await graphqlOk(t.url, JobDocument, { id: job.id }, key);
    expect(after).toEqual(updated);
  });

  it('completeJob finishes every step; a finished job refuses other worker mutations with JOB_NOT_RUNNING, and answers a repeated completeJob as it is', async () => {
    const { createJob: job } = await graphqlOk(t.url, CreateJobDocument, { input: competitorAnalysis() }, key);
    const { completeJob: done } = await graphqlOk(t.url, CompleteJobDocument, { id: job.id }, key);
    expect(done).toMatchObject({ status: 'COMPLETED', progress: 100, error: null });
    expect(done.steps.map((s) => s.status)).toEqual(['COMPLETED', 'COMPLETED', 'COMPLETED', 'COMPLETED']);
    expect(done.completedAt).toMatch(/Z$/);

    expect((await graphqlOk(t.url, CompleteJobDocument, { id: job.id }, key)).completeJob).toMatchObject({
      id: job.id,
      status: 'COMPLETED',
      updatedAt: done.updatedAt,
    });
    expect(codesOf(await graphql(t.url, UpdateJobProgressDocument, { input: { id: job.id, progress: 100 } }, key))).toEqual(['JOB_NOT_RUNNING']);
    expect(codesOf(await graphql(t.url, FailJobDocument, { id: job.id, error: 'late' }, key))).toEqual(['JOB_NOT_RUNNING']);
  });

  it('failJob fails the running step and keeps the error', async () => {
    const { createJob: job } = await graphqlOk(t.url, CreateJobDocument, { input: competitorAnalysis() }, key);
    const { failJob: failed } = await graphqlOk(t.url, FailJobDocument, { id: job.id, error: 'Scraper timed out' }, key);
    expect(failed).toMatchObject({ status: 'FAILED', error: 'Scraper timed out', currentStep: 'Collecting Intel' });
    expect(failed.steps.map((s) => s.status)).toEqual(['FAILED', 'PENDING', 'PENDING', 'PENDING']);
    expect(failed.completedAt).not.toBeNull();
    expect(codesOf(await graphql(t.url, FailJobDocument, { id: job.id, error: '' }, key))).toEqual(['JOB_NOT_RUNNING']);
  });

  it('createJob rejects bad input with BAD_USER_INPUT and creates nothing', async () => {
    const ws = await t.createKey('bad-input');
    for (const input of [
      competitorAnalysis({ type: '  ' }),
      competitorAnalysis({ displayTitle: '' }),
      competitorAnalysis({
        steps: [
          { id: 'a', name: 'A' },
          { id: 'a', name: 'again' },
        ],
      }),
      competitorAnalysis({ metadata: 'text' }),
      competitorAnalysis({ type: 'x'.repeat(501) }),
      // PostgreSQL cannot store NUL in text or jsonb: a clear 4xx, not a database error.
      competitorAnalysis({ displayTitle: 'a\u0000b' }),
      competitorAnalysis({ metadata: { nested: ['ok', 'not\u0000ok'] } }),
    ]) {
      expect(codesOf(await graphql(t.url, CreateJobDocument, { input }, ws))).toEqual(['BAD_USER_INPUT']);
    }
    const { jobs } = await graphqlOk(t.url, JobsDocument, {}, ws);
    expect(jobs).toEqual([]);
  });

  it('jobs lists newest first and filters by competitor, type and status; limit is 1..200', async () => {
    const ws = await t.createKey('lister');
    const a = (await graphqlOk(t.url, CreateJobDocument, { input: competitorAnalysis({ competitorId: 'c-a' }) }, ws)).createJob;
    const b = (await graphqlOk(t.url, CreateJobDocument, { input: competitorAnalysis({ competitorId: 'c-b', type: 'discover-products' }) }, ws)).createJob;
    const c = (await graphqlOk(t.url, CreateJobDocument, { input: competitorAnalysis({ competitorId: null, type: 'discover-profile' }) }, ws)).createJob;
    await graphqlOk(t.url, CompleteJobDocument, { id: b.id }, ws);

    const all = (await graphqlOk(t.url, JobsDocument, {}, ws)).jobs.map((j) => j.id);
    expect(all).toEqual([c.id, b.id, a.id]);
    expect((await graphqlOk(t.url, JobsDocument, { competitorId: 'c-a' }, ws)).jobs.map((j) => j.id)).toEqual([a.id]);
    expect((await graphqlOk(t.url, JobsDocument, { type: 'discover-products' }, ws)).jobs.map((j) => j.id)).toEqual([b.id]);
    expect((await graphqlOk(t.url, JobsDocument, { status: 'COMPLETED' }, ws)).jobs.map((j) => j.id)).toEqual([b.id]);
    expect((await graphqlOk(t.url, JobsDocument, { status: 'RUNNING' }, ws)).jobs.map((j) => j.id)).toEqual([c.id, a.id]);
    expect((await graphqlOk(t.url, JobsDocument, { limit: 2 }, ws)).jobs.map((j) => j.id)).toEqual([c.id, b.id]);
    expect((await graphqlOk(t.url, JobsDocument, { limit: 200 }, ws)).jobs).toHaveLength(3);
    for (const limit of [0, 201, -5]) {
      expect(codesOf(await graphql(t.url, JobsDocument, { limit }, ws))).toEqual(['BAD_USER_INPUT']);
    }
  });

  it('runs the operation named in a document of several, every time (as GraphiQL sends them)', async () => {
    const query = 'query Scopes { viewer { scopes } } query Latest { jobs(limit: 1) { id } }';
    const send = async (operationName: string) => {
      const response = await fetch(`${t.url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-api-key': key },
        body: JSON.stringify({ query, operationName }),
      });
      return ((await response.json()) as { data: Record<string, unknown> }).data;
    };
    for (let round = 0; round < 2; round++) {
      expect(Object.keys(await send('Scopes'))).toEqual(['viewer']);
      expect(Object.keys(await send('Latest'))).toEqual(['jobs']);
    }
  });

  it('job answers null for an id that does not exist or is not a UUID', async () => {
    for (const id of ['00000000-0000-4000-8000-000000000000', 'not-a-uuid', '\'; DROP TABLE "Job"; --']) {
      const result = await graphql(t.url, JobDocument, { id }, key);
      expect(result.errors).toBeUndefined();
      expect(result.data?.job).toBeNull();
    }
  });
});
