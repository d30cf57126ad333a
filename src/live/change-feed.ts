import { performance } from 'node:perf_hooks';
import type { Database } from '../db/database.js';
import type { JobStore } from '../jobs/job-store.js';
import type { JobRow } from '../jobs/model.js';
import type { Logger } from '../logger.js';
import { parseChangeNotification } from './change-notification.js';

export interface ChangeFeedOptions {
  /** The backstop: read by cursor this often even without notifications. */
  catchUpIntervalMs: number;
  /** Rows per read; more changes than this are read in further pages. */
  pageSize: number;
  /**
   * The pause after a dispatch (once its socket writes are done) before the next one. A change
   * after a quiet spell goes out at once; changes that follow faster wait (at most this long) and
   * go out together, one socket write per subscriber for all of them: under load that trades a few
   * milliseconds of latency for several times fewer socket writes, and leaves the gateway time to
   * accept the writes that produce the changes.
   */
  coalesceMs: number;
}

export type ChangeListener = (jobs: JobRow[]) => void;

/**
 * The database as the source of truth for live updates. A trigger NOTIFYs every committed job
 * change with its cursor and, when it fits, the row. Cursors commit in order (see the job_touch
 * trigger), so a notification whose cursor follows the last one this instance has is the next
 * change and is taken as it is; a gap (a change whose row did not fit, a rolled-back cursor, a
 * notification lost while the listening connection reconnected) makes the feed read every job
 * changed after its cursor instead. Either way a change costs latency at worst, never data, and
 * the database work does not grow with subscribers. Listeners get every notified state in cursor
 * order; a read can only return each job's current state, so across a gap states may merge.
 */
export class ChangeFeed {
  /** The newest change dispatched or waiting in `pending`. */
  private cursor = 0n;
  private pending: JobRow[] = [];
  private readonly listeners = new Set<ChangeListener>();
  private reading: Promise<void> | undefined;
  private readAgain = false;
  private flushTimer: NodeJS.Timeout | undefined;
  /** A dispatch's listeners are still writing (they finish in promise callbacks). */
  private writing = false;
  /** When the last dispatch's writes were done. */
  private lastFlushEnd = -Infinity;
  private stopListening: (() => Promise<void>) | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  /** Reads of the database so far: none while notifications carry the changes. */
  reads = 0;
  /** Dispatches to the listeners so far, and the job states they carried. */
  dispatches = 0;
  dispatched = 0;

  constructor(
    private readonly database: Database,
    private readonly jobs: JobStore,
    private readonly logger: Logger,
    private readonly options: ChangeFeedOptions,
  ) {}

  async start(): Promise<void> {
    this.cursor = await this.jobs.latestCursor();
    this.stopListening = await this.database.listen(`job_changes_${this.database.schema}`, {
      onNotify: (payload) => this.onNotify(payload),
      onConnected: () => this.poke(),
      onDisconnected: (error) => this.logger.warn({ err: error }, 'change feed connection lost; reconnecting'),
    });
    this.timer = setInterval(() => this.poke(), this.options.catchUpIntervalMs);
    this.timer.unref();
  }

  subscribe(listener: ChangeListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Reads and dispatches whatever changed since the last change it has. Resolves when caught up. */
  poke(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    if (this.reading) {
      this.readAgain = true;
      return this.reading;
    }
    this.reading = this.readUntilCaughtUp().finally(() => (this.reading = undefined));
    return this.reading;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    clearTimeout(this.flushTimer);
    await this.stopListening?.();
    await this.reading;
  }

  private onNotify(payload: string): void {
    const change = parseChangeNotification(payload);
    if (change && change.cursor <= this.cursor) return; // already had it
    if (change?.row && !this.reading && change.cursor === this.cursor + 1n) {
      this.cursor = change.cursor;
      this.jobs.observe([change.row]);
      this.pending.push(change.row);
      this.scheduleFlush();
      return;
    }
    // A gap, a row that did not fit, or a read under way that may or may not include this change.
    void this.poke();
  }

  private scheduleFlush(): void {
    // While a dispatch is writing, its end schedules the next one.
    if (this.flushTimer || this.writing || this.stopped) return;
    const wait = Math.max(0, this.lastFlushEnd + this.options.coalesceMs - performance.now());
    this.flushTimer = setTimeout(() => this.flush(), wait);
  }

  private flush(): void {
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    if (this.pending.length === 0 || this.stopped) return;
    const rows = this.pending;
    this.pending = [];
    this.dispatches++;
    this.dispatched += rows.length;
    this.writing = true;
    // Listeners finish their writes in promise callbacks; setImmediate runs after all of them.
    setImmediate(() => {
      this.writing = false;
      this.lastFlushEnd = performance.now();
      if (this.pending.length > 0) this.scheduleFlush();
    });
    for (const listener of this.listeners) {
      try {
        listener(rows);
      } catch (error) {
        this.logger.error({ err: error }, 'change listener failed');
      }
    }
  }

  private async readUntilCaughtUp(): Promise<void> {
    do {
      this.readAgain = false;
      let rows: JobRow[];
      try {
        this.reads++;
        rows = await this.jobs.changedSince(this.cursor, this.options.pageSize);
      } catch (error) {
        if (!this.stopped) this.logger.error({ err: error }, 'change feed read failed; the next notification or catch-up retries');
        break;
      }
      if (rows.length === 0) continue;
      this.cursor = rows[rows.length - 1]!.changeCursor;
      this.pending.push(...rows);
      if (rows.length === this.options.pageSize) this.readAgain = true;
    } while (this.readAgain && !this.stopped);
    // What a read found goes out at once: reads are the exception (gaps, catch-up), not the stream.
    this.flush();
  }
}
