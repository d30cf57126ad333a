import PQueue from 'p-queue';
import { positionOf } from '../../jobs/change-position.js';
import type { JobRow } from '../../jobs/model.js';
import type { Logger } from '../../logger.js';
import type { WorkspaceBatch } from './feed-messages.js';
import { FEED_PENDING_BATCHES } from '../../limits/fixed.js';

/** Reads a workspace's final changes after a position from PostgreSQL: a gap's repair. */
export interface RepairSource {
  /** Every final change of the workspace after `after` (each job's current state, in position order), and up to where that holds. */
  changesAfter(workspaceId: string, after: bigint): Promise<{ rows: JobRow[]; upTo: bigint }>;
}

interface Track {
  /** Every change of the workspace up to here has been delivered (or was history when watching began). */
  position: bigint;
  /** A repair is under way or waits: batches wait in `pending`. */
  repairing: boolean;
  /** Something may have been lost after the running repair read: it reads once more when done. */
  dirty: boolean;
  pending: WorkspaceBatch[];
}

/**
 * Per watched workspace, where this instance stands in its changes, so that batches from the feed
 * bus go out with no gap and no duplicate, in position order, whatever the bus lost. A batch says
 * which range of positions it covers, (prev, to]; one that starts past where the track stands, or
 * says nothing of its start (a new reader), or came without its rows (too large for one message),
 * is a gap: the track reads PostgreSQL from its position (the replays' read), holding later batches
 * meanwhile, then takes them up. What it delivers never goes back: rows at or below the track's
 * position are dropped, so a batch seen twice, or from two readers at once, delivers nothing twice.
 */
export class WorkspaceTracks {
  private readonly tracks = new Map<string, Track>();
  private readonly repairs: PQueue;
  private readonly retryMs: number;
  private closed = false;
  /** Gap repairs started so far, for the metrics. */
  repairsStarted = 0;

  constructor(
    private readonly source: RepairSource,
    /** Hands a workspace's rows on (position order, never empty). */
    private readonly deliver: (workspaceId: string, rows: JobRow[]) => void,
    private readonly logger: Logger,
    options: { concurrency: number; retryMs: number },
  ) {
    this.repairs = new PQueue({ concurrency: options.concurrency });
    this.retryMs = options.retryMs;
  }

  /**
   * Starts a track at `position` (what is final there is history for it), repairing from there once
   * `subscribed` settles: a batch published before the bus had the subscription is lost, and
   * nothing else would show it if the workspace then went quiet.
   */
  watch(workspaceId: string, position: bigint, subscribed: Promise<unknown>): void {
    if (this.closed || this.tracks.has(workspaceId)) return;
    const track: Track = { position, repairing: true, dirty: false, pending: [] };
    this.tracks.set(workspaceId, track);
    this.repairsStarted++;
    void subscribed.finally(() => this.readMissed(workspaceId, track));
  }

  unwatch(workspaceId: string): void {
    this.tracks.delete(workspaceId);
  }

  /** Stops: no track, no repair (those queued are dropped, a running one delivers nothing). */
  close(): void {
    this.closed = true;
    this.tracks.clear();
    this.repairs.clear();
  }

  has(workspaceId: string): boolean {
    return this.tracks.has(workspaceId);
  }

  /** Watched, and no repair is under way: what it delivered is all there is, as far as the bus knows. */
  current(workspaceId: string): boolean {
    const track = this.tracks.get(workspaceId);
    return track !== undefined && !track.repairing;
  }

  get watched(): number {
    return this.tracks.size;
  }

  apply(workspaceId: string, batch: WorkspaceBatch): void {
    const track = this.tracks.get(workspaceId);
    if (!track) return;
    if (!track.repairing) return this.take(workspaceId, track, batch);
    track.pending.push(batch);
    // A repair that keeps failing while the reader keeps publishing: what waits is read again instead.
    if (track.pending.length > FEED_PENDING_BATCHES) {
      track.pending = [];
      track.dirty = true;
    }
  }

  /** Something may have been missed everywhere (a new reader, the bus was down): every track reads again from its position. */
  repairAll(): void {
    for (const [workspaceId, track] of this.tracks) {
      if (track.repairing) track.dirty = true;
      else this.repair(workspaceId, track);
    }
  }

  private take(workspaceId: string, track: Track, batch: WorkspaceBatch): void {
    if (batch.to <= track.position) return;
    if (batch.rows === null || batch.prev === null || batch.prev > track.position) {
      this.repair(workspaceId, track);
      return;
    }
    const after = track.position;
    track.position = batch.to;
    const rows = batch.rows.filter((row) => positionOf(row) > after);
    if (rows.length > 0) this.deliver(workspaceId, rows);
  }

  private repair(workspaceId: string, track: Track): void {
    track.repairing = true;
    this.repairsStarted++;
    this.readMissed(workspaceId, track);
  }

  private readMissed(workspaceId: string, track: Track): void {
    if (this.tracks.get(workspaceId) !== track) return;
    track.dirty = false;
    void this.repairs.add(async () => {
      if (this.tracks.get(workspaceId) !== track) return;
      let found;
      try {
        found = await this.source.changesAfter(workspaceId, track.position);
      } catch (error) {
        this.logger.warn({ err: error, workspaceId }, 'could not read a workspace’s missed changes; trying again');
        setTimeout(() => this.readMissed(workspaceId, track), this.retryMs).unref();
        return;
      }
      if (this.tracks.get(workspaceId) !== track) return;
      const after = track.position;
      if (found.upTo > track.position) track.position = found.upTo;
      const rows = found.rows.filter((row) => positionOf(row) > after);
      if (rows.length > 0) this.deliver(workspaceId, rows);
      if (track.dirty) {
        this.repairsStarted++;
        this.readMissed(workspaceId, track);
        return;
      }
      track.repairing = false;
      const pending = track.pending;
      track.pending = [];
      for (const batch of pending) {
        if (track.repairing) track.pending.push(batch);
        else this.take(workspaceId, track, batch);
      }
    });
  }
}
