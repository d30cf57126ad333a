import PQueue from 'p-queue';
import { positionOf } from '../../jobs/change-position.js';
import type { JobRow } from '../../jobs/model.js';
import type { Logger } from '../../logger.js';
import type { WorkspaceBatch } from './feed-messages.js';

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

  /** Starts a track at `position`: what is final there is history for it. */
  watch(workspaceId: string, position: bigint): void {
    if (!this.tracks.has(workspaceId)) this.tracks.set(workspaceId, { position, repairing: false, pending: [] });
  }

  unwatch(workspaceId: string): void {
    this.tracks.delete(workspaceId);
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

  /** Repairs waiting or running. */
  get repairing(): number {
    let count = 0;
    for (const track of this.tracks.values()) if (track.repairing) count++;
    return count;
  }

  apply(workspaceId: string, batch: WorkspaceBatch): void {
    const track = this.tracks.get(workspaceId);
    if (!track) return;
    if (track.repairing) track.pending.push(batch);
    else this.take(workspaceId, track, batch);
  }

  /** Something may have been missed everywhere (a new reader, the bus was down): every track reads again from its position. */
  repairAll(): void {
    for (const [workspaceId, track] of this.tracks) if (!track.repairing) this.repair(workspaceId, track);
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
