import fc from 'fast-check';
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { CreateJobDocument, JobDocument, UpdateJobProgressDocument } from '../../../src/graphql/operations.generated.js';
import { positionOf } from '../../../src/jobs/change-position.js';
import { describePostgres } from '../../helpers/databases.js';
import { graphqlOk } from '../../helpers/http.js';
import { settleFeed } from '../../helpers/feed.js';
import { scrape } from '../../helpers/metrics.js';
import { postgresUrl } from '../../helpers/postgres.js';
import { openEventStream } from '../../helpers/sse-client.js';
import { type TestApp, startTestApp, workspaceIdOf } from '../../helpers/test-app.js';
import { TestSocket } from '../../helpers/ws-client.js';

// Job writes no longer wait for each other, so transactions commit in any order: one that took its
// change position first may commit last. Subscribers must still get every job's changes, in order,
// nothing at or below their `after`, nothing twice, and resuming from any cursor they were given
// must miss nothing (test/e2e/live/change-feed.test.ts covers writers one at a time).

const SELECTION = 'id progress changeCursor';
const WATCH = `subscription($after: String) { jobUpdated(after: $after) { ${SELECTION} } }`;
interface State {
  id: string;
  progress: number;
  changeCursor: string;
}
type Update = { data: { jobUpdated: State } };
const steps = [{ id: 'a', name: 'A' }];

