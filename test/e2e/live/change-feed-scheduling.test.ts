import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, expect, it, vi } from 'vitest';
import { loadConfig } from '../../../src/config.js';
import type { Database } from '../../../src/db/database.js';
import { openMigratedDatabase } from '../../../src/db/migrate.js';
import { ChangeLog } from '../../../src/jobs/change-log.js';
import { FeedFrontier } from '../../../src/jobs/feed-frontier.js';
import { JobStore } from '../../../src/jobs/job-store.js';
import type { JobRow } from '../../../src/jobs/model.js';
import { RememberedJobs } from '../../../src/jobs/remembered-jobs.js';
import { HELD_BACK_RETRY_MS } from '../../../src/limits/fixed.js';
import { ChangeFeed, type ChangeFeedOptions } from '../../../src/live/change-feed.js';
import { WriteAnnouncer } from '../../../src/live/write-announcer.js';
import { createLogger } from '../../../src/logger.js';
import { type FreshDatabase, describeDb, describePostgres, freshDatabase } from '../../helpers/databases.js';
import { oneStepJob } from '../../helpers/jobs.js';
import { postgresUrl } from '../../helpers/postgres.js';
import { turns } from '../../helpers/turns.js';

// When the change feed reads: at once after a quiet spell, `coalesceMs` after the end of a
// dispatch's writes while changes keep coming, page after page without a pause, at every catch-up
// interval, and with a doubling pause while a transaction holds changes back. The reads are real
// (a database of the test's own); time is fake, and moves only when the test moves it.
//
// The feed's timers are setTimeout and setInterval; its clock is `performance.now()` imported from
// node:perf_hooks, which vi.useFakeTimers({ toFake: ['performance'] }) does not reach (it replaces
// the global `performance`, not the object the module holds). So Date is faked, and that object's
// `now` is made to follow it. setImmediate stays real: the database's I/O and the feed's
// end-of-dispatch step run on it.

const logger = createLogger('silent');
const COALESCE_MS = 50;
/** Far beyond what the tests advance, unless a test is about the catch-up. */
const NO_CATCH_UP_MS = 3_600_000;

let fresh: FreshDatabase;
let database: Database;
let workspaceId: string;

interface Running {
  feed: ChangeFeed;
  jobs: JobStore;
  changes: ChangeLog;
  /** Every dispatch, in order. */
  dispatches: JobRow[][];
  /** Resolves once `count` dispatches in all have been made. */
  dispatched: (count: number) => Promise<JobRow[][]>;
  /** Holds the writes of the next dispatch (its listener's promise) until `release` is called. */
  holdNextDispatch: () => { release: () => void };
}

const started: ChangeFeed[] = [];

/** A change feed of its own on the test's database, with fake time from before it starts. */
async function startFeed(options: Partial<ChangeFeedOptions> = {}): Promise<Running> {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'] });
  const origin = Date.now();
  vi.spyOn(performance, 'now').mockImplementation(() => Date.now() - origin);

  const frontier = new FeedFrontier();
  const remembered = new RememberedJobs();
  const jobs = new JobStore(database.sql, frontier, remembered, { heartbeatTimeoutMs: 300_000, idempotencyTtlMs: 86_400_000 });
  const changes = new ChangeLog(database.sql, frontier, remembered);
  // Not following the store: no announcements, so that only the feed's own schedule starts reads.
  const announcer = new WriteAnnouncer(database, COALESCE_MS, logger);
  const feed = new ChangeFeed(database, changes, jobs, announcer, frontier, logger, {
    catchUpIntervalMs: NO_CATCH_UP_MS,
    pageSize: 500,
    coalesceMs: COALESCE_MS,
    ...options,
  });
  started.push(feed);

  const dispatches: JobRow[][] = [];
  const waiters = new Set<() => void>();
  let hold: Promise<void> | undefined;
  feed.subscribe((rows) => {
    dispatches.push(rows);
    for (const waiter of [...waiters]) waiter();
    const held = hold;
    hold = undefined;
    return held;
  });
  await feed.start();
  // Starting wakes the feed (its LISTEN is up): that read finds only history.
  await feed.poke();
  await turns(2);
  expect(dispatches).toEqual([]);

  return {
    feed,
    jobs,
    changes,
    dispatches,
    dispatched: (count) =>
      new Promise((resolve) => {
        const check = () => {
          if (dispatches.length < count) return;
          waiters.delete(check);
          resolve(dispatches);
        };
        waiters.add(check);
        check();
      }),
    holdNextDispatch: () => {
      let release!: () => void;
      hold = new Promise<void>((resolve) => (release = resolve));
      return { release: () => release() };
    },
  };
}

