import type { Database } from '../db/database.js';
import type { JobStore } from '../jobs/job-store.js';
import type { JobRow } from '../jobs/model.js';
import type { Logger } from '../logger.js';

export interface ChangeFeedOptions {
  /** The backstop: read by cursor this often even without notifications. */
  catchUpIntervalMs: number;
  /** Rows per read; more changes than this are read in further pages. */
  pageSize: number;
}

export type ChangeListener = (jobs: JobRow[]) => void;

/**
 * The database as the source of truth for live updates. A trigger NOTIFYs every committed job
 * change (ids and cursor only); on a notification this instance reads every job changed after the
 * last cursor it dispatched, once, whatever the number of subscribers, and hands the rows to its
 * listeners in cursor order. Cursors commit in order (see the job_touch trigger), so "after the
 * last cursor" never skips a row: a lost notification, or a reconnect of the listening connection,
 * costs latency, never data.
 */
export class ChangeFeed {
  private cursor = 0n;
  private readonly listeners = new Set<ChangeListener>();
  private reading: Promise<void> | undefined;
  private readAgain = false;
  private stopListening: (() => Promise<void>) | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  /** Reads of the database so far: one per burst of changes, not one per subscriber. */
  reads = 0;

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

  /** Reads and dispatches whatever changed since the last read. Resolves when caught up. */
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
    await this.stopListening?.();
    await this.reading;
  }

  private onNotify(payload: string): void {
    // Skip the read when this change was already picked up by an earlier one.
    try {
      const { cursor } = JSON.parse(payload) as { cursor?: string };
      if (cursor !== undefined && BigInt(cursor) <= this.cursor) return;
    } catch {
      // An unexpected payload still means "something changed".
    }
    void this.poke();
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
        return;
      }
      if (rows.length === 0) continue;
      this.cursor = rows[rows.length - 1]!.changeCursor;
      for (const listener of this.listeners) {
        try {
          listener(rows);
        } catch (error) {
          this.logger.error({ err: error }, 'change listener failed');
        }
      }
      if (rows.length === this.options.pageSize) this.readAgain = true;
    } while (this.readAgain && !this.stopped);
  }
}
