import { appError, errors } from '../errors.js';
import { positionOf } from '../jobs/change-position.js';
import type { ChangeLog } from '../jobs/change-log.js';
import type { JobRow } from '../jobs/model.js';

export interface ReplayQueueOptions {
  /** Replay reads running at once. */
  concurrency: number;
  /** Replays waiting at most; beyond, a replay is refused (the client retries later). */
  maxQueued: number;
  /** The most jobs one replay returns; a client further behind must refetch. */
  maxJobs: number;
}

interface Waiting {
  after: bigint;
  resolve(rows: JobRow[]): void;
  reject(error: unknown): void;
}

/**
 * Admits resumed subscriptions (`after`) through a bounded queue. After a restart thousands of
 * clients come back at once; replays of one workspace that wait together share one read (from the
 * smallest cursor among them, each taking its own part), and only `concurrency` reads run at a
 * time, so the stampede cannot flatten the database.
 */
export class ReplayQueue {
  private readonly waiting = new Map<string, Waiting[]>();
  private queued = 0;
  private running = 0;

  constructor(
    private readonly changes: ChangeLog,
    private readonly options: ReplayQueueOptions,
  ) {}

  /** Reads done so far (fewer than replays when they share). */
  reads = 0;

  /** Replays waiting for a read (at most `maxQueued`). */
  get waitingCount(): number {
    return this.queued;
  }

  /** Its counts, for the metrics. */
  stats(): { waiting: number } {
    return { waiting: this.queued };
  }

  /** The current state of every job of the workspace changed after `after` (final changes only), in position order. */
  replay(workspaceId: string, after: bigint): Promise<JobRow[]> {
    if (this.queued >= this.options.maxQueued) return Promise.reject(errors.overloaded());
    return new Promise<JobRow[]>((resolve, reject) => {
      this.requeue(workspaceId, { after, resolve, reject });
      this.pump();
    });
  }

  private pump(): void {
    while (this.running < this.options.concurrency && this.waiting.size > 0) {
      const [workspaceId, batch] = this.waiting.entries().next().value as [string, Waiting[]];
      this.waiting.delete(workspaceId);
      this.queued -= batch.length;
      this.running++;
      void this.read(workspaceId, batch).finally(() => {
        this.running--;
        this.pump();
      });
    }
  }

  private requeue(workspaceId: string, waiting: Waiting): void {
    const list = this.waiting.get(workspaceId);
    if (list) list.push(waiting);
    else this.waiting.set(workspaceId, [waiting]);
    this.queued++;
  }

  private tooFarBehind(after: bigint) {
    return appError(
      'BAD_USER_INPUT',
      `More than ${this.options.maxJobs} jobs changed after cursor ${after}: fetch them with the jobs query, then subscribe with the newest changeCursor.`,
    );
  }

  private async read(workspaceId: string, batch: Waiting[]): Promise<void> {
    const from = batch.reduce((min, w) => (w.after < min ? w.after : min), batch[0]!.after);
    try {
      this.reads++;
      const { rows, newest } = await this.changes.changedSince(from, this.options.maxJobs + 1, workspaceId);
      // A cursor past every position this database has handed out comes from another one (a
      // restore elsewhere): nothing would ever be sent after it.
      const ours = (waiting: Waiting) => waiting.after <= newest;
      for (const waiting of batch.filter((w) => !ours(w))) {
        waiting.reject(
          appError(
            'BAD_USER_INPUT',
            `after ${waiting.after} is not a changeCursor of this database: fetch the jobs again, then subscribe with the newest changeCursor.`,
          ),
        );
      }
      batch = batch.filter(ours);
      if (rows.length > this.options.maxJobs) {
        // Truncated: those at the smallest cursor are too far behind; the others read again.
        for (const waiting of batch) {
          if (waiting.after === from) waiting.reject(this.tooFarBehind(waiting.after));
          else this.requeue(workspaceId, waiting);
        }
        return;
      }
      for (const waiting of batch) waiting.resolve(rows.filter((row) => positionOf(row) > waiting.after));
    } catch (error) {
      for (const waiting of batch) waiting.reject(error);
    }
  }
}