/**
 * Lets the end of a dispatch run: its listeners' promises settle, then (on setImmediate) the feed
 * notes when its writes were done. Two turns: the feed's setImmediate is queued in the first.
 */
const dispatchEnded = () => turns(2);

const idsOf = (rows: JobRow[]) => rows.map((row) => row.id);

describeDb('the change feed’s schedule', () => {
  beforeAll(async () => {
    fresh = await freshDatabase();
    const config = loadConfig({ ...fresh.env });
    database = await openMigratedDatabase(
      { databaseUrl: config.databaseUrl, schema: config.databaseSchema, dataDir: config.dataDir, timeouts: config.databaseTimeouts },
      logger,
    );
    ({ id: workspaceId } = await (await database.prisma()).workspace.create({ data: { slug: 'feed-scheduling' } }));
  });
  afterEach(async () => {
    vi.useRealTimers();
    vi.restoreAllMocks();
    await Promise.all(started.splice(0).map((feed) => feed.stop()));
  });
  afterAll(async () => {
    await database?.close();
    await fresh?.drop();
  });

  it('reads at once when a write comes after a quiet spell', async () => {
    const { feed, jobs, dispatched } = await startFeed();
    const reads = feed.reads;
    const job = await jobs.create(workspaceId, oneStepJob());
    // No time has passed: the write itself started the read.
    expect(feed.reads).toBe(reads + 1);
    const [first] = await dispatched(1);
    expect(idsOf(first!)).toEqual([job.id]);
  });

  it('reads what follows a dispatch coalesceMs after its writes ended, all of it in one read and one dispatch', async () => {
    const { feed, jobs, dispatched } = await startFeed();
    await jobs.create(workspaceId, oneStepJob());
    await dispatched(1);
    await dispatchEnded();

    const reads = feed.reads;
    const following = [];
    for (let i = 0; i < 3; i++) following.push(await jobs.create(workspaceId, oneStepJob({ displayTitle: `Following ${i}` })));
    expect(feed.reads).toBe(reads);
    vi.advanceTimersByTime(COALESCE_MS - 1);
    expect(feed.reads).toBe(reads);
    vi.advanceTimersByTime(1);
    expect(feed.reads).toBe(reads + 1);
    const [, second] = await dispatched(2);
    expect(idsOf(second!)).toEqual(idsOf(following));
    await dispatchEnded();
    expect(feed.reads).toBe(reads + 1);
  });

  it('waits for the writes of a dispatch to end before the next read, and then coalesceMs more', async () => {
    const { feed, jobs, dispatched, holdNextDispatch } = await startFeed();
    const writing = holdNextDispatch();
    await jobs.create(workspaceId, oneStepJob());
    await dispatched(1);

    const reads = feed.reads;
    const next = await jobs.create(workspaceId, oneStepJob({ displayTitle: 'Next' }));
    vi.advanceTimersByTime(10 * COALESCE_MS);
    await turns(2);
    expect(feed.reads).toBe(reads);

    writing.release();
    await dispatchEnded();
    expect(feed.reads).toBe(reads);
    vi.advanceTimersByTime(COALESCE_MS - 1);
    expect(feed.reads).toBe(reads);
    vi.advanceTimersByTime(1);
    expect(feed.reads).toBe(reads + 1);
    const [, second] = await dispatched(2);
    expect(idsOf(second!)).toEqual([next.id]);
  });

  it('reads at every catch-up interval what nothing announced, such as another program’s SQL', async () => {
    const catchUpIntervalMs = 1_000;
    const { feed, jobs, dispatched } = await startFeed({ catchUpIntervalMs });
    const job = await jobs.create(workspaceId, oneStepJob());
    await dispatched(1);
    await dispatchEnded();
    // The read started at once: the feed's catch-up clock still stands where it started.

    await database.sql.query('UPDATE "Job" SET progress = 42 WHERE id = $1', [job.id]);
    const reads = feed.reads;
    vi.advanceTimersByTime(catchUpIntervalMs - 1);
    expect(feed.reads).toBe(reads);
    vi.advanceTimersByTime(1);
    expect(feed.reads).toBe(reads + 1);
    const [, caughtUp] = await dispatched(2);
    expect(caughtUp!.map((row) => [row.id, row.progress])).toEqual([[job.id, 42]]);

    // Nothing changed since: the next interval reads, and dispatches nothing.
    await dispatchEnded();
    vi.advanceTimersByTime(catchUpIntervalMs);
    expect(feed.reads).toBe(reads + 2);
  });

  it('reads a burst larger than a page one page after the other, without waiting in between', async () => {
    const catchUpIntervalMs = 1_000;
    const { feed, dispatched } = await startFeed({ catchUpIntervalMs, pageSize: 2 });
    await database.sql.query(
      `INSERT INTO "Job"(id, "workspaceId", type, "displayTitle") SELECT gen_random_uuid(), $1, 'burst', 'Burst ' || g FROM generate_series(1, 5) g`,
      [workspaceId],
    );
    const reads = feed.reads;
    vi.advanceTimersByTime(catchUpIntervalMs);
    const pages = await dispatched(3);
    expect(pages.map((rows) => rows.length)).toEqual([2, 2, 1]);
    expect(pages.flat().map((row) => row.displayTitle)).toEqual(['Burst 1', 'Burst 2', 'Burst 3', 'Burst 4', 'Burst 5']);
    expect(feed.reads).toBe(reads + 3);
  });

  describePostgres('while a transaction holds changes back', () => {
    let client: pg.Client;
    beforeAll(async () => {
      client = new pg.Client({ connectionString: postgresUrl(), options: `-c search_path="${database.schema}"` });
      await client.connect();
    });
    afterAll(() => client?.end());

    it('looks again after max(HELD_BACK_RETRY_MS.first, coalesceMs), doubling up to HELD_BACK_RETRY_MS.max, until the transaction ends', async () => {
      expect([HELD_BACK_RETRY_MS.first, COALESCE_MS, HELD_BACK_RETRY_MS.max]).toEqual([5, 50, 1_000]);
      const [holder, waiting] = await database.sql.query<{ id: string }>(
        `INSERT INTO "Job"(id, "workspaceId", type, "displayTitle") SELECT gen_random_uuid(), $1, 'held', 'Held ' || g FROM generate_series(1, 2) g RETURNING id`,
        [workspaceId],
      );
      const { feed, jobs, changes, dispatched } = await startFeed();
      const readsBefore = feed.reads;
      const feedReads = vi.spyOn(changes, 'feedChanges');
      /** Resolves once the feed's latest read has finished (and set its next timer, if any). */
      const readFinished = async () => {
        while (feedReads.mock.results.length < feed.reads - readsBefore) await turns();
        await feedReads.mock.results.at(-1)?.value;
        await turns();
      };

      // Another program's transaction writes a job of the workspace and stays open; a later change of
      // the workspace commits through the store, and must wait for it.
      await client.query('BEGIN');
      await client.query('UPDATE "Job" SET progress = 1 WHERE id = $1', [holder!.id]);
      await jobs.updateProgress(workspaceId, waiting!.id, { progress: 2 });
      expect(feed.reads).toBe(readsBefore + 1); // a quiet spell: at once
      await readFinished();
      expect(feed.heldBack).toBe(true);
      expect(feed.dispatches).toBe(0);

      for (const delay of [50, 100, 200, 400, 800, 1_000, 1_000]) {
        const reads = feed.reads;
        vi.advanceTimersByTime(delay - 1);
        expect(feed.reads).toBe(reads);
        vi.advanceTimersByTime(1);
        expect(feed.reads).toBe(reads + 1);
        await readFinished();
        expect(feed.heldBack).toBe(true);
        expect(feed.dispatches).toBe(0);
      }

      // The transaction ends: the next look dispatches both changes in their order, and the looking stops.
      await client.query('COMMIT');
      const reads = feed.reads;
      vi.advanceTimersByTime(HELD_BACK_RETRY_MS.max);
      expect(feed.reads).toBe(reads + 1);
      const [released] = await dispatched(1);
      expect(released!.map((row) => [row.id, row.progress])).toEqual([
        [holder!.id, 1],
        [waiting!.id, 2],
      ]);
      await readFinished();
      expect(feed.heldBack).toBe(false);
      await dispatchEnded();
      vi.advanceTimersByTime(10 * HELD_BACK_RETRY_MS.max);
      expect(feed.reads).toBe(reads + 1);
    });
  });
});
