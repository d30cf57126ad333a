import { performance } from 'node:perf_hooks';
import type { Database } from '../db/database.js';
import { positionOf } from '../jobs/change-position.js';
import type { FeedFrontier, Registration } from '../jobs/feed-frontier.js';
import type { ChangeLog } from '../jobs/change-log.js';
import type { JobRow } from '../jobs/model.js';
import type { Tracer } from '../telemetry/tracer.js';
import type { Logger } from '../logger.js';
import type { FeedStats } from '../metrics.js';
import { HELD_BACK_RETRY_MS, HELD_BACK_WARNING_MS, MAX_SPAN_LINKS } from '../limits/fixed.js';
import { type WriteAnnouncer, announcementChannel } from './write-announcer.js';

export interface ChangeFeedOptions {
  /** Read this often even when nothing announced a change: how soon other writers' changes arrive. */
  catchUpIntervalMs: number;
  /** Rows per read; more changes than this are read in further pages. */
  pageSize: number;
  /**
   * The pause after a dispatch (once its socket writes are done) before the next read. A change
   * after a quiet spell goes out at once; changes that follow faster wait (at most this long) and
   * go out together, one read and one socket write per subscriber for all of them: under load
   * that trades a few milliseconds of latency for many times fewer reads and socket writes.
   */
  coalesceMs: number;
  /** With tracing on: a span per dispatch. */
  tracer?: Tracer | undefined;
}

/** Receives one dispatch; a listener that writes over several turns returns when it has written. */
export type ChangeListener = (jobs: JobRow[]) => unknown;

/** A workspace whose committed changes wait for a transaction that wrote it and has not ended. */
export interface HeldBack {
  readonly workspaceId: string;
  /** The backends of the registered transactions holding it (null: a prepared transaction). */
  readonly pids: ReadonlyArray<number | null>;
  /** performance.now() when it was first found held back by the same transactions. */
  readonly since: number;
}

/**
 * The database as the source of truth for live updates. Every change has a position (see
 * change-position.ts); each read takes the horizon first (job_feed_horizon(): which transactions
 * writing jobs are still running, and for which workspaces), then reads the changes the frontier
 * (FeedFrontier) says are final and not dispatched yet, and hands them to listeners in position
 * order. Nothing is skipped, even when transactions commit out of order: a transaction that wrote
 * jobs of a workspace and has not ended holds back that workspace's later changes until it has,
 * and they then go out in their place. Nothing else holds anything back: transactions on other
 * tables, in other databases, read-only ones, autovacuum.
 *
 * What starts a read: a write through this instance (after it commits), another instance's
 * announcement of its writes (WriteAnnouncer: one NOTIFY per batch, sent after commit),
 * and a read every `catchUpIntervalMs` for writers that announce nothing (SQL, other programs) and
 * for announcements lost while the listening connection reconnected. Writers pay for none of it.
 * The database work is two statements per batch of changes per instance (the horizon, then the
 * changes), whatever the number of subscribers; a read returns each job's current state, so states
 * close together may merge.
 */
export class ChangeFeed {
  /** The position of the last change dispatched. */
  private position = 0n;
  private readonly listeners = new Set<ChangeListener>();
  private reading: Promise<void> | undefined;
  private readAgain = false;
  private readTimer: { timeout: NodeJS.Timeout; due: number } | undefined;
  /** A wake-up came while reading or writing: read once that is over. */
  private wakePending = false;
  /** A dispatch's listeners are still writing (they finish in promise callbacks). */
  private writing = false;
  /** When the last dispatch's socket writes were done. */
  private lastDispatchEnd = -Infinity;
  private heldBackRetryMs: number = HELD_BACK_RETRY_MS.first;
  /** Workspaces held back as of the last read, and which of them were warned about. */
  private held = new Map<string, HeldBack & { blockers: string; warned: boolean }>();
  private stopListening: (() => Promise<void>) | undefined;
  private stopWaking: (() => void) | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  /** Starts so far: a start that finds a later start or a stop after its awaits gives up. */
  private runs = 0;
  /** Reads of the database so far. */
  reads = 0;
  /** Dispatches to the listeners so far, and the job states they carried. */
  dispatches = 0;
  dispatched = 0;
  /** The LISTEN connection is up (announcements from other instances arrive). */
  listening = false;
  /** The last read succeeded (and dispatched what it found). */
  private lastReadSucceeded = false;

