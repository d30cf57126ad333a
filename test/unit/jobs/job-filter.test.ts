import fc from 'fast-check';
import { expect, it } from 'vitest';
import { JOB_FILTER_NAMES, type JobFilter, changeMatches, jobMatches } from '../../../src/jobs/job-filter.js';
import type { JobRow, JobStatus } from '../../../src/jobs/model.js';

const STATUSES: JobStatus[] = ['RUNNING', 'COMPLETED', 'FAILED'];
const status = fc.constantFrom(...STATUSES);
const job = fc.record({
  id: fc.constantFrom('j1', 'j2'),
  competitorId: fc.constantFrom(null, 'c1', 'c2'),
  type: fc.constantFrom('collect', 'discover'),
  status,
  previousStatus: fc.option(status, { nil: null }),
});
const filter = fc.record(
  {
    id: fc.option(fc.constantFrom('j1', 'j2')),
    competitorId: fc.option(fc.constantFrom('c1', 'c2')),
    type: fc.option(fc.constantFrom('collect', 'discover')),
    status: fc.option(status),
  },
  { requiredKeys: [] },
);

it('declares the filters that jobs, jobUpdated and GET /api/jobs share, in their argument order', () => {
  expect(JOB_FILTER_NAMES).toEqual(['competitorId', 'type', 'status']);
});

it('a change concerns a subscription when its job matches the filter after the change or matched it before', () => {
  fc.assert(
    fc.property(job, filter, (changed, watched: JobFilter) => {
      const row = changed as unknown as JobRow;
      const sameJob = watched.id == null || watched.id === changed.id;
      const before = changed.previousStatus === null ? false : jobMatches({ ...changed, status: changed.previousStatus }, watched);
      expect(changeMatches(row, watched)).toBe(sameJob && (jobMatches(changed, watched) || before));
    }),
  );
});

it('a job matches when every filter that is set equals its field', () => {
  fc.assert(
    fc.property(job, filter, (candidate, watched) => {
      const expected =
        (watched.competitorId == null || candidate.competitorId === watched.competitorId) &&
        (watched.type == null || candidate.type === watched.type) &&
        (watched.status == null || candidate.status === watched.status);
      expect(jobMatches(candidate, watched)).toBe(expected);
    }),
  );
});
