import type net from 'node:net';
import pg from 'pg';
import { afterAll, expect, it, vi } from 'vitest';
import { CreateJobDocument, type CreateJobInput, FailJobDocument, UpdateJobProgressDocument } from '../../../src/graphql/operations.generated.js';
import type { JobRow } from '../../../src/jobs/model.js';
import { ReplayQueue } from '../../../src/live/replay-queue.js';
import { positionOf } from '../../../src/jobs/change-position.js';
import { adminQuery, describeDb, describePostgres, freshDatabase, sqlAsAnotherProgram } from '../../helpers/databases.js';
import { postgresUrl } from '../../helpers/postgres.js';
import { settleFeed } from '../../helpers/feed.js';
import { spawnGateway } from '../../helpers/gateway-process.js';
import { graphqlOk } from '../../helpers/http.js';
import { NO_BACKGROUND_READS, startTestApp, workspaceIdOf } from '../../helpers/test-app.js';
import { openEventStream } from '../../helpers/sse-client.js';
import { TestSocket } from '../../helpers/ws-client.js';
import { positionOfJob } from '../../helpers/cursor.js';

const WATCH = 'subscription($after: String) { jobUpdated(after: $after) { id progress metadata changeCursor } }';
const steps = [{ id: 'a', name: 'A' }];

interface Update {
  data: { jobUpdated: { id: string; progress: number; changeCursor: string } };
}

