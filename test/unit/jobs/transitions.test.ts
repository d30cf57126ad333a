import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { JOB_STEP_STATUSES, type JobRow, JobStatus, stepsOf } from '../../../src/jobs/model.js';
import * as transitions from '../../../src/jobs/transitions.js';
import { HEARTBEAT_TIMEOUT_MS } from '../../../src/limits/fixed.js';

const DEFAULT_TIMEOUT_MS = 300_000;

/** A job as the store would hold it after newJob, for the pure state machine. */
function jobFrom(input: transitions.NewJobInput): JobRow {
  const fields = transitions.newJob(input, DEFAULT_TIMEOUT_MS);
  return {
    ...fields,
    id: '00000000-0000-4000-8000-000000000001',
    workspaceId: '00000000-0000-4000-8000-000000000002',
    startedAt: new Date(0),
    completedAt: null,
    error: null,
    updatedAt: new Date(0),
    changeXid: 0n,
    changeXmin: 0n,
    changeSeq: 1n,
    previousStatus: null,
    leaseExpiresAt: new Date(DEFAULT_TIMEOUT_MS),
    traceparent: null,
    writeTraceparent: null,
    steps: fields.steps as unknown as JobRow['steps'],
    metadata: fields.metadata as JobRow['metadata'],
  };
}

const stepIds = fc.uniqueArray(
  fc.string({ minLength: 1, maxLength: 8 }).filter((s) => s.trim() === s && s !== ''),
  { minLength: 1, maxLength: 6 },
);

const progressUpdate = (ids: string[]) =>
  fc.record({
    progress: fc.option(fc.integer({ min: -10, max: 110 }), { nil: undefined }),
    step: fc.option(fc.tuple(fc.constantFrom(...ids), fc.constantFrom(...JOB_STEP_STATUSES)), { nil: undefined }),
    metadata: fc.option(fc.dictionary(fc.string({ maxLength: 4 }), fc.integer()), { nil: undefined }),
  });

describe('the job state machine', () => {
  it('keeps its invariants under any sequence of progress updates', () => {
    fc.assert(
      fc.property(
        stepIds.chain((ids) => fc.tuple(fc.constant(ids), fc.array(progressUpdate(ids), { maxLength: 20 }))),
        ([ids, updates]) => {
          let job = jobFrom({ type: 't', displayTitle: 'd', steps: ids.map((id) => ({ id, name: `name ${id}` })) });
          for (const update of updates) {
            const input = { progress: update.progress, stepId: update.step?.[0], stepStatus: update.step?.[1], metadata: update.metadata };
            let patch: transitions.JobPatch;
            try {
              patch = transitions.progress(job, input);
            } catch {
              // Rejected input must be bad: out of range or backwards progress.
              expect(update.progress !== undefined && (update.progress < 0 || update.progress > 100 || update.progress < job.progress)).toBe(true);
              continue;
            }
            const next = {
              ...job,
              ...patch,
              steps: (patch.steps ?? job.steps) as JobRow['steps'],
              metadata: (patch.metadata ?? job.metadata) as JobRow['metadata'],
            };
            expect(next.progress).toBeGreaterThanOrEqual(job.progress);
            expect(stepsOf(next).map((s) => s.id)).toEqual(ids);
            expect(stepsOf(next).filter((s) => s.status === 'RUNNING').length).toBeLessThanOrEqual(1);
            if (update.step?.[1] === 'RUNNING') expect(next.currentStep).toBe(`name ${update.step[0]}`);
            expect(next.metadata).toMatchObject(update.metadata ?? {});
            job = next;
          }
          const done = transitions.complete(job, new Date(1));
          expect(done.status).toBe(JobStatus.COMPLETED);
          expect(done.steps!.every((s) => s.status === 'COMPLETED')).toBe(true);
          const cancelled = transitions.cancel(job, new Date(1));
          expect(cancelled).toMatchObject({ status: JobStatus.FAILED, currentStep: 'Cancelled', error: 'Cancelled' });
          expect(cancelled.steps!.some((s) => s.status === 'RUNNING')).toBe(false);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('fails a stalled job as a cancel does, saying it stalled and for how long', () => {
    const job = jobFrom({
      type: 't',
      displayTitle: 'd',
      steps: [
        { id: 'a', name: 'A' },
        { id: 'b', name: 'B' },
      ],
      heartbeatTimeoutMs: 120_000,
    });
    const stalled = transitions.stall(job, new Date(5));
    expect(stalled).toMatchObject({ status: JobStatus.FAILED, currentStep: 'Stalled', error: 'Stalled: no report for 120 s', completedAt: new Date(5) });
    expect(stalled.steps!.map((s) => s.status)).toEqual(['FAILED', 'PENDING']);
  });

  it('takes a heartbeat timeout within its bounds, the default when none is named, and refuses any other (property)', () => {
    expect(transitions.newJob({ type: 't', displayTitle: 'd', steps: [] }, 42_000).heartbeatTimeoutMs).toBe(42_000);
    fc.assert(
      fc.property(fc.oneof(fc.integer(), fc.double(), fc.constantFrom(HEARTBEAT_TIMEOUT_MS.min - 1, HEARTBEAT_TIMEOUT_MS.max + 1, 0, -1)), (timeout) => {
        const input = { type: 't', displayTitle: 'd', steps: [], heartbeatTimeoutMs: timeout };
        const valid = Number.isInteger(timeout) && timeout >= HEARTBEAT_TIMEOUT_MS.min && timeout <= HEARTBEAT_TIMEOUT_MS.max;
        if (valid) expect(transitions.newJob(input, DEFAULT_TIMEOUT_MS).heartbeatTimeoutMs).toBe(timeout);
        else expect(() => transitions.newJob(input, DEFAULT_TIMEOUT_MS)).toThrow(/heartbeatTimeoutMs must be an integer from 1000 to 86400000/);
      }),
    );
  });
});