describePostgres('transactions that commit out of order', () => {
  let t: TestApp;
  let key: string;
  /** A second workspace's key: the property runs over both. */
  let otherKey: string;
  let otherWorkspaceId: string;
  const clients: pg.Client[] = [];
  const cleanups: Array<() => void> = [];

  beforeAll(async () => {
    // Reads straight from the database: these tests check what a read of committed data answers
    // and which cursor it carries. With the response cache on, a read may answer from memory up to
    // the last change the feed dispatched (test/e2e/graphql/response-cache.test.ts checks that promise).
    t = await startTestApp({ env: { RESPONSE_CACHE: 'false' } });
    key = await t.createKey('late-commit');
    otherKey = await t.createKey('late-commit-other');
    otherWorkspaceId = await workspaceIdOf(t.app.apiKeys, otherKey);
  });
  afterAll(async () => {
    for (const cleanup of cleanups) cleanup();
    await Promise.all(clients.map((client) => client.end().catch(() => {})));
    await t.close();
  });

  /** A connection of its own, as another program's would be. */
  async function connect(): Promise<pg.Client> {
    const client = new pg.Client({ connectionString: postgresUrl(), options: `-c search_path="${t.app.database.schema}"` });
    await client.connect();
    clients.push(client);
    return client;
  }

  const createJob = async (title: string, as = key) =>
    (await graphqlOk(t.url, CreateJobDocument, { input: { type: 'late', displayTitle: title, steps } }, as)).createJob;

  /** States received over a WebSocket subscription. */
  async function watchSocket(after?: string, as = key) {
    const socket = await TestSocket.open(t.url, { apiKey: as });
    cleanups.push(() => socket.close());
    socket.subscribe('1', WATCH, after === undefined ? {} : { after });
    return { states: () => socket.nexts<Update>('1').map((u) => u.data.jobUpdated) };
  }

  /** States received over Server-Sent Events, read in the background. */
  async function watchStream(after?: string, as = key) {
    const stream = await openEventStream(t.url, as, WATCH, after === undefined ? {} : { after });
    let open = true;
    cleanups.push(() => {
      open = false;
      void stream.close();
    });
    void (async () => {
      for (let n = 1; open; n++) await stream.next(n).catch(() => (open = false));
    })();
    return { states: () => stream.events.filter((e) => e.event === 'next').map((e) => (e.data as Update).data.jobUpdated) };
  }

  const subscriptions = () => t.app.webSockets.multiplexer.memberCount + t.app.live.streamCount;

  it('holds a change back until an older transaction has committed, then sends both in position order, live and on resume, over WebSockets and SSE', async () => {
    const a = await createJob('A');
    const b = await createJob('B');
    const { workspaceId } = await (await t.app.database.prisma()).job.findUniqueOrThrow({ where: { id: a.id } });
    await settleFeed(t.app.feed);
    const before = subscriptions();
    const live = [await watchSocket(), await watchStream()];
    await expect.poll(subscriptions).toBe(before + 2);

    // A takes its position first and commits last; B commits in between.
    const late = await connect();
    await late.query('BEGIN');
    await late.query('UPDATE "Job" SET progress = 10 WHERE id = $1', [a.id]);
    const other = await connect();
    await other.query('UPDATE "Job" SET progress = 20 WHERE id = $1', [b.id]);

    // B is committed and readable, but nothing past A's position goes out while A may still commit.
    const { job: readWhileOpen } = await graphqlOk(t.url, JobDocument, { id: b.id }, key);
    expect(readWhileOpen!.progress).toBe(20);
    await t.app.feed.poke();
    await new Promise((resolve) => setTimeout(resolve, 300));
    for (const watcher of live) expect(watcher.states()).toEqual([]);
    // The metric names the workspace held back and the backend of the transaction holding it.
    const pid = (await late.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
    expect(t.app.feed.heldBack).toBe(true);
    expect((await scrape(t.url)).value(`jobs_gateway_feed_held_back{workspace="${workspaceId}",pid="${pid}"}`)).toBeGreaterThanOrEqual(0);
    // Resuming from the cursor a client read meanwhile (or from the last one it received) misses nothing.
    const resumed = [await watchSocket(readWhileOpen!.changeCursor), await watchStream(readWhileOpen!.changeCursor)];

    await late.query('COMMIT');
    for (const watcher of [...live, ...resumed]) {
      await expect
        .poll(() => watcher.states().map((s) => [s.id, s.progress]), { timeout: 5_000 })
        .toEqual([
          [a.id, 10],
          [b.id, 20],
        ]);
      const [first, second] = watcher.states();
      expect(BigInt(first!.changeCursor)).toBeLessThan(BigInt(second!.changeCursor));
      // What the query said before A committed is no larger than anything sent since.
      expect(BigInt(readWhileOpen!.changeCursor)).toBeLessThan(BigInt(first!.changeCursor));
    }
    expect(t.app.feed.heldBack).toBe(false);
    expect((await scrape(t.url)).text).not.toMatch(/^jobs_gateway_feed_held_back\{/m);

    // From the last cursor received, nothing comes again.
    const last = live[0]!.states().at(-1)!.changeCursor;
    const caughtUp = [await watchSocket(last), await watchStream(last)];
    await other.query('UPDATE "Job" SET progress = 30 WHERE id = $1', [a.id]);
    for (const watcher of caughtUp) await expect.poll(() => watcher.states().map((s) => [s.id, s.progress]), { timeout: 5_000 }).toEqual([[a.id, 30]]);
  });

  it('gives a query or a mutation a cursor that stays below a change still uncommitted when it read or wrote, however far the horizon has moved since', async () => {
    const jobs = [await createJob('read'), await createJob('written'), await createJob('late')];
    const [read, written, late] = jobs;
    await settleFeed(t.app.feed);
    const { workspaceId } = await (await t.app.database.prisma()).job.findUniqueOrThrow({ where: { id: late!.id } });
    const open = await connect();
    await open.query('BEGIN');
    await open.query('UPDATE "Job" SET progress = 7 WHERE id = $1', [late!.id]);
    // Newer transactions commit while that one is open; a list reads them, a worker writes one.
    const other = await connect();
    await other.query('UPDATE "Job" SET progress = 8 WHERE id = $1', [read!.id]);
    const listed = await t.app.jobs.list(workspaceId);
    const reported = await t.app.jobs.updateProgress(workspaceId, written!.id, { progress: 9 });
    await open.query('COMMIT');
    // The horizon moves past everything (the feed reads) before the cursors are worked out.
    await settleFeed(t.app.feed);
    const lateChange = positionOf(await (await t.app.database.prisma()).job.findUniqueOrThrow({ where: { id: late!.id } }));
    const cursors = [...listed.map((row) => t.app.jobs.cursorOf(row)), t.app.jobs.cursorOf(reported)];
    for (const cursor of cursors) expect(cursor).toBeLessThan(lateChange);
    // And resuming from the largest of them brings the late change.
    const largest = cursors.reduce((a, b) => (a > b ? a : b)).toString();
    const resumed = await watchSocket(largest);
    await expect.poll(() => resumed.states().some((s) => s.id === late!.id && s.progress === 7), { timeout: 5_000 }).toBe(true);
  });

  /**
   * One statement of a transaction: a row, two rows at once, or a row inside a savepoint kept or
   * undone; or a write that touches no job (another table), which must hold nothing back.
   */
  type Write = { job: number; other: number; progress: number; kind: 'one' | 'two' | 'savepoint' | 'undone' | 'unrelated' };
  interface Transaction {
    isolation: 'READ COMMITTED' | 'REPEATABLE READ';
    writes: Write[];
    /** Milliseconds between statements: some transactions stay open long. */
    pause: number;
    rollback: boolean;
  }
  /** Jobs 0 and 1 belong to the first workspace, 2 and 3 to the second. */
  const JOBS = 4;
  const index = fc.integer({ min: 0, max: JOBS - 1 });
  const transaction: fc.Arbitrary<Transaction> = fc.record({
    isolation: fc.constantFrom('READ COMMITTED' as const, 'REPEATABLE READ' as const),
    writes: fc.array(
      fc.record({
        job: index,
        other: index,
        progress: fc.integer({ min: 0, max: 99 }),
        kind: fc.constantFrom('one' as const, 'one' as const, 'two' as const, 'savepoint' as const, 'undone' as const, 'unrelated' as const),
      }),
      { minLength: 1, maxLength: 3 },
    ),
    pause: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 40 }), fc.constant(150)),
    rollback: fc.boolean(),
  });

  it('delivers every job’s final state, in per-job order, nothing at or below `after`, nothing twice, in each workspace, whatever the overlap, commit order, isolation level, savepoints, multi-row statements and unrelated writes of concurrent writers; an open transaction of one workspace holds back no other (property)', async () => {
    const writers = await Promise.all(Array.from({ length: 4 }, () => connect()));
    for (const writer of writers) await writer.query(`SET lock_timeout = '300ms'`);
    const holder = await connect();
    await holder.query('CREATE TABLE IF NOT EXISTS unrelated_writes (n int)');
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.array(transaction, { minLength: 1, maxLength: 3 }), { minLength: 4, maxLength: 4 }),
        fc.integer({ min: 0, max: 3 }),
        async (plans, resumeAt) => {
          const jobs: Array<Awaited<ReturnType<typeof createJob>>> = [];
          for (let i = 0; i < JOBS; i++) jobs.push(await createJob(`P${i}`, i < JOBS / 2 ? key : otherKey));
          await settleFeed(t.app.feed);
          const workspaces = [
            { as: key, ids: new Set(jobs.slice(0, JOBS / 2).map((job) => job.id)), from: jobs[JOBS / 2 - 1]!.changeCursor },
            { as: otherKey, ids: new Set(jobs.slice(JOBS / 2).map((job) => job.id)), from: jobs.at(-1)!.changeCursor },
          ];
          const before = subscriptions();
          const watchers = await Promise.all(workspaces.map(async (w) => ({ ...w, live: await watchSocket(w.from, w.as) })));
          await expect.poll(subscriptions).toBe(before + workspaces.length);
          const only = (ids: Set<string>, states: State[]) => states.filter((s) => ids.has(s.id));

          // Isolation: while a transaction that changed a job of the first workspace stays open, a
          // change of the second one goes out.
          await holder.query('BEGIN');
          await holder.query('UPDATE "Job" SET progress = progress WHERE id = $1', [jobs[0]!.id]);
          const probe = await graphqlOk(t.url, UpdateJobProgressDocument, { input: { id: jobs.at(-1)!.id, progress: 100 } }, otherKey);
          await expect.poll(() => only(watchers[1]!.ids, watchers[1]!.live.states()).some((s) => s.progress === 100), { timeout: 3_000 }).toBe(true);
          expect(t.app.feed.inStep(otherWorkspaceId)).toBe(true);
          await holder.query('COMMIT');
          expect(probe.updateJobProgress.progress).toBe(100);

          // Each writer runs its transactions one after another; the writers run side by side.
          let done = 0;
          const resumed: Array<{ states: () => State[]; after: string }> = [];
          await Promise.all(
            plans.map(async (plan, w) => {
              const writer = writers[w]!;
              for (const tx of plan) {
                try {
                  await writer.query(`BEGIN ISOLATION LEVEL ${tx.isolation}`);
                  for (const write of tx.writes) {
                    if (tx.pause > 0) await new Promise((resolve) => setTimeout(resolve, tx.pause));
                    if (write.kind === 'unrelated') {
                      await writer.query('INSERT INTO unrelated_writes VALUES ($1)', [write.progress]);
                      continue;
                    }
                    const targets = write.kind === 'two' ? [jobs[write.job]!.id, jobs[write.other]!.id] : [jobs[write.job]!.id];
                    if (write.kind === 'savepoint' || write.kind === 'undone') await writer.query('SAVEPOINT s');
                    await writer.query('UPDATE "Job" SET progress = $2 WHERE id = ANY($1::uuid[])', [targets, write.progress]);
                    if (write.kind === 'savepoint') await writer.query('RELEASE SAVEPOINT s');
                    if (write.kind === 'undone') await writer.query('ROLLBACK TO SAVEPOINT s');
                  }
                  await writer.query(tx.rollback ? 'ROLLBACK' : 'COMMIT');
                } catch {
                  await writer.query('ROLLBACK').catch(() => {});
                }
                // Midway, a second subscriber per workspace resumes from the last cursor the first one received.
                if (++done === resumeAt + 1) {
                  for (const watcher of watchers) {
                    const after = only(watcher.ids, watcher.live.states()).at(-1)?.changeCursor ?? watcher.from;
                    resumed.push({ after, states: (await watchStream(after, watcher.as)).states });
                  }
                }
              }
            }),
          );
          // Every job ends on its final state for each subscriber that it changed for; nothing else.
          const final = await (await t.app.database.prisma()).job.findMany({ where: { id: { in: jobs.map((job) => job.id) } } });
          for (const [i, watcher] of watchers.entries()) {
            for (const { states: statesOf, after } of [{ states: watcher.live.states, after: watcher.from }, resumed[i]!]) {
              const owed = final.filter((row) => watcher.ids.has(row.id) && positionOf(row) > BigInt(after));
              await expect
                .poll(() => owed.every((row) => only(watcher.ids, statesOf()).findLast((s) => s.id === row.id)?.progress === row.progress), { timeout: 5_000 })
                .toBe(true);
              const states = only(watcher.ids, statesOf());
              // Nothing of the other workspace ever reaches it.
              expect(statesOf().filter((s) => !watcher.ids.has(s.id) && jobs.some((job) => job.id === s.id))).toEqual([]);
              expect(new Set(states.map((s) => s.id))).toEqual(new Set(owed.map((row) => row.id)));
              const cursors = states.map((s) => BigInt(s.changeCursor));
              expect(new Set(cursors).size).toBe(cursors.length);
              for (const cursor of cursors) expect(cursor).toBeGreaterThan(BigInt(after));
              for (const id of watcher.ids) {
                const mine = cursors.filter((_, j) => states[j]!.id === id);
                expect(mine).toEqual([...mine].sort((x, y) => (x < y ? -1 : 1)));
              }
            }
          }
        },
      ),
      { numRuns: 12 },
    );
  });
});