const cleanups: Array<() => Promise<void> | void> = [];
afterAll(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

describeDb('jobUpdated: the database is the source of truth', () => {
  it('a plain SQL UPDATE by another writer reaches subscribers', async () => {
    const t = await startTestApp();
    const key = await t.createKey('sql-writer');
    const job = (await graphqlOk(t.url, CreateJobDocument, { input: { type: 'collect', displayTitle: 'x', steps } }, key)).createJob;
    const socket = await TestSocket.open(t.url, { apiKey: key });
    cleanups.push(() => socket.close());
    socket.subscribe('1', WATCH, { after: job.changeCursor });

    await sqlAsAnotherProgram(t.app.database, 'UPDATE "Job" SET progress = 77 WHERE id = $1', [job.id]);

    // The creation may come once more first: its cursor was handed out before the feed knew that
    // no older transaction could still commit.
    const update = await socket.waitFor((m) => m.id === '1' && (m.payload as Update | undefined)?.data.jobUpdated.progress === 77);
    expect((update.payload as Update).data.jobUpdated).toMatchObject({ id: job.id, progress: 77 });
    expect(BigInt((update.payload as Update).data.jobUpdated.changeCursor)).toBeGreaterThan(BigInt(job.changeCursor));
    expect(socket.nexts<Update>('1').every((u) => u.data.jobUpdated.progress === 0 || u.data.jobUpdated.progress === 77)).toBe(true);
  });

  /** Collects what the feed dispatches; `next` waits for the first dispatched state that matches. */
  function watchFeed(t: Awaited<ReturnType<typeof startTestApp>>) {
    const seen: JobRow[] = [];
    cleanups.push(t.app.feed.subscribe((rows) => seen.push(...rows)));
    return (match: (row: JobRow) => boolean): Promise<JobRow> =>
      vi.waitFor(
        () => {
          const row = seen.find(match);
          if (!row) throw new Error('no such change dispatched');
          return row;
        },
        { timeout: 5_000, interval: 10 },
      );
  }
  const current = async (t: Awaited<ReturnType<typeof startTestApp>>, id: string) => (await t.app.database.prisma()).job.findUniqueOrThrow({ where: { id } });

  /** A gateway with one job created and dispatched; `reads` is the feed's count from then on. */
  async function gatewayWithJob(workspace: string, input: CreateJobInput = { type: 'collect', displayTitle: 'x', steps }) {
    const t = await startTestApp();
    const key = await t.createKey(workspace, ['jobs:write', 'jobs:read']);
    const next = watchFeed(t);
    const job = (await graphqlOk(t.url, CreateJobDocument, { input }, key)).createJob;
    await next((row) => row.id === job.id);
    const readsBefore = t.app.feed.reads;
    return { t, key, job, next, reads: () => t.app.feed.reads - readsBefore };
  }

  it('dispatches a change exactly as Prisma reads the row', async () => {
    const input = {
      type: 'collect',
      displayTitle: 'Ünïcode "quoted" \\ title',
      competitorId: 'c-9',
      steps: [...steps, { id: 'b', name: 'B' }],
      metadata: { nested: { list: [1, 'two', null], big: 12345678901234 } },
    };
    const { t, key, job, next } = await gatewayWithJob('notified-rows', input);

    await graphqlOk(t.url, UpdateJobProgressDocument, { input: { id: job.id, progress: 40, stepId: 'b', stepStatus: 'RUNNING', metadata: { tick: 1 } } }, key);
    const progressed = await next((row) => row.id === job.id && row.progress === 40);
    expect(progressed).toEqual(await current(t, job.id));
    await graphqlOk(t.url, FailJobDocument, { id: job.id, error: 'boom: "quoted"\nsecond line' }, key);
    const failed = await next((row) => row.id === job.id && row.status === 'FAILED');
    // Every column, including dates, JSON, the previous status and the bigint cursor.
    expect(failed).toEqual(await current(t, job.id));
    expect(failed).toMatchObject({ previousStatus: 'RUNNING', error: 'boom: "quoted"\nsecond line' });
    expect(failed.completedAt).toBeInstanceOf(Date);
  });

  it('dispatches created jobs, from the gateway and from SQL alike', async () => {
    const { t, key, next } = await gatewayWithJob('inserts');
    const created = (await graphqlOk(t.url, CreateJobDocument, { input: { type: 'collect', displayTitle: 'second', steps } }, key)).createJob;
    expect(await next((row) => row.id === created.id)).toEqual(await current(t, created.id));
    // A writer that leaves the cursor to the database's default, like a SQL console.
    const [inserted] = await t.app.database.sql.query<{ id: string }>(
      `INSERT INTO "Job" (id, "workspaceId", type, "displayTitle") VALUES (gen_random_uuid(), $1, 'collect', 'by SQL') RETURNING id`,
      [created.workspaceId],
    );
    // The SQL writer announced nothing: the catch-up read (or the next announcement) finds it.
    await t.app.feed.poke();
    expect(await next((row) => row.id === inserted!.id)).toEqual(await current(t, inserted!.id));
  });

  it('reads past a rolled-back write and misses nothing', async () => {
    const { t, key, job, next, reads } = await gatewayWithJob('gaps');
    // The trigger takes a cursor, then the transaction rolls back: that cursor never commits.
    await expect(
      t.app.database.sql.transaction(async (tx) => {
        await tx.query('UPDATE "Job" SET progress = 99 WHERE id = $1', [job.id]);
        throw new Error('roll back');
      }),
    ).rejects.toThrow('roll back');
    await graphqlOk(t.url, UpdateJobProgressDocument, { input: { id: job.id, progress: 7 } }, key);
    expect(await next((row) => row.id === job.id && row.progress === 7)).toEqual(await current(t, job.id));
    expect(reads()).toBeGreaterThanOrEqual(1);
  });

  it('treats anything on its channel as "something may have changed": it reads, and dispatches nothing false', async () => {
    const { t, reads } = await gatewayWithJob('foreign-notify');
    const dispatched = t.app.feed.dispatched;
    await t.app.database.sql.query(`SELECT pg_notify($1, $2)`, [`job_changes_${t.app.database.schema}`, '{"cursor":"999999999","row":{"id":"forged"}}']);
    await expect.poll(reads).toBe(1);
    expect(t.app.feed.dispatched - dispatched).toBe(0);
  });

  it('sends the changes that arrive while it pauses after a dispatch together: each job’s newest state, in order, in one read and one socket write for all its subscriptions', async () => {
    const t = await startTestApp({ env: { FEED_COALESCE_MS: '3000' } });
    const key = await t.createKey('batched');
    const others = [];
    for (let i = 0; i < 4; i++)
      others.push((await graphqlOk(t.url, CreateJobDocument, { input: { type: 'collect', displayTitle: `o${i}`, steps } }, key)).createJob);
    const job = (await graphqlOk(t.url, CreateJobDocument, { input: { type: 'collect', displayTitle: 'x', steps } }, key)).createJob;
    const upgraded: net.Socket[] = [];
    t.app.httpServer.on('upgrade', (_request, connection: net.Socket) => upgraded.push(connection));
    const socket = await TestSocket.open(t.url, { apiKey: key });
    cleanups.push(() => socket.close());
    // Count the writes the gateway makes to this connection (Node's stream hooks, one per write call).
    const connection = upgraded[0] as unknown as Record<'_write' | '_writev', (...args: unknown[]) => void>;
    let writes = 0;
    for (const hook of ['_write', '_writev'] as const) {
      const original = connection[hook].bind(connection);
      connection[hook] = (...args) => {
        writes++;
        original(...args);
      };
    }
    // Two subscriptions in two groups (different documents) on the one connection, replaying the job's creation.
    const after = (positionOf(await (await t.app.database.prisma()).job.findUniqueOrThrow({ where: { id: job.id } })) - 1n).toString();
    socket.subscribe('1', WATCH, { after });
    socket.subscribe('2', 'subscription($after: String) { jobUpdated(after: $after) { id progress } }', { after });
    await socket.waitForNexts('1', 1); // the replayed creation: live from here
    await socket.waitForNexts('2', 1);
    // After a quiet spell a change goes out at once; the feed then pauses.
    await graphqlOk(t.url, UpdateJobProgressDocument, { input: { id: job.id, progress: 1 } }, key);
    await socket.waitForNexts('1', 2);
    await socket.waitForNexts('2', 2);
    const dispatches = t.app.feed.dispatches;
    const reads = t.app.feed.reads;
    const writesBefore = writes;

    // During the pause: the job twice, then each other job once. A read brings each job's current
    // state, in the order of their latest changes.
    await graphqlOk(t.url, UpdateJobProgressDocument, { input: { id: job.id, progress: 2 } }, key);
    await graphqlOk(t.url, UpdateJobProgressDocument, { input: { id: job.id, progress: 3 } }, key);
    for (const [i, other] of others.entries()) await graphqlOk(t.url, UpdateJobProgressDocument, { input: { id: other.id, progress: 10 + i } }, key);
    const expected = [[job.id, 3], ...others.map((other, i) => [other.id, 10 + i])];
    const updates = await socket.waitForNexts<Update>('1', 7);
    expect(updates.slice(2).map((u) => [u.data.jobUpdated.id, u.data.jobUpdated.progress])).toEqual(expected);
    const other = await socket.waitForNexts<Update>('2', 7);
    expect(other.slice(2).map((u) => [u.data.jobUpdated.id, u.data.jobUpdated.progress])).toEqual(expected);
    const cursors = updates.slice(2).map((u) => BigInt(u.data.jobUpdated.changeCursor));
    expect(cursors).toEqual([...cursors].sort((a, b) => (a < b ? -1 : 1)));
    expect(t.app.feed.dispatches - dispatches).toBe(1);
    expect(t.app.feed.reads - reads).toBe(1);
    expect(writes - writesBefore).toBe(1);
  });

  it('never sends a change at or below `after`, even one the feed dispatches after the subscription started', async () => {
    // The pause after a dispatch holds the second update back, while its cursor is already in the
    // worker's hands (and could be in a dashboard's): a resume from it must not bring it again.
    const t = await startTestApp({ env: { FEED_COALESCE_MS: '3000' } });
    const key = await t.createKey('resume-at-pending');
    const dispatched: number[] = [];
    cleanups.push(t.app.feed.subscribe((rows) => dispatched.push(...rows.map((row) => row.progress))));
    const job = (await graphqlOk(t.url, CreateJobDocument, { input: { type: 'collect', displayTitle: 'x', steps } }, key)).createJob;
    await graphqlOk(t.url, UpdateJobProgressDocument, { input: { id: job.id, progress: 1 } }, key);
    await expect.poll(() => dispatched.includes(1), { timeout: 10_000 }).toBe(true);
    await graphqlOk(t.url, UpdateJobProgressDocument, { input: { id: job.id, progress: 2 } }, key);
    // The change's own position (the cursor the mutation answered may be lower, while older
    // transactions could still commit: resuming from that would rightly send it again).
    const after = positionOf(await (await t.app.database.prisma()).job.findUniqueOrThrow({ where: { id: job.id } })).toString();

    const socket = await TestSocket.open(t.url, { apiKey: key });
    cleanups.push(() => socket.close());
    socket.subscribe('1', WATCH, { after });
    const events = await openEventStream(t.url, key, `subscription { jobUpdated(after: "${after}") { id progress } }`);
    cleanups.push(() => events.close());
    // The premise: both subscriptions are in place while that change still waits to be dispatched.
    await expect.poll(() => t.app.webSockets.multiplexer.memberCount + t.app.live.streamCount).toBe(2);
    expect(dispatched).not.toContain(2);
    await expect.poll(() => dispatched.includes(2), { timeout: 10_000 }).toBe(true);

    await graphqlOk(t.url, UpdateJobProgressDocument, { input: { id: job.id, progress: 3 } }, key);
    const [update] = await socket.waitForNexts<Update>('1', 1);
    expect(update!.data.jobUpdated.progress).toBe(3);
    const [event] = await events.next<Update>(1);
    expect(event!.data.jobUpdated.progress).toBe(3);
  });

  it('closes a socket that sends a message over WS_MAX_PAYLOAD_BYTES with 1009', async () => {
    const t = await startTestApp({ env: { WS_MAX_PAYLOAD_BYTES: '2048' } });
    const key = await t.createKey('payload');
    const socket = await TestSocket.open(t.url, { apiKey: key });
    socket.subscribe('1', `subscription { jobUpdated(type: "${'x'.repeat(4096)}") { id } }`);
    expect((await socket.waitForClose()).code).toBe(1009);
  });

  it('drops a peer that stops answering pings', async () => {
    const t = await startTestApp({ env: { WS_KEEPALIVE_MS: '200' } });
    const key = await t.createKey('keepalive');
    const socket = await TestSocket.open(t.url, { apiKey: key });
    cleanups.push(() => socket.close());
    expect(t.app.webSockets.connectionCount).toBe(1);
    // A frozen peer: nothing it receives is read, so no pong comes back.
    (socket.socket as unknown as { _socket: net.Socket })._socket.pause();
    await expect.poll(() => t.app.webSockets.connectionCount, { timeout: 10_000 }).toBe(0);
  });

  it('admits replays through a bounded queue: waiting replays share one read, overflow is refused', async () => {
    const t = await startTestApp();
    const key = await t.createKey('stampede');
    const workspaceId = await workspaceIdOf(t.app.apiKeys, key);
    const jobs: JobRow[] = [];
    for (let i = 0; i < 3; i++) jobs.push(await t.app.jobs.create(workspaceId, { type: 'collect', displayTitle: `j${i}`, steps }));
    // Replays read below the horizon: a transaction of another test file still open on the cluster
    // would hold the new jobs back. Wait until nothing is held back.
    await settleFeed(t.app.feed);
    const queue = new ReplayQueue(t.app.changes, { concurrency: 1, maxQueued: 25, maxJobs: 100 });

    // A stampede: twenty resumptions at once, from different cursors.
    const afters = Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? 0n : positionOf(jobs[0]!)));
    const replays = await Promise.all(afters.map((after) => queue.replay(workspaceId, after)));
    replays.forEach((rows, i) => expect(rows.map((r) => r.id)).toEqual((i % 2 === 0 ? jobs : jobs.slice(1)).map((j) => j.id)));
    // The first read started at once; the nineteen that waited behind it shared the second.
    expect(queue.reads).toBe(2);

    const small = new ReplayQueue(t.app.changes, { concurrency: 1, maxQueued: 1, maxJobs: 100 });
    const outcomes = await Promise.allSettled([0, 1, 2].map(() => small.replay(workspaceId, 0n)));
    expect(outcomes.map((o) => o.status)).toEqual(['fulfilled', 'fulfilled', 'rejected']);
    expect((outcomes[2] as PromiseRejectedResult).reason).toMatchObject({ extensions: { code: 'OVERLOADED' } });

    const tiny = new ReplayQueue(t.app.changes, { concurrency: 1, maxQueued: 10, maxJobs: 2 });
    await expect(tiny.replay(workspaceId, 0n)).rejects.toMatchObject({ extensions: { code: 'BAD_USER_INPUT' } });
    expect((await tiny.replay(workspaceId, positionOf(jobs[0]!))).map((r) => r.id)).toEqual(jobs.slice(1).map((j) => j.id));
  });

  it('refuses a connection that does not initialise in time with 4408', async () => {
    const t = await startTestApp({ env: { WS_CONNECTION_INIT_TIMEOUT_MS: '200' } });
    const socket = await TestSocket.open(t.url, { init: false });
    expect((await socket.waitForClose()).code).toBe(4408);
  });

  it('on SIGTERM closes sockets with 1001 so clients reconnect elsewhere, then exits 0', async () => {
    const database = await freshDatabase();
    cleanups.push(() => database.drop());
    const setup = await startTestApp({ database });
    const key = await setup.createKey('sigterm');
    await setup.close();

    const gateway = await spawnGateway(database.env);
    cleanups.push(() => void (gateway.child.exitCode === null && gateway.child.kill('SIGKILL')));
    const socket = await TestSocket.open(gateway.url, { apiKey: key });
    socket.subscribe('1', WATCH, { after: '0' });
    gateway.child.kill('SIGTERM');
    expect(await socket.waitForClose()).toEqual({ code: 1001, reason: 'Going away' });
    expect(await gateway.exited).toBe(0);
  });
});

