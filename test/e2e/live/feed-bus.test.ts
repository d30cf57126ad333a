import net, { type AddressInfo } from 'node:net';
import { afterAll, expect, it, vi } from 'vitest';
import { CompleteJobDocument, CreateJobDocument, JobDocument, JobsDocument, UpdateJobProgressDocument } from '../../../src/graphql/operations.generated.js';
import type { FeedMode } from '../../../src/live/bus/bus-feed.js';
import { type FreshDatabase, adminQuery, describePostgres, freshDatabase } from '../../helpers/databases.js';
import { type GatewayProcess, spawnGateway } from '../../helpers/gateway-process.js';
import { settleFeed } from '../../helpers/feed.js';
import { graphqlOk } from '../../helpers/http.js';
import { type NatsServer, startNatsServer } from '../../helpers/nats-server.js';
import { type TestApp, startTestApp, workspaceIdOf } from '../../helpers/test-app.js';
import { TestSocket } from '../../helpers/ws-client.js';

const WATCH = 'subscription($after: String) { jobUpdated(after: $after) { id progress changeCursor } }';
const steps = [{ id: 'a', name: 'A' }];

interface Update {
  data: { jobUpdated: { id: string; progress: number; changeCursor: string } };
}

const cleanups: Array<() => Promise<void> | void> = [];
afterAll(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function modeOf(url: string): Promise<FeedMode | undefined> {
  const body = (await (await fetch(`${url}/readyz`)).json()) as { feed?: FeedMode };
  return body.feed;
}

async function waitForMode(url: string, mode: FeedMode, timeout = 15_000): Promise<void> {
  await vi.waitFor(async () => expect(await modeOf(url)).toBe(mode), { timeout, interval: 50 });
}

/** Per job, the cursors a subscription received grow: nothing twice, nothing out of order. */
function expectInOrderOnce(updates: Update[]): void {
  const byJob = new Map<string, bigint[]>();
  for (const { data } of updates) {
    const list = byJob.get(data.jobUpdated.id) ?? [];
    list.push(BigInt(data.jobUpdated.changeCursor));
    byJob.set(data.jobUpdated.id, list);
  }
  for (const cursors of byJob.values()) for (let i = 1; i < cursors.length; i++) expect(cursors[i]).toBeGreaterThan(cursors[i - 1]!);
}

const newestProgress = (updates: Update[]) => Object.fromEntries(updates.map((u) => [u.data.jobUpdated.id, u.data.jobUpdated.progress]));

async function createJobs(t: { url: string }, key: string, count: number) {
  const jobs = [];
  for (let i = 0; i < count; i++)
    jobs.push((await graphqlOk(t.url, CreateJobDocument, { input: { type: 'collect', displayTitle: `job ${i}`, steps } }, key)).createJob);
  return jobs;
}

/**
 * A NATS server and a database of the test's own, a first gateway that becomes the reader, then
 * `followers` more that follow it (each waited for).
 */
async function busCluster(
  followers: number,
): Promise<{ nats: NatsServer; database: FreshDatabase; env: { FEED_BUS: string }; reader: TestApp; others: TestApp[] }> {
  const nats = await startNatsServer();
  cleanups.push(() => nats.kill());
  const database = await freshDatabase();
  cleanups.push(() => database.drop());
  const env = { FEED_BUS: nats.url };
  const reader = await startTestApp({ database, env });
  cleanups.push(() => reader.close());
  await waitForMode(reader.url, 'reader');
  const others: TestApp[] = [];
  for (let i = 0; i < followers; i++) {
    const other = await startTestApp({ database, env });
    cleanups.push(() => other.close());
    others.push(other);
  }
  for (const other of others) await waitForMode(other.url, 'follower');
  return { nats, database, env, reader, others };
}

describePostgres('FEED_BUS: one feed reader, the bus to the others', () => {
  it('elects one reader; followers take only the workspaces they watch from the bus, read no feed and send no NOTIFY', async () => {
    const { reader, others } = await busCluster(2);
    const [watching, writing] = others as [TestApp, TestApp];
    expect(await (await fetch(`${watching.url}/readyz`)).json()).toEqual({ status: 'ready', database: 'postgres', feed: 'follower' });

    const key = await reader.createKey('bus');
    const otherKey = await reader.createKey('bus-elsewhere');
    const [job] = await createJobs(writing, key, 1);
    const [elsewhere] = await createJobs(writing, otherKey, 1);
    const socket = await TestSocket.open(watching.url, { apiKey: key });
    cleanups.push(() => socket.close());
    socket.subscribe('1', WATCH, { after: job!.changeCursor });
    await vi.waitFor(() => expect(watching.app.busFeed!.stats().watched).toBe(1));
    expect(writing.app.busFeed!.stats().watched).toBe(0);
    const feedReads = { watching: watching.app.feed.reads, writing: writing.app.feed.reads };

    // Through another follower, then as another program would write (the reader's catch-up finds it).
    await graphqlOk(writing.url, UpdateJobProgressDocument, { input: { id: job!.id, progress: 42 } }, key);
    await graphqlOk(writing.url, UpdateJobProgressDocument, { input: { id: elsewhere!.id, progress: 99 } }, otherKey);
    await socket.waitFor((m) => (m.payload as Update | undefined)?.data.jobUpdated.progress === 42);
    await adminQuery('UPDATE "Job" SET progress = 77 WHERE id = $1', [job!.id], reader.app.database.schema);
    await socket.waitFor((m) => (m.payload as Update | undefined)?.data.jobUpdated.progress === 77);

    const updates = socket.nexts<Update>('1');
    expect(updates.every((u) => u.data.jobUpdated.id === job!.id)).toBe(true);
    expectInOrderOnce(updates);
    // The followers read nothing through the feed: the reader did, once for all.
    expect({ watching: watching.app.feed.reads, writing: writing.app.feed.reads }).toEqual(feedReads);
    expect(reader.app.feed.reads).toBeGreaterThan(0);
    for (const t of [reader, watching, writing]) expect(t.app.feed.stats().announcements).toBe(0);
    const metrics = await (await fetch(`${watching.url}/metrics`)).text();
    expect(metrics).toMatch(/^jobs_gateway_feed_mode\{mode="follower"\} 1$/m);
    expect(metrics).toMatch(/^jobs_gateway_feed_bus_watched_workspaces 1$/m);

    // The last subscriber gone, the follower drops the workspace's subject.
    socket.close();
    await vi.waitFor(() => expect(watching.app.busFeed!.stats().watched).toBe(0));
  });

  it('when the reader is killed another one reads, and a follower’s subscriber gets every job’s final state, in order, nothing twice', async () => {
    const nats = await startNatsServer();
    cleanups.push(() => nats.kill());
    const database = await freshDatabase();
    cleanups.push(() => database.drop());
    const env = { FEED_BUS: nats.url };
    const first: GatewayProcess = await spawnGateway({ ...database.env, ...env, LOG_LEVEL: 'info' });
    cleanups.push(() => void (first.child.exitCode === null && first.child.kill('SIGKILL')));
    await waitForMode(first.url, 'reader');
    const watching: TestApp = await startTestApp({ database, env });
    const writing: TestApp = await startTestApp({ database, env });
    cleanups.push(
      () => watching.close(),
      () => writing.close(),
    );
    await waitForMode(watching.url, 'follower');
    await waitForMode(writing.url, 'follower');

    const key = await watching.createKey('failover');
    const jobs = await createJobs(writing, key, 5);
    const socket = await TestSocket.open(watching.url, { apiKey: key });
    cleanups.push(() => socket.close());
    socket.subscribe('1', WATCH, { after: jobs[0]!.changeCursor });

    const expected: Record<string, number> = {};
    for (let round = 1; round <= 30; round++) {
      if (round === 10) first.child.kill('SIGKILL');
      for (const job of jobs) {
        await graphqlOk(writing.url, UpdateJobProgressDocument, { input: { id: job.id, progress: round } }, key);
        expected[job.id] = round;
      }
    }
    await vi.waitFor(async () => expect([await modeOf(watching.url), await modeOf(writing.url)].sort()).toEqual(['follower', 'reader']), { timeout: 15_000 });
    await vi.waitFor(() => expect(newestProgress(socket.nexts<Update>('1'))).toEqual(expected), { timeout: 15_000 });
    expectInOrderOnce(socket.nexts<Update>('1'));
  });

  it('keeps the response cache and remembered jobs true on every instance: the reader’s unwatched workspaces, a workspace watched again, a job completed elsewhere', async () => {
    const { reader, others } = await busCluster(2);
    const [watching, writing] = others as [TestApp, TestApp];
    const key = await reader.createKey('cache');
    const workspaceId = await workspaceIdOf(reader.app.apiKeys, key);
    const [job] = await createJobs(writing, key, 1);
    const progressOn = async (t: TestApp) => (await graphqlOk(t.url, JobDocument, { id: job!.id }, key)).job!.progress;

    const listOn = async (t: TestApp) => (await graphqlOk(t.url, JobsDocument, {}, key)).jobs.map((j) => j.progress);

    // The reader serves a workspace nobody watches from its cache (the list) and memory (the job);
    // a write elsewhere must reach both.
    // (Once the reader has dispatched the creation, which would drop what it cached before.)
    await settleFeed(reader.app.feed);
    expect(await listOn(reader)).toEqual([0]);
    expect(await listOn(reader)).toEqual([0]);
    expect(reader.app.responses!.hits).toBeGreaterThan(0);
    expect(await progressOn(reader)).toBe(0);
    await graphqlOk(writing.url, UpdateJobProgressDocument, { input: { id: job!.id, progress: 11 } }, key);
    await vi.waitFor(async () => expect([await listOn(reader), await progressOn(reader)]).toEqual([[11], 11]), { timeout: 5_000 });

    // A follower caches the list while it watches; stops watching; the job changes; it watches again.
    const watch = async () => {
      const socket = await TestSocket.open(watching.url, { apiKey: key });
      cleanups.push(() => socket.close());
      socket.subscribe('1', WATCH, {});
      await vi.waitFor(() => expect(watching.app.busFeed!.inStep(workspaceId)).toBe(true));
      return socket;
    };
    let socket = await watch();
    expect(await listOn(watching)).toEqual([11]);
    expect(await listOn(watching)).toEqual([11]);
    socket.close();
    await vi.waitFor(() => expect(watching.app.busFeed!.stats().watched).toBe(0));
    await graphqlOk(writing.url, UpdateJobProgressDocument, { input: { id: job!.id, progress: 22 } }, key);
    socket = await watch();
    expect(await listOn(watching)).toEqual([22]);

    // A job this follower wrote (so remembers), completed through another instance: its job read says so.
    await graphqlOk(watching.url, UpdateJobProgressDocument, { input: { id: job!.id, progress: 33 } }, key);
    await graphqlOk(writing.url, CompleteJobDocument, { id: job!.id }, key);
    await socket.waitFor((m) => (m.payload as { data?: { jobUpdated?: { progress?: number } } } | undefined)?.data?.jobUpdated?.progress === 100);
    expect((await graphqlOk(watching.url, JobDocument, { id: job!.id }, key)).job).toMatchObject({ status: 'COMPLETED', progress: 100 });
  });

  it('an instance that cannot reach the bus never becomes the reader: those that can elect one among themselves', async () => {
    const nats = await startNatsServer();
    cleanups.push(() => nats.kill());
    // A port where something accepts and hangs up at once: no NATS server there.
    const nowhere = net.createServer((connection) => connection.destroy());
    await new Promise<void>((resolve) => nowhere.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise<void>((resolve) => nowhere.close(() => resolve())));
    const database = await freshDatabase();
    cleanups.push(() => database.drop());
    // First to start, with a bus that does not answer.
    const cutOff = await startTestApp({ database, env: { FEED_BUS: `nats://127.0.0.1:${(nowhere.address() as AddressInfo).port}` } });
    cleanups.push(() => cutOff.close());
    const [a, b] = [await startTestApp({ database, env: { FEED_BUS: nats.url } }), await startTestApp({ database, env: { FEED_BUS: nats.url } })];
    cleanups.push(
      () => a.close(),
      () => b.close(),
    );
    await vi.waitFor(async () => expect([await modeOf(a.url), await modeOf(b.url)].sort()).toEqual(['follower', 'reader']), { timeout: 15_000 });
    expect(await modeOf(cutOff.url)).toBe('fallback');
    // Its subscribers still hear every change (it reads the feed itself), here one written through the reader.
    const key = await a.createKey('cut-off');
    const [job] = await createJobs(a, key, 1);
    const socket = await TestSocket.open(cutOff.url, { apiKey: key });
    cleanups.push(() => socket.close());
    socket.subscribe('1', WATCH, { after: job!.changeCursor });
    await graphqlOk(a.url, UpdateJobProgressDocument, { input: { id: job!.id, progress: 5 } }, key);
    await socket.waitFor((m) => (m.payload as Update | undefined)?.data.jobUpdated.progress === 5);
  });

  it('while the bus is unreachable every instance reads the feed itself and says so; once it is back nothing was lost', async () => {
    const { nats, reader, others } = await busCluster(1);
    const [watching] = others as [TestApp];

    const key = await reader.createKey('outage');
    const [job] = await createJobs(reader, key, 1);
    const socket = await TestSocket.open(watching.url, { apiKey: key });
    cleanups.push(() => socket.close());
    socket.subscribe('1', WATCH, { after: job!.changeCursor });
    await vi.waitFor(() => expect(watching.app.busFeed!.stats().watched).toBe(1));

    await nats.kill();
    await waitForMode(watching.url, 'fallback');
    await waitForMode(reader.url, 'fallback');
    expect((await (await fetch(`${watching.url}/readyz`)).json()) as unknown).toEqual({ status: 'ready', database: 'postgres', feed: 'fallback' });
    // Written through the other instance during the outage: it announces with NOTIFY again.
    await graphqlOk(reader.url, UpdateJobProgressDocument, { input: { id: job!.id, progress: 10 } }, key);
    await socket.waitFor((m) => (m.payload as Update | undefined)?.data.jobUpdated.progress === 10);
    expect(reader.app.feed.stats().announcements).toBeGreaterThan(0);

    // Back: both contend again, and either may read now.
    await nats.restart();
    await vi.waitFor(async () => expect([await modeOf(reader.url), await modeOf(watching.url)].sort()).toEqual(['follower', 'reader']), { timeout: 15_000 });
    await graphqlOk(reader.url, UpdateJobProgressDocument, { input: { id: job!.id, progress: 20 } }, key);
    await socket.waitFor((m) => (m.payload as Update | undefined)?.data.jobUpdated.progress === 20);
    expectInOrderOnce(socket.nexts<Update>('1'));
    // The creation may come first: its cursor was handed out before the feed knew it final (see infra.test.ts).
    expect(
      socket
        .nexts<Update>('1')
        .map((u) => u.data.jobUpdated.progress)
        .filter((progress) => progress !== 0),
    ).toEqual([10, 20]);
  });
});