  private readonly channel: string;

  constructor(
    private readonly database: Database,
    private readonly changes: ChangeLog,
    /** This instance's job writes (the job store): each wakes the feed once committed. */
    private readonly writes: { onWrite(listener: (row: JobRow) => void): () => void },
    /** This instance's announcements: heard back on the channel, they need no read. */
    private readonly announcer: Pick<WriteAnnouncer, 'instanceId' | 'announcements'>,
    private readonly frontier: FeedFrontier,
    private readonly logger: Logger,
    private readonly options: ChangeFeedOptions,
  ) {
    this.channel = announcementChannel(database.schema);
  }

  /**
   * Starts reading, from what is final now (what came before is history: a feed bus repairs its
   * subscribers' gaps itself). A stopped feed can start again: the feed bus stops it while another
   * instance reads, and starts it when this one is elected or the bus is unreachable.
   */
  async start(): Promise<void> {
    const run = ++this.runs;
    this.stopped = false;
    this.held.clear();
    if (!(await this.changes.sequenceInOrder())) {
      throw new Error('job_change_cursor_seq must hand out numbers in order for live updates to be complete: ALTER SEQUENCE job_change_cursor_seq CACHE 1');
    }
    // Every change final now is history; anything else may still come.
    const horizon = await this.changes.horizon();
    if (run !== this.runs || this.stopped) return;
    this.frontier.start(horizon);
    const stopListening = await this.database.listen(this.channel, {
      // Its own announcement comes back too: the write that caused it has woken this feed already.
      onNotify: (payload) => payload !== this.announcer.instanceId && this.wake(),
      onConnected: () => {
        this.listening = true;
        this.wake();
      },
      onDisconnected: (error) => {
        this.listening = false;
        this.logger.warn({ err: error }, 'change feed connection lost; reconnecting');
      },
    });
    // Stopped while its LISTEN connection was being made (a start that took too long): it stays stopped.
    if (run !== this.runs || this.stopped) return void (await stopListening());
    this.stopListening = stopListening;
    this.stopWaking = this.writes.onWrite(() => this.wake());
    this.timer = setInterval(() => this.wake(), this.options.catchUpIntervalMs);
    this.timer.unref();
  }

  /** Its last read succeeded and it is running: what it says of the database is current. */
  get readsSucceed(): boolean {
    return this.lastReadSucceeded && !this.stopped;
  }

  /**
   * What this feed has dispatched of `workspaceId` is current: it hears other instances, its last
   * read worked, and no committed change of the workspace waits behind an open transaction. False
   * from the moment the listening connection drops or a read fails (a database outage shows at the
   * latest at the next catch-up read) until a read after it has dispatched what it missed, and while
   * the workspace's changes are held back (a long transaction must not freeze what the response
   * cache serves).
   */
  inStep(workspaceId: string): boolean {
    return this.listening && this.lastReadSucceeded && !this.stopped && !this.held.has(workspaceId);
  }

  /** As of the last read, committed changes of some workspace wait for a transaction to end. */
  get heldBack(): boolean {
    return this.held.size > 0;
  }

  /** The workspaces held back as of the last read. */
  heldBackWorkspaces(): HeldBack[] {
    return [...this.held.values()].map(({ workspaceId, pids, since }) => ({ workspaceId, pids, since }));
  }

