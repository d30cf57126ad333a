import fc from 'fast-check';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { SEQ_SPAN, positionOf } from '../../../src/jobs/change-position.js';
import type { JobRow } from '../../../src/jobs/model.js';
import { describeDb, freshDatabase } from '../../helpers/databases.js';
import { type TestApp, startTestApp } from '../../helpers/test-app.js';
import { settleFeed } from '../../helpers/feed.js';
import { TestSocket } from '../../helpers/ws-client.js';
import { oneStepJob } from '../../helpers/jobs.js';

// Whatever mix of writes reaches the database (through the gateway, large rows, rolled-back
// writes, writers other than the gateway that announce nothing, notifications nobody expected), the
// change feed dispatches in position order, never a state twice, and ends on every job's current
// state. (Transactions that overlap and commit out of order: test/e2e/live/late-commit.test.ts.)

type Op =
  | { kind: 'report'; job: number; n: number }
  | { kind: 'largeRow'; job: number }
  | { kind: 'rolledBack'; job: number }
  | { kind: 'otherWriter'; job: number; progress: number }
  | { kind: 'foreignNotify' };

const JOBS = 3;
const job = fc.integer({ min: 0, max: JOBS - 1 });
const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('report' as const), job, n: fc.integer() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('largeRow' as const), job }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('rolledBack' as const), job }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('otherWriter' as const), job, progress: fc.integer({ min: 0, max: 99 }) }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'foreignNotify' as const }) },
);

describeDb('the change feed', () => {
  let t: TestApp;
  let workspaceId: string;
  beforeAll(async () => {
    // No pause between dispatches: the property is about order and completeness, and runs faster.
    t = await startTestApp({ env: { FEED_COALESCE_MS: '0' } });
    await t.createKey('feed-property', ['jobs:write']);
    ({ id: workspaceId } = await (await t.app.database.prisma()).workspace.findUniqueOrThrow({ where: { slug: 'feed-property' } }));
  });
  afterAll(() => t.close());

  async function apply(ids: string[], step: Op): Promise<void> {
    const { sql } = t.app.database;
    switch (step.kind) {
      case 'report':
        await t.app.jobs.updateProgress(workspaceId, ids[step.job]!, { metadata: { n: step.n } });
        return;
      case 'largeRow':
        await t.app.jobs.updateProgress(workspaceId, ids[step.job]!, { metadata: { notes: 'n'.repeat(9_000) } });
        return;
      case 'rolledBack':
        await sql
          .transaction(async (tx) => {
            await tx.query('UPDATE "Job" SET progress = 1 WHERE id = $1', [ids[step.job]]);
            throw new Error('roll back');
          })
          .catch(() => undefined);
        return;
      case 'otherWriter':
        await sql.query('UPDATE "Job" SET progress = $2 WHERE id = $1', [ids[step.job], step.progress]);
        return;
      case 'foreignNotify':
        await sql.query('SELECT pg_notify($1, $2)', [`job_changes_${t.app.database.schema}`, 'not a change']);
        return;
    }
  }

  it('dispatches in position order, never a state twice, and ends on every job’s current state', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 12 }), async (ops) => {
        const ids: string[] = [];
        let baseline = 0n;
        for (let i = 0; i < JOBS; i++) {
          const created = await t.app.jobs.create(workspaceId, oneStepJob({ type: 'property', displayTitle: `Job ${i}` }));
          ids.push(created.id);
          baseline = positionOf(created);
        }
        await settleFeed(t.app.feed);
        const dispatched: JobRow[] = [];
        const unsubscribe = t.app.feed.subscribe((rows) => dispatched.push(...rows));
        try {
          for (const step of ops) await apply(ids, step);
          const current = await (await t.app.database.prisma()).job.findMany({ where: { id: { in: ids } } });
          const changed = current.filter((row) => positionOf(row) > baseline);
          // The poke stands for the catch-up read that finds what no announcement revealed.
          await settleFeed(t.app.feed);
          await expect.poll(() => changed.every((row) => dispatched.some((state) => positionOf(state) === positionOf(row))), { timeout: 5_000 }).toBe(true);

          const cursors = dispatched.map(positionOf);
          for (let i = 1; i < cursors.length; i++) expect(cursors[i]! > cursors[i - 1]!).toBe(true);
          for (const row of current) {
            const states = dispatched.filter((state) => state.id === row.id);
            if (positionOf(row) > baseline) expect(states.at(-1)).toEqual(row);
            else expect(states).toEqual([]);
          }
        } finally {
          unsubscribe();
        }
      }),
      { numRuns: 25 },
    );
  });
});

describeDb('positions from another database, and a sequence that hands out numbers out of order', () => {
  it('a cursor past every position this database handed out gets BAD_USER_INPUT; a job_change_cursor_seq with a session cache refuses to start, naming the fix', async () => {
    const database = await freshDatabase();
    try {
      const first = await startTestApp({ database });
      const key = await first.createKey('restored', ['jobs:read', 'jobs:write']);
      const job = await first.app.jobs.create((await (await first.app.database.prisma()).workspace.findUniqueOrThrow({ where: { slug: 'restored' } })).id, {
        type: 'collect',
        displayTitle: 'x',
        steps: [],
      });

      // A cursor this database has not reached (another database's, a restore elsewhere): refused, over WebSockets.
      const socket = await TestSocket.open(first.url, { apiKey: key });
      for (const future of [((positionOf(job) / SEQ_SPAN + 1n) * SEQ_SPAN).toString(), (positionOf(job) + 1_000_000n).toString()]) {
        socket.subscribe(future, 'subscription($after: String) { jobUpdated(after: $after) { id } }', { after: future });
        const error = await socket.waitFor((m) => m.id === future && m.type === 'error');
        expect(error.payload).toMatchObject([{ extensions: { code: 'BAD_USER_INPUT' } }]);
      }
      socket.close();

      // Numbers cached per session are handed out out of order: a position drawn later could be smaller.
      await first.app.database.sql.exec('ALTER SEQUENCE job_change_cursor_seq CACHE 20');
      await first.close();
      await expect(startTestApp({ database })).rejects.toThrow(/ALTER SEQUENCE job_change_cursor_seq CACHE 1/);
    } finally {
      await database.drop();
    }
  });
});