describePostgres('jobUpdated across gateway instances on one PostgreSQL', () => {
  it('a change written through one gateway process reaches a subscriber of another', async () => {
    const database = await freshDatabase();
    cleanups.push(() => database.drop());
    const first = await startTestApp({ database });
    const key = await first.createKey('two-instances');
    const second = await spawnGateway({ ...database.env, LOG_LEVEL: 'info' });
    cleanups.push(() => void (second.child.exitCode === null && second.child.kill('SIGKILL')));

    const socket = await TestSocket.open(first.url, { apiKey: key });
    cleanups.push(() => socket.close());
    const job = (await graphqlOk(second.url, CreateJobDocument, { input: { type: 'collect', displayTitle: 'elsewhere', steps } }, key)).createJob;
    // The creation, replayed, is the first message; then the live change from the other process.
    socket.subscribe('1', WATCH, { after: ((await positionOfJob(first, job.id)) - 1n).toString() });
    await socket.waitForNexts('1', 1);
    await graphqlOk(second.url, UpdateJobProgressDocument, { input: { id: job.id, progress: 42 } }, key);
    const updates = await socket.waitForNexts<Update>('1', 2);
    expect(updates.map((u) => [u.data.jobUpdated.id, u.data.jobUpdated.progress])).toEqual([
      [job.id, 0],
      [job.id, 42],
    ]);
    second.child.kill('SIGTERM');
    expect(await second.exited).toBe(0);
  });

  it('after its LISTEN connection is terminated, the feed reconnects and catches up on what it missed', async () => {
    // No backstop during the test: only the reconnect's catch-up can deliver the missed change.
    const t = await startTestApp({ env: NO_BACKGROUND_READS });
    const key = await t.createKey('reconnect');
    const job = (await graphqlOk(t.url, CreateJobDocument, { input: { type: 'collect', displayTitle: 'x', steps } }, key)).createJob;
    const socket = await TestSocket.open(t.url, { apiKey: key });
    cleanups.push(() => socket.close());
    socket.subscribe('1', WATCH, { after: job.changeCursor });

    const channel = `job_changes_${t.app.database.schema}`;
    const listeners = async () =>
      (await adminQuery(`SELECT pid FROM pg_stat_activity WHERE application_name = 'jobs-gateway-listener' AND query LIKE $1`, [`%${channel}%`])).rows.map(
        (r: { pid: number }) => r.pid,
      );
    const [before] = await listeners();
    expect(before).toBeDefined();
    await settleFeed(t.app.feed);
    // A write no one announces (plain SQL), in a transaction that commits while the listener is
    // gone or coming back. Written before the listener is terminated, so the first read after the
    // reconnect cannot come before it: that read finds it committed or held back by the open
    // transaction (and then looks again). With no background reads, nothing else would read it.
    const writer = new pg.Client({ connectionString: postgresUrl(), options: `-c search_path="${t.app.database.schema}"` });
    await writer.connect();
    cleanups.push(() => writer.end());
    await writer.query('BEGIN');
    await writer.query('UPDATE "Job" SET progress = 13 WHERE id = $1', [job.id]);
    await adminQuery('SELECT pg_terminate_backend($1)', [before]);
    await writer.query('COMMIT');

    const update = await socket.waitFor((m) => m.id === '1' && (m.payload as Update | undefined)?.data.jobUpdated.progress === 13, 15_000);
    expect((update.payload as Update).data.jobUpdated).toMatchObject({ id: job.id, progress: 13 });
    const after = await listeners();
    expect(after).toHaveLength(1);
    expect(after[0]).not.toBe(before);
  });
});
