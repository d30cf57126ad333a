import fc from 'fast-check';
import { afterAll, expect, it } from 'vitest';
import { positionOf } from '../../../src/jobs/change-position.js';
import type { JobRow } from '../../../src/jobs/model.js';
import { scrape } from '../../helpers/metrics.js';
import { describeDb, sqlAsAnotherProgram } from '../../helpers/databases.js';
import { type TestApp, startTestApp, workspaceIdOf } from '../../helpers/test-app.js';
import { TestSocket } from '../../helpers/ws-client.js';

/**
 * WS_MAX_BUFFERED_BYTES and WS_SLOW_CONSUMER_TIMEOUT_MS as a reader sees them: a reader that keeps
 * up gets every state however large the burst; one that stops reading is closed with 4008, and
 * holds a bounded amount of the server's memory until then.
 */

const WATCH = 'subscription($after: String) { jobUpdated(after: $after) { id progress metadata changeCursor } }';
const steps = [{ id: 'a', name: 'A' }];

interface Update {
  data: { jobUpdated: { id: string; progress: number; metadata: { blob?: string }; changeCursor: string } };
}

const cleanups: Array<() => Promise<void> | void> = [];
afterAll(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function openSocket(t: TestApp, key: string): Promise<TestSocket> {
  const socket = await TestSocket.open(t.url, { apiKey: key });
  cleanups.push(() => socket.close());
  return socket;
}

/** The newest state each job reached over the socket's subscription `id`. */
function newestById(socket: TestSocket, id: string): Map<string, Update['data']['jobUpdated']> {
  const newest = new Map<string, Update['data']['jobUpdated']>();
  for (const { data } of socket.nexts<Update>(id)) newest.set(data.jobUpdated.id, data.jobUpdated);
  return newest;
}

async function createJobs(t: TestApp, workspaceId: string, count: number, blobBytes: number): Promise<JobRow[]> {
  const jobs: JobRow[] = [];
  for (let i = 0; i < count; i++) {
    jobs.push(await t.app.jobs.create(workspaceId, { type: 'collect', displayTitle: `job ${i}`, steps, metadata: { blob: `${i}:${'x'.repeat(blobBytes)}` } }));
  }
  return jobs;
}

/**
 * A gateway with a 16 KiB buffer per socket and `slowConsumerTimeoutMs`, one job, and a subscriber
 * that is live on it (its creation replayed as the first message). Keepalive is off: a reader that
 * stops must be closed by the slow-consumer rule, not by a missed pong.
 */
async function liveReaderOfOneJob(slowConsumerTimeoutMs: string) {
  const t = await startTestApp({ env: { WS_MAX_BUFFERED_BYTES: '16384', WS_SLOW_CONSUMER_TIMEOUT_MS: slowConsumerTimeoutMs, WS_KEEPALIVE_MS: '0' } });
  const key = await t.createKey('one-job');
  const workspaceId = await workspaceIdOf(t.app.apiKeys, key);
  const [job] = await createJobs(t, workspaceId, 1, 10);
  const socket = await openSocket(t, key);
  socket.subscribe('1', WATCH, { after: (positionOf(job!) - 1n).toString() });
  await socket.waitForNexts('1', 1);
  return { t, key, workspaceId, job: job!, socket };
}

describeDb('slow consumers (WS_MAX_BUFFERED_BYTES, WS_SLOW_CONSUMER_TIMEOUT_MS)', () => {
  // Up to 4 × 200 jobs created first: on the embedded database under the full suite's load, that alone takes a while.
  it('a reader that keeps up gets a resume many times larger than the buffer whole, never 4008', { timeout: 180_000 }, async () => {
    const t = await startTestApp({ env: { WS_MAX_BUFFERED_BYTES: '16384' } });
    // A workspace per run: fast-check may draw the same pair twice, and a workspace named after it
    // would then hold both runs' jobs.
    let run = 0;
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 20, max: 200 }), fc.integer({ min: 1024, max: 16 * 1024 }), async (count, blobBytes) => {
        const key = await t.createKey(`resume-${++run}-${count}-${blobBytes}`);
        const workspaceId = await workspaceIdOf(t.app.apiKeys, key);
        const jobs = await createJobs(t, workspaceId, count, blobBytes);
        // The premise: far more than WS_MAX_BUFFERED_BYTES, sent at once.
        expect(count * blobBytes).toBeGreaterThan(16384);
        const socket = await openSocket(t, key);
        socket.subscribe('1', WATCH, { after: '0' });
        await socket.waitForNexts('1', count, 60_000);
        expect(socket.closed).toBeUndefined();
        const received = newestById(socket, '1');
        expect([...received.keys()].sort()).toEqual(jobs.map((job) => job.id).sort());
        for (const job of jobs) expect(received.get(job.id)!.metadata).toEqual(job.metadata);
        socket.close();
      }),
      { numRuns: 4 },
    );
  });

  it("a resume streams at the reader's pace: a stopped reader holds one waiting state, not the replay", { timeout: 120_000 }, async () => {
    const t = await startTestApp({ env: { WS_MAX_BUFFERED_BYTES: '16384', WS_KEEPALIVE_MS: '0' } });
    const key = await t.createKey('paced');
    const workspaceId = await workspaceIdOf(t.app.apiKeys, key);
    // 200 jobs of 60 KB: 12 MB, past what loopback's buffers absorb.
    const jobs = await createJobs(t, workspaceId, 200, 60 * 1024);
    const socket = await openSocket(t, key);
    socket.stopReading();
    let most = 0;
    const sample = setInterval(() => (most = Math.max(most, t.app.webSockets.backlog.pendingBytes)), 5);
    cleanups.push(() => clearInterval(sample));
    socket.subscribe('1', WATCH, { after: '0' });
    // The premise: the reader's buffers are full and the replay waits for it.
    await expect.poll(() => t.app.webSockets.backlog.waitingSockets, { timeout: 10_000 }).toBe(1);
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(socket.nexts('1').length).toBeLessThan(jobs.length);
    clearInterval(sample);
    expect(most).toBeLessThan(2 * 62 * 1024);
    socket.resumeReading();
    await socket.waitForNexts('1', jobs.length, 30_000);
    expect([...newestById(socket, '1').keys()].sort()).toEqual(jobs.map((job) => job.id).sort());
  });

  it('a live reader that keeps up gets every job of a bulk SQL update larger than the buffer, never 4008', { timeout: 120_000 }, async () => {
    const t = await startTestApp({ env: { WS_MAX_BUFFERED_BYTES: '16384' } });
    const key = await t.createKey('bulk');
    const workspaceId = await workspaceIdOf(t.app.apiKeys, key);
    const jobs = await createJobs(t, workspaceId, 300, 8 * 1024);
    const socket = await openSocket(t, key);
    socket.subscribe('1', WATCH, { after: positionOf(jobs.at(-1)!).toString() });
    // Every job moves in one statement: one dispatch of 300 states of 8 KB to this socket.
    await sqlAsAnotherProgram(
      t.app.database,
      `UPDATE "Job" SET progress = 50, metadata = jsonb_build_object('blob', repeat('y', 8192) || id::text) WHERE "workspaceId" = $1`,
      [workspaceId],
    );
    await expect.poll(() => [...newestById(socket, '1').values()].filter((job) => job.progress === 50).length, { timeout: 30_000 }).toBe(300);
    for (const [id, job] of newestById(socket, '1')) expect(job.metadata.blob).toBe(`${'y'.repeat(8192)}${id}`);
    expect(socket.closed).toBeUndefined();
  });

  it('a reader that pauses for less than the timeout is not closed, and gets the newest state', async () => {
    const { t, workspaceId, job, socket } = await liveReaderOfOneJob('5000');
    socket.stopReading();
    // More than loopback's socket buffers absorb (about 10 MB), so the server's own buffer fills.
    const blob = 'x'.repeat(60 * 1024);
    for (let progress = 1; progress <= 300; progress++) {
      await t.app.jobs.updateProgress(workspaceId, job.id, { progress: Math.ceil(progress / 3), metadata: { blob: `${progress}${blob}` } });
      await t.app.feed.poke();
    }
    // The states waiting for this reader merged into the newest: it holds one frame, not hundreds.
    expect(t.app.webSockets.backlog.pendingBytes).toBeLessThan(2 * blob.length);
    socket.resumeReading();
    await expect.poll(() => socket.nexts<Update>('1').at(-1)?.data.jobUpdated.metadata.blob, { timeout: 30_000 }).toBe(`300${blob}`);
    expect(socket.closed).toBeUndefined();
    expect(socket.nexts('1').length).toBeLessThan(301);
    await expect.poll(() => t.app.webSockets.backlog.pendingBytes).toBe(0);
  });

  it(
    'states that waited for a slow reader go out in position order, so a resume from the largest cursor received misses nothing',
    { timeout: 60_000 },
    async () => {
      const { t, workspaceId, job: first, socket } = await liveReaderOfOneJob('20000');
      const [second] = await createJobs(t, workspaceId, 1, 10);
      await socket.waitForNexts('1', 2);
      socket.stopReading();
      // The first job fills the socket's buffers, so its states wait (it is the oldest key waiting);
      // then the second job changes once and the first once more.
      const blob = 'x'.repeat(60 * 1024);
      for (let i = 1; i <= 300; i++) {
        await t.app.jobs.updateProgress(workspaceId, first.id, { metadata: { blob: `${i}${blob}` } });
        await t.app.feed.poke();
      }
      await t.app.jobs.updateProgress(workspaceId, second!.id, { progress: 50 });
      await t.app.feed.poke();
      await t.app.jobs.updateProgress(workspaceId, first.id, { progress: 60, metadata: { blob: `last${blob}` } });
      await t.app.feed.poke();
      // The premise: both jobs' newest states wait, merged.
      expect(t.app.webSockets.backlog.pendingBytes).toBeGreaterThan(blob.length);
      socket.resumeReading();
      await expect.poll(() => socket.nexts<Update>('1').at(-1)?.data.jobUpdated.metadata.blob, { timeout: 30_000 }).toBe(`last${blob}`);
      // Were the first job's newest state sent first (its key waited longest), a client cut off
      // right after it would resume past the second job's change and never get it.
      const cursors = socket.nexts<Update>('1').map((next) => BigInt(next.data.jobUpdated.changeCursor));
      expect(cursors.every((cursor, i) => i === 0 || cursor > cursors[i - 1]!)).toBe(true);
      expect(newestById(socket, '1').get(second!.id)?.progress).toBe(50);
    },
  );

  it('a reader that stops reading is closed with 4008 after the timeout, and resumes with after', async () => {
    const { t, key, workspaceId, job, socket } = await liveReaderOfOneJob('300');
    socket.stopReading();
    // Updates keep coming, more than loopback's buffers absorb, while the reader takes nothing.
    const blob = 'x'.repeat(60 * 1024);
    let updates = 0;
    let most = 0;
    while (t.app.webSockets.backlog.slowConsumerCloses === 0) {
      expect(updates).toBeLessThan(3_000);
      updates++;
      await t.app.jobs.updateProgress(workspaceId, job.id, { metadata: { blob: `${updates}${blob}` } });
      await t.app.feed.poke();
      // The embedded database answers in microtasks: let timers (the sender's flush) run between writes.
      await new Promise((resolve) => setTimeout(resolve, 1));
      most = Math.max(most, t.app.webSockets.backlog.pendingBytes);
    }
    // Meanwhile its waiting states merged into one frame, and went when it was closed.
    expect(most).toBeLessThan(2 * blob.length);
    expect(t.app.webSockets.backlog.pendingBytes).toBe(0);
    socket.resumeReading();
    expect((await socket.waitForClose(15_000)).code).toBe(4008);
    const last = socket.nexts<Update>('1').at(-1)!.data.jobUpdated;
    expect(socket.nexts('1').length).toBeLessThan(updates + 1);

    // What the close message asks for: resume with the last cursor received, and get the newest state.
    const again = await openSocket(t, key);
    again.subscribe('1', WATCH, { after: last.changeCursor });
    await expect.poll(() => again.nexts<Update>('1').at(-1)?.data.jobUpdated.metadata.blob, { timeout: 15_000 }).toBe(`${updates}${blob}`);
  });

  it(
    'when what waits passes 256 buffers, the stalled reader holding the most is closed before its timeout; a reader that keeps up is not',
    { timeout: 120_000 },
    async () => {
      const t = await startTestApp({ env: { WS_MAX_BUFFERED_BYTES: '16384', WS_SLOW_CONSUMER_TIMEOUT_MS: '600000', WS_KEEPALIVE_MS: '0' } });
      const key = await t.createKey('many');
      const workspaceId = await workspaceIdOf(t.app.apiKeys, key);
      const jobs = await createJobs(t, workspaceId, 250, 10);
      const after = positionOf(jobs.at(-1)!).toString();
      const stopped = await openSocket(t, key);
      const reading = await openSocket(t, key);
      stopped.subscribe('1', WATCH, { after });
      reading.subscribe('1', WATCH, { after });
      await expect.poll(() => t.app.webSockets.multiplexer.memberCount).toBe(2);
      stopped.stopReading();
      // 250 distinct jobs of 60 KB (15 MB, past loopback's buffers and the 4 MiB bound): nothing merges.
      await sqlAsAnotherProgram(
        t.app.database,
        `UPDATE "Job" SET progress = 9, metadata = jsonb_build_object('blob', repeat('z', 61440)) WHERE "workspaceId" = $1`,
        [workspaceId],
      );
      await expect.poll(() => t.app.webSockets.backlog.slowConsumerCloses, { timeout: 30_000 }).toBe(1);
      expect(t.app.webSockets.backlog.maxPendingBytes).toBe(256 * 16384);
      expect((await scrape(t.url)).value('jobs_gateway_websocket_slow_consumer_closes_total')).toBe(1);
      await expect.poll(() => [...newestById(reading, '1').values()].filter((job) => job.progress === 9).length, { timeout: 30_000 }).toBe(250);
      expect(reading.closed).toBeUndefined();
      await expect.poll(() => t.app.webSockets.backlog.pendingBytes, { timeout: 10_000 }).toBe(0);
      expect((await scrape(t.url)).value('jobs_gateway_websocket_pending_bytes')).toBe(0);
      stopped.resumeReading();
      expect((await stopped.waitForClose(15_000)).code).toBe(4008);
    },
  );
});
