import fc from 'fast-check';
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  CancelJobDocument,
  CompleteJobDocument,
  CreateJobDocument,
  FailJobDocument,
  HeartbeatDocument,
  UpdateJobProgressDocument,
} from '../../../src/graphql/operations.generated.js';
import { HEARTBEAT_TIMEOUT_MS } from '../../../src/limits/fixed.js';
import { describeDb } from '../../helpers/databases.js';
import { codesOf, graphql, graphqlOk } from '../../helpers/http.js';
import { type TestApp, startTestApp } from '../../helpers/test-app.js';
import { TestSocket } from '../../helpers/ws-client.js';

const TIMEOUT_MS = HEARTBEAT_TIMEOUT_MS.min;
const SWEEP_MS = 100;
/** A silence as long as the documented bound (the timeout plus 2 s): a running job must have stalled by its end. */
const LAPSE_MS = TIMEOUT_MS + 2_000;

type Action =
  { kind: 'report' } | { kind: 'heartbeat' } | { kind: 'pause'; ms: number } | { kind: 'cancel' } | { kind: 'complete' } | { kind: 'fail'; error: string };

const action: fc.Arbitrary<Action> = fc.oneof(
  { weight: 4, arbitrary: fc.constant({ kind: 'report' as const }) },
  { weight: 2, arbitrary: fc.constant({ kind: 'heartbeat' as const }) },
  { weight: 3, arbitrary: fc.constantFrom(0, 150, 400).map((ms) => ({ kind: 'pause' as const, ms })) },
  { weight: 1, arbitrary: fc.constant({ kind: 'pause' as const, ms: LAPSE_MS }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'cancel' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'complete' as const }) },
  { weight: 1, arbitrary: fc.constantFrom('boom', 'Scraper timed out').map((error) => ({ kind: 'fail' as const, error })) },
);

interface State {
  id: string;
  status: string;
  progress: number;
  currentStep: string | null;
  error: string | null;
  endedAs: string | null;
  changeCursor: string;
}
const SELECTION = 'id status progress currentStep error endedAs changeCursor';
const WATCH = `subscription Watch($id: ID, $after: String) { jobUpdated(id: $id, after: $after) { ${SELECTION} } }`;

/**
 * Random interleavings of a worker's reports, heartbeats and silences with a dashboard's cancels and
 * the worker's own endings, lease lapses among them: every job ends exactly once, its subscriber
 * ends on the database's state, and nothing after the end changes it.
 */
describeDb('a job’s life under any interleaving (property)', () => {
  let t: TestApp;
  let worker: string;
  let dashboard: string;
  let socket: TestSocket;

  beforeAll(async () => {
    t = await startTestApp({ env: { JOB_STALL_SWEEP_INTERVAL_MS: String(SWEEP_MS) } });
    worker = await t.createKey('lifecycle', ['jobs:read', 'jobs:write']);
    dashboard = await t.createKey('lifecycle', ['jobs:read', 'jobs:cancel']);
    socket = await TestSocket.open(t.url, { apiKey: dashboard });
  });
  afterAll(async () => {
    socket.close();
    await t.close();
  });

  const row = async (id: string) =>
    (
      await t.app.database.sql.query<{ status: string; error: string | null; changeSeq: string }>(
        'SELECT status, error, "changeSeq"::text AS "changeSeq" FROM "Job" WHERE id = $1',
        [id],
      )
    )[0]!;

  it('ends every job exactly once, subscribers end on the database’s state, and no report after the end changes anything', { timeout: 240_000 }, async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(action, { minLength: 1, maxLength: 8 }), async (actions) => {
        const { createJob: job } = await graphqlOk(
          t.url,
          CreateJobDocument,
          { input: { type: 'lifecycle', displayTitle: `run ${run}`, steps: [{ id: 'a', name: 'A' }], heartbeatTimeoutMs: TIMEOUT_MS } },
          worker,
        );
        const watch = `run-${run++}`;
        socket.subscribe(watch, WATCH, { id: job.id, after: job.changeCursor });

        let progress = 0;
        /** The database's row once the job was seen ended, and how it ended. */
        let ended: { changeSeq: string; status: string; error: string | null } | undefined;
        /** What ended it: the call that succeeded in ending it, or else its lease lapsing. */
        let endedAs: string | undefined;
        for (const step of actions) {
          let succeeded: Action['kind'] | undefined;
          if (step.kind === 'pause') {
            await new Promise((resolve) => setTimeout(resolve, step.ms));
            // Silent for longer than its lease: a running job has stalled by now.
            if (step.ms === LAPSE_MS && !ended) {
              const now = await row(job.id);
              expect(now, 'stalled after a silence past its timeout').toMatchObject({ status: 'FAILED', error: 'Stalled: no report for 1 s' });
            }
          } else {
            const result =
              step.kind === 'report'
                ? await graphql(t.url, UpdateJobProgressDocument, { input: { id: job.id, progress: Math.min(100, ++progress) } }, worker)
                : step.kind === 'heartbeat'
                  ? await graphql(t.url, HeartbeatDocument, { id: job.id }, worker)
                  : step.kind === 'cancel'
                    ? await graphql(t.url, CancelJobDocument, { id: job.id }, dashboard)
                    : step.kind === 'complete'
                      ? await graphql(t.url, CompleteJobDocument, { id: job.id }, worker)
                      : await graphql(t.url, FailJobDocument, { id: job.id, error: step.error }, worker);
            const codes = codesOf(result);
            if (codes.length === 0) succeeded = step.kind;
            expect(
              codes.every((code) => code === 'JOB_NOT_RUNNING'),
              JSON.stringify(result.errors),
            ).toBe(true);
            if (ended) {
              // After the end: refused, or a repeat of the ending answered as it is; never a change.
              const repeat = (step.kind === 'complete' && ended.status === 'COMPLETED') || (step.kind === 'fail' && ended.error === step.error);
              expect(codes, `${step.kind} after ${ended.status} ${ended.error}`).toEqual(repeat ? [] : ['JOB_NOT_RUNNING']);
            }
          }
          const now = await row(job.id);
          if (ended) expect(now, 'nothing changes after the end').toEqual(ended);
          else if (now.status !== 'RUNNING') {
            ended = now;
            endedAs = succeeded === 'cancel' ? 'CANCELLED' : succeeded === 'complete' ? 'COMPLETED' : succeeded === 'fail' ? 'FAILED' : 'STALLED';
          }
        }

        // A job still running is left to stall: every job ends.
        if (!ended) {
          await expect.poll(async () => (await row(job.id)).status, { timeout: LAPSE_MS + 5_000 }).toBe('FAILED');
          ended = await row(job.id);
          endedAs = 'STALLED';
        }
        // The subscriber ends on the database's state, having seen one end and nothing after it.
        const final = await row(job.id);
        expect(final).toEqual(ended);
        await expect.poll(() => socket.nexts<{ data: { jobUpdated: State } }>(watch).at(-1)?.data.jobUpdated.status, { timeout: 10_000 }).toBe(final.status);
        const states = socket.nexts<{ data: { jobUpdated: State } }>(watch).map((n) => n.data.jobUpdated);
        const endings = states.filter((state) => state.status !== 'RUNNING');
        expect(endings.map((state) => [state.status, state.error, state.endedAs])).toEqual([[final.status, final.error, endedAs]]);
        expect(states.filter((state) => state.status === 'RUNNING').every((state) => state.endedAs === null)).toBe(true);
        expect(states.at(-1)!.status).toBe(final.status);
        socket.complete(watch);
      }),
      { numRuns: 12 },
    );
  });
});
