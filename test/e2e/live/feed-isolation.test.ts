import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { CreateJobDocument, UpdateJobProgressDocument } from '../../../src/graphql/operations.generated.js';
import { HELD_BACK_WARNING_MS } from '../../../src/limits/fixed.js';
import { describePostgres } from '../../helpers/databases.js';
import { settleFeed } from '../../helpers/feed.js';
import { graphqlOk } from '../../helpers/http.js';
import { scrape } from '../../helpers/metrics.js';
import { postgresUrl } from '../../helpers/postgres.js';
import { type TestApp, startTestApp, workspaceIdOf } from '../../helpers/test-app.js';
import { TestSocket } from '../../helpers/ws-client.js';

// Live updates wait only for transactions that wrote jobs of the same workspace (see
// src/jobs/feed-frontier.ts). Nothing else in the PostgreSQL server holds them back, and a job
// transaction of one workspace holds back no other workspace.

const WATCH = 'subscription($after: String) { jobUpdated(after: $after) { id progress changeCursor } }';
interface State {
  id: string;
  progress: number;
  changeCursor: string;
}
const steps = [{ id: 'a', name: 'A' }];

describePostgres('live updates held back by nothing outside a workspace’s own job writers', () => {
  let t: TestApp;
  const clients: pg.Client[] = [];
  const sockets: TestSocket[] = [];

  beforeAll(async () => {
    t = await startTestApp({ captureLogs: true });
  });
  afterAll(async () => {
    for (const socket of sockets) socket.close();
    await Promise.all(clients.map((client) => client.end().catch(() => {})));
  });

  /** A connection of its own, as another program's would be; `database` another one of the cluster. */
  async function connect(database?: string): Promise<pg.Client> {
    const url = new URL(postgresUrl());
    if (database) url.pathname = `/${database}`;
    const client = new pg.Client({ connectionString: url.toString(), options: database ? undefined : `-c search_path="${t.app.database.schema}"` });
    await client.connect();
    clients.push(client);
    return client;
  }

  async function workspace(slug: string) {
    const key = await t.createKey(slug);
    const workspaceId = await workspaceIdOf(t.app.apiKeys, key);
    const create = async (title: string) =>
      (await graphqlOk(t.url, CreateJobDocument, { input: { type: 'isolation', displayTitle: title, steps } }, key)).createJob;
    const report = async (id: string, progress: number) =>
      (await graphqlOk(t.url, UpdateJobProgressDocument, { input: { id, progress } }, key)).updateJobProgress;
    /** The states a new subscription receives (after `after`, when given). */
    const watch = async (after?: string) => {
      const socket = await TestSocket.open(t.url, { apiKey: key });
      sockets.push(socket);
      const before = t.app.webSockets.multiplexer.memberCount;
      socket.subscribe('1', WATCH, after === undefined ? {} : { after });
      await expect.poll(() => t.app.webSockets.multiplexer.memberCount).toBe(before + 1);
      return () => socket.nexts<{ data: { jobUpdated: State } }>('1').map((m) => m.data.jobUpdated);
    };
    return { key, workspaceId, create, report, watch };
  }

  const progressOf = (states: State[]) => states.map((s) => [s.id, s.progress]);

  /** Unrelated transactions, as they look to PostgreSQL; each is open when `open` resolves, until `end`. */
  const unrelated: Array<{ what: string; open: () => Promise<{ end(): Promise<void> }> }> = [
    {
      what: 'a transaction that wrote another table of the same database',
      open: async () => {
        const other = await connect();
        await other.query('CREATE TABLE IF NOT EXISTS unrelated_import (n int)');
        await other.query('BEGIN');
        await other.query('INSERT INTO unrelated_import VALUES (1)');
        return { end: async () => void (await other.query('COMMIT')) };
      },
    },
    {
      what: 'a transaction in another database of the cluster',
      open: async () => {
        const other = await connect('postgres');
        await other.query('BEGIN');
        await other.query('CREATE TEMP TABLE unrelated (n int)');
        return { end: async () => void (await other.query('ROLLBACK')) };
      },
    },
    {
      what: 'ANALYZE of the jobs table, as autovacuum runs it, inside a transaction',
      open: async () => {
        const other = await connect();
        await other.query('BEGIN');
        await other.query('ANALYZE "Job"');
        return { end: async () => void (await other.query('COMMIT')) };
      },
    },
    {
      what: 'a session left idle in a transaction that has an id',
      open: async () => {
        const other = await connect();
        await other.query('BEGIN');
        await other.query('SELECT pg_current_xact_id()');
        return { end: async () => void (await other.query('ROLLBACK')) };
      },
    },
    {
      what: 'a long read-only query',
      open: async () => {
        const other = await connect();
        const pid = (await other.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
        const running = other.query('SELECT pg_sleep(30)').catch(() => undefined);
        const activity = () => t.app.database.sql.query<{ state: string }>('SELECT state FROM pg_stat_activity WHERE pid = $1', [pid]);
        await expect.poll(async () => (await activity())[0]?.state).toBe('active');
        return {
          end: async () => {
            await t.app.database.sql.query('SELECT pg_cancel_backend($1)', [pid]);
            await running;
          },
        };
      },
    },
  ];

  for (const { what, open } of unrelated) {
    it(`delivers a worker's report at once while ${what} stays open`, async () => {
      const w = await workspace(`unrelated-${unrelated.findIndex((u) => u.what === what)}`);
      const job = await w.create('watched');
      await settleFeed(t.app.feed);
      const states = await w.watch();
      const transaction = await open();
      try {
        await w.report(job.id, 42);
        await expect.poll(() => progressOf(states()), { timeout: 2_000 }).toEqual([[job.id, 42]]);
        expect(t.app.feed.heldBack).toBe(false);
      } finally {
        await transaction.end();
      }
    });
  }

  it(
    "holds back only the workspace whose job an open transaction changed: another workspace's changes go out live and on resume; the held one's follow in order once it commits, and the metric and the warning name it and the transaction",
    async () => {
      const a = await workspace('held');
      const b = await workspace('free');
      const [a1, a2, b1] = [await a.create('a1'), await a.create('a2'), await b.create('b1')];
      await settleFeed(t.app.feed);
      const [liveA, liveB] = [await a.watch(), await b.watch()];

      // A transaction changes a1 and stays open; a worker's report on a2 commits after it.
      const open = await connect();
      await open.query('BEGIN');
      await open.query('UPDATE "Job" SET progress = 10 WHERE id = $1', [a1.id]);
      const pid = (await open.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
      const reportedA = await a.report(a2.id, 20);

      // Workspace B is not held back: live, and resumed from the cursor B's client had.
      await b.report(b1.id, 30);
      await expect.poll(() => progressOf(liveB()), { timeout: 2_000 }).toEqual([[b1.id, 30]]);
      const resumedB = await b.watch(b1.changeCursor);
      await expect.poll(() => progressOf(resumedB()), { timeout: 2_000 }).toEqual([[b1.id, 30]]);
      expect(t.app.feed.inStep(b.workspaceId)).toBe(true);

      // Workspace A waits, and says so: the metric names it and the transaction's backend.
      await expect.poll(() => t.app.feed.inStep(a.workspaceId)).toBe(false);
      expect(liveA()).toEqual([]);
      const metrics = await scrape(t.url);
      expect(metrics.value(`jobs_gateway_feed_held_back{workspace="${a.workspaceId}",pid="${pid}"}`)).toBeGreaterThanOrEqual(0);
      expect(metrics.text).not.toContain(`workspace="${b.workspaceId}"`);

      // A resume of A from a cursor its client read while the transaction was open misses nothing.
      const resumedA = await a.watch(reportedA.changeCursor);

      // After HELD_BACK_WARNING_MS the log names the workspace and the transaction.
      await expect
        .poll(() => t.logs.find((entry) => entry.level === 40 && String(entry.msg).includes('held back')), {
          timeout: HELD_BACK_WARNING_MS + 5_000,
          interval: 250,
        })
        .toBeDefined();
      const warning = t.logs.find((entry) => entry.level === 40 && String(entry.msg).includes('held back'))!;
      expect(warning.workspaces).toEqual([expect.objectContaining({ workspaceId: a.workspaceId, pids: [pid] })]);
      expect(warning.transactions).toEqual([expect.objectContaining({ pid, state: 'idle in transaction' })]);
      expect(JSON.stringify(warning)).not.toContain(b.workspaceId);

      await open.query('COMMIT');
      for (const states of [liveA, resumedA]) {
        await expect
          .poll(() => progressOf(states()), { timeout: 5_000 })
          .toEqual([
            [a1.id, 10],
            [a2.id, 20],
          ]);
        const [first, second] = states();
        expect(BigInt(first!.changeCursor)).toBeLessThan(BigInt(second!.changeCursor));
      }
      expect(t.app.feed.heldBack).toBe(false);
      expect((await scrape(t.url)).text).not.toMatch(/^jobs_gateway_feed_held_back\{/m);
    },
    HELD_BACK_WARNING_MS + 30_000,
  );

  it('delivers the job change of a transaction that began long before it touched a job, after newer changes of the same workspace went out', async () => {
    const w = await workspace('early-starter');
    const [early, busy] = [await w.create('early'), await w.create('busy')];
    await settleFeed(t.app.feed);
    const live = await w.watch();

    // It gets its transaction id now (an old one, by the time it writes a job)...
    const old = await connect();
    await old.query('CREATE TABLE IF NOT EXISTS unrelated_log (n int)');
    await old.query('BEGIN');
    await old.query('INSERT INTO unrelated_log VALUES (1)');
    // ...while the workspace's other changes go out...
    for (let progress = 1; progress <= 5; progress++) await w.report(busy.id, progress);
    await expect.poll(() => live().at(-1)?.progress, { timeout: 2_000 }).toBe(5);
    const lastCursor = live().at(-1)!.changeCursor;
    const resumed = await w.watch(lastCursor);
    // ...and only then writes a job, and commits.
    await old.query('UPDATE "Job" SET progress = 77 WHERE id = $1', [early.id]);
    await old.query('COMMIT');
    for (const states of [live, resumed]) {
      await expect.poll(() => states().some((s) => s.id === early.id && s.progress === 77), { timeout: 5_000 }).toBe(true);
      expect(BigInt(states().find((s) => s.id === early.id)!.changeCursor)).toBeGreaterThan(BigInt(lastCursor));
    }
  });
});
