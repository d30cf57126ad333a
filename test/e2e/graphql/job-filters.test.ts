import fc from 'fast-check';
import { beforeAll, expect, it } from 'vitest';
import { JobsDocument } from '../../../src/graphql/operations.generated.js';
import { JOB_FILTER_NAMES, type JobFilterValues, jobMatches } from '../../../src/jobs/job-filter.js';
import type { JobRow, JobStatus } from '../../../src/jobs/model.js';
import { describeDb } from '../../helpers/databases.js';
import { graphqlOk, rest } from '../../helpers/http.js';
import { type TestApp, startTestApp } from '../../helpers/test-app.js';

const STATUSES: JobStatus[] = ['RUNNING', 'COMPLETED', 'FAILED'];
const filters = fc.record(
  {
    competitorId: fc.option(fc.constantFrom('c1', 'c2', 'c3')),
    type: fc.option(fc.constantFrom('collect', 'discover')),
    status: fc.option(fc.constantFrom(...STATUSES)),
  },
  { requiredKeys: [] },
);

/**
 * The filters are declared once (src/jobs/job-filter.ts); the list's SQL, the match against a row,
 * the GraphQL arguments and the REST parameters all derive from that table. Here they must agree.
 */
describeDb('job filters: the SQL of a list and the match against a row agree, on every door', () => {
  let t: TestApp;
  let key: string;
  let workspaceId: string;
  let all: JobRow[];

  beforeAll(async () => {
    t = await startTestApp();
    key = await t.createKey('filters');
    workspaceId = (await t.app.apiKeys.authenticate(key))!.workspaceId;
    for (let i = 0; i < 18; i++) {
      const job = await t.app.jobs.create(workspaceId, {
        type: i % 2 === 0 ? 'collect' : 'discover',
        displayTitle: `job ${i}`,
        competitorId: i % 4 === 3 ? null : `c${(i % 3) + 1}`,
        steps: [{ id: 'only', name: 'Only' }],
      });
      if (i % 3 === 1) await t.app.jobs.complete(workspaceId, job.id);
      if (i % 3 === 2) await t.app.jobs.fail(workspaceId, job.id, 'boom');
    }
    all = await t.app.jobs.list(workspaceId, { limit: 200 });
    expect(all).toHaveLength(18);
  });

  it('the store lists exactly the jobs that match', async () => {
    await fc.assert(
      fc.asyncProperty(filters, async (filter: JobFilterValues) => {
        const listed = await t.app.jobs.list(workspaceId, { ...filter, limit: 200 });
        expect(listed.map((job) => job.id)).toEqual(all.filter((job) => jobMatches(job, filter)).map((job) => job.id));
      }),
      { numRuns: 40 },
    );
  });

  it('jobs over GraphQL and GET /api/jobs take every declared filter by its name', async () => {
    const filter = { competitorId: 'c1', type: 'collect', status: 'RUNNING' as JobStatus };
    expect(Object.keys(filter).sort()).toEqual([...JOB_FILTER_NAMES].sort());
    const expected = all.filter((job) => jobMatches(job, filter)).map((job) => job.id);
    expect(expected.length).toBeGreaterThan(0);
    expect(expected.length).toBeLessThan(all.length);
    const { jobs } = await graphqlOk(t.url, JobsDocument, { ...filter, limit: 200 }, key);
    expect(jobs.map((job) => job.id)).toEqual(expected);
    const query = new URLSearchParams({ competitorId: 'c1', type: 'collect', status: 'running', limit: '200' });
    const listed = await rest(t.url, 'GET', `/api/jobs?${query}`, key);
    expect(listed.status).toBe(200);
    expect((listed.body as { jobs: Array<{ id: string }> }).jobs.map((job) => job.id)).toEqual(expected);
  });
});
