import { randomUUID } from 'node:crypto';
import type { Database } from '../db/database.js';
import type { JobRow } from '../jobs/model.js';
import type { Logger } from '../logger.js';

/** The channel on which the instances sharing a database schema announce their job writes. */
export function announcementChannel(schema: string): string {
  return `job_changes_${schema}`;
}

/**
 * Tells the other instances that this one wrote jobs, so that their change feeds read at once
 * rather than at their next catch-up: one `NOTIFY` per batch, sent after the writes committed and
 * outside them (PostgreSQL takes a database-wide lock at commit for every transaction that
 * notifies), one at a time: writes that commit while one is on its way are covered by the next.
 * The embedded database has no other instance to tell.
 */
export class WriteAnnouncer {
  /** What this instance's announcements carry: its own feed ignores them (its writes woke it already). */
  readonly instanceId = randomUUID();
  /** Announcements sent as NOTIFYs so far (those over a feed bus are its messages). */
  announcements = 0;
  private readonly channel: string;
  private announcing: Promise<void> | undefined;
  private announceAgain = false;
  private stopAnnouncing: (() => void) | undefined;
  private stopped = false;

  constructor(
    private readonly database: Pick<Database, 'kind' | 'schema' | 'sql'>,
    /** The pause between two announcements while writes keep coming. */
    private readonly coalesceMs: number,
    private readonly logger: Logger,
  ) {
    this.channel = announcementChannel(database.schema);
  }

  /** With a feed bus: announcements go over it while it is up (no NOTIFY then), else as NOTIFYs. */
  private bus: { wakeReader(instanceId: string): boolean } | undefined;

  overBus(bus: { wakeReader(instanceId: string): boolean }): void {
    this.bus = bus;
  }

  /** Announces after each write of `writes` (the job store) from now on. */
  follow(writes: { onWrite(listener: (row: JobRow) => void): () => void }): void {
    this.stopAnnouncing = writes.onWrite(() => this.announce());
  }

  announce(): void {
    if (this.stopped || this.database.kind === 'embedded') return;
    if (this.announcing) {
      this.announceAgain = true;
      return;
    }
    this.announcing = (async () => {
      do {
        this.announceAgain = false;
        try {
          if (!this.bus?.wakeReader(this.instanceId)) {
            this.announcements++;
            await this.database.sql.query('SELECT pg_notify($1, $2)', [this.channel, this.instanceId]);
          }
        } catch (error) {
          // The others find these writes at their next catch-up read.
          if (!this.stopped) this.logger.warn({ err: error }, 'could not announce writes to other instances');
        }
        if (this.announceAgain) await new Promise((resolve) => setTimeout(resolve, this.coalesceMs));
      } while (this.announceAgain && !this.stopped);
    })().finally(() => (this.announcing = undefined));
  }

  /** Stops announcing; resolves once the announcement on its way (if any) is sent. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.stopAnnouncing?.();
    await this.announcing;
  }
}
