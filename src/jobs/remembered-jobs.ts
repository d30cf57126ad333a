import { boundedCache } from '../limits/bounded-cache.js';
import { REMEMBERED_JOBS } from '../limits/fixed.js';
import { type JobRow, JobStatus } from './model.js';

/**
 * The latest state this instance has seen of recently written jobs: what it wrote or created, and
 * what the change feed or a replay brought since. A worker's next transition starts from it instead
 * of reading the job again, so a progress report is one statement. It can only be stale, never
 * wrong: the write is conditional on the change's sequence number, and a stale start fails it,
 * reads, and retries. While the response cache allows (`answerWhile`), one job's read answers from
 * it too.
 */
export class RememberedJobs {
  private readonly latest = boundedCache<string, JobRow>(REMEMBERED_JOBS);
  /** When each remembered state was written or last seen in the feed. */
  private readonly rememberedAt = new WeakMap<JobRow, number>();
  private usable: (workspaceId: string) => boolean = () => false;
  private maxAgeMs = 0;

  /** Remembers `row` unless a newer state of its job is remembered already. */
  remember(row: JobRow): void {
    const known = this.latest.peek(row.id);
    // changeSeq is drawn while the row is locked, so per job it orders states as they were written.
    if (!known || known.changeSeq < row.changeSeq) {
      this.latest.set(row.id, row);
      this.rememberedAt.set(row, performance.now());
    } else if (known.changeSeq === row.changeSeq) {
      // The same state seen again (the feed reading this instance's own write): still current.
      this.rememberedAt.set(known, performance.now());
    }
  }

  /** Keeps the remembered states current with rows the feed or a replay just read (whoever wrote them). */
  observe(rows: readonly JobRow[]): void {
    for (const row of rows) if (this.latest.has(row.id)) this.remember(row);
  }

  /** A write that started from the remembered state missed: it was stale. */
  forget(id: string): void {
    this.latest.delete(id);
  }

  /** Forgets every job of `workspaceId` (undefined: of every workspace): changes may have passed it by. */
  forgetWorkspace(workspaceId: string | undefined): void {
    if (workspaceId === undefined) return this.latest.clear();
    for (const [id, row] of this.latest.entries()) if (row.workspaceId === workspaceId) this.latest.delete(id);
  }

  /** The remembered state of a RUNNING job of the workspace, for a transition to start from. */
  running(workspaceId: string, id: string): JobRow | undefined {
    const remembered = this.latest.get(id);
    return remembered?.workspaceId === workspaceId && remembered.status === JobStatus.RUNNING ? remembered : undefined;
  }

  /**
   * Lets `answer` serve a job's read while `when` holds: the remembered state is never older than
   * the last change the feed dispatched (the feed's reads update it, this instance's writes set it),
   * the promise the response cache makes too, which enables this while the feed is in step.
   */
  answerWhile(when: (workspaceId: string) => boolean, maxAgeMs: number): void {
    this.usable = when;
    this.maxAgeMs = maxAgeMs;
  }

  /** The job's state as a read may answer it from memory, if it may. */
  answer(workspaceId: string, id: string): JobRow | undefined {
    if (!this.usable(workspaceId)) return undefined;
    const known = this.latest.peek(id);
    // Not older than maxAgeMs: the feed sees no deletions, so a deleted job is forgotten in time.
    if (known?.workspaceId === workspaceId && performance.now() - (this.rememberedAt.get(known) ?? -Infinity) <= this.maxAgeMs) return known;
    return undefined;
  }
}