  /** Its counts, for the metrics. */
  stats(): FeedStats {
    return {
      reads: this.reads,
      dispatches: this.dispatches,
      dispatched: this.dispatched,
      announcements: this.announcer.announcements,
      heldBack: this.heldBackWorkspaces(),
    };
  }

  subscribe(listener: ChangeListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Reads and dispatches whatever changed since the last change it has. Resolves when caught up. */
  poke(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    clearTimeout(this.readTimer?.timeout);
    this.readTimer = undefined;
    if (this.reading) {
      // The read under way may have started before the caller's change: read once more after it
      // (its loop does, unless it had already finished looping).
      this.readAgain = true;
      return this.reading.then(() => (this.readAgain ? this.poke() : undefined));
    }
    this.reading = this.readUntilCaughtUp().finally(() => {
      this.reading = undefined;
      if (this.wakePending && !this.writing) this.wake();
    });
    return this.reading;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.listening = false;
    this.lastReadSucceeded = false;
    clearInterval(this.timer);
    clearTimeout(this.readTimer?.timeout);
    this.stopWaking?.();
    this.stopWaking = undefined;
    const stopListening = this.stopListening;
    this.stopListening = undefined;
    await stopListening?.();
    await this.reading;
  }

  /**
   * A change may be there: read soon, but not sooner than `coalesceMs` after the last dispatch.
   * (Writers wake it: this instance's, other instances' over NOTIFY or the feed bus.)
   */
  wake(): void {
    if (this.stopped) return;
    if (this.reading || this.writing) {
      this.wakePending = true;
      return;
    }
    this.wakePending = false;
    this.readIn(this.lastDispatchEnd + this.options.coalesceMs - performance.now());
  }

  /** Reads in `ms` (at once if not positive), unless a read is due sooner already. */
  private readIn(ms: number): void {
    if (this.stopped) return;
    if (ms <= 0) {
      void this.poke();
      return;
    }
    const due = performance.now() + ms;
    if (this.readTimer && this.readTimer.due <= due) return;
    clearTimeout(this.readTimer?.timeout);
    this.readTimer = { timeout: setTimeout(() => void this.poke(), ms).unref(), due };
  }

  private async readUntilCaughtUp(): Promise<void> {
    let progressed = false;
    let registrations: readonly Registration[];
    let heldBack: Array<{ workspaceId: string; key: number }>;
    do {
      this.readAgain = false;
      let changes;
      let read;
      try {
        this.reads++;
        read = this.frontier.next(await this.changes.horizon());
        changes = await this.changes.feedChanges(read, this.options.pageSize);
      } catch (error) {
        this.lastReadSucceeded = false;
        if (!this.stopped) this.logger.error({ err: error }, 'change feed read failed; the next announcement or catch-up retries');
        return;
      }
      const { rows } = changes;
      const complete = rows.length < this.options.pageSize;
      this.frontier.advance(read, complete, complete ? undefined : positionOf(rows.at(-1)!));
      ({ heldBack } = changes);
      ({ registrations } = read.horizon);
      if (rows.length > 0) {
        this.dispatch(rows);
        progressed = true;
      }
      if (!complete) this.readAgain = true;
      else this.lastReadSucceeded = true;
    } while (this.readAgain && !this.stopped);
    this.noteHeldBack(heldBack, registrations);
    if (this.held.size > 0) this.retryHeldBack(progressed);
    else this.heldBackRetryMs = HELD_BACK_RETRY_MS.first;
  }

  /**
   * Keeps which workspaces wait, since when and behind which transactions (a workspace held by other
   * transactions than before starts a new wait), and warns once per wait that lasts.
   */
  private noteHeldBack(found: ReadonlyArray<{ workspaceId: string; key: number }>, registrations: readonly Registration[]): void {
    const now = performance.now();
    const held = new Map<string, HeldBack & { blockers: string; warned: boolean }>();
    for (const { workspaceId, key } of found) {
      const holders = registrations.filter((r) => r.key === key);
      const blockers = holders
        .map((r) => `${r.pid}:${r.ticket}`)
        .sort()
        .join(',');
      const before = this.held.get(workspaceId);
      held.set(
        workspaceId,
        before?.blockers === blockers ? before : { workspaceId, pids: [...new Set(holders.map((r) => r.pid))], since: now, blockers, warned: false },
      );
    }
    this.held = held;
    const due = [...held.values()].filter((h) => !h.warned && now - h.since > HELD_BACK_WARNING_MS);
    if (due.length === 0) return;
    for (const h of due) h.warned = true;
    void this.warnHeldBack(due, now);
  }

  /** Names the waiting workspaces and the transactions that hold them, as pg_stat_activity shows them. */
  private async warnHeldBack(due: HeldBack[], now: number): Promise<void> {
    const pids = [...new Set(due.flatMap((h) => h.pids))].filter((pid): pid is number => pid !== null);
    const transactions = await this.database.sql
      .query(
        `SELECT pid, state, backend_xid::text AS "backendXid", xact_start AS "transactionStart", application_name AS "applicationName", datname AS database
           FROM pg_stat_activity WHERE pid = ANY($1::int[])`,
        [pids],
      )
      .catch(() => []);
    this.logger.warn(
      {
        workspaces: due.map((h) => ({ workspaceId: h.workspaceId, waitingMs: Math.round(now - h.since), pids: h.pids })),
        transactions,
      },
      'live updates of these workspaces are held back by transactions that wrote their jobs and have not ended (pid null: a prepared transaction, see pg_prepared_xacts)',
    );
  }

  /**
   * Changes wait behind a transaction that has not ended, and nothing may announce its end (it may
   * be another program's): look again shortly, then less often while the same transactions hold on.
   */
  private retryHeldBack(progressed: boolean): void {
    // Under concurrent writes changes are held back briefly all the time: no faster than the pause
    // between dispatches, and slower while nothing moves.
    const first = Math.max(HELD_BACK_RETRY_MS.first, this.options.coalesceMs);
    this.heldBackRetryMs = progressed ? first : Math.min(Math.max(this.heldBackRetryMs * 2, first), HELD_BACK_RETRY_MS.max, this.options.catchUpIntervalMs);
    this.readIn(this.heldBackRetryMs);
  }

  private dispatch(rows: JobRow[]): void {
    this.dispatches++;
    this.dispatched += rows.length;
    this.writing = true;
    // One span per dispatch, not per subscriber: what it carries, open until its writes are done.
    const written = this.options.tracer
      ? this.options.tracer.span(
          'jobUpdated dispatch',
          {
            attributes: { 'jobs_gateway.feed.changes': rows.length, 'jobs_gateway.feed.workspaces': new Set(rows.map((row) => row.workspaceId)).size },
            // Linked to the writes it carries (their spans, from any instance): at most OpenTelemetry's default 128 links.
            links: rows.flatMap((row) => (row.writeTraceparent ? [row.writeTraceparent] : [])).slice(0, MAX_SPAN_LINKS),
          },
          () => this.handOut(rows),
        )
      : this.handOut(rows);
    void written.then(() =>
      setImmediate(() => {
        this.writing = false;
        this.lastDispatchEnd = performance.now();
        if (this.wakePending && !this.reading) this.wake();
      }),
    );
  }

  /** Hands `rows` to every listener; settles once all have written. */
  private handOut(rows: JobRow[]): Promise<unknown> {
    const writing: unknown[] = [];
    for (const listener of this.listeners) {
      try {
        writing.push(listener(rows));
      } catch (error) {
        this.logger.error({ err: error }, 'change listener failed');
      }
    }
    // Listeners finish their writes in promise callbacks (the caller's setImmediate runs after all
    // of them), or over several turns (a sliced fan-out), returning a promise. The next read waits
    // for both: while subscribers take long to write, changes gather into fewer, larger dispatches.
    return Promise.allSettled(writing);
  }
}
