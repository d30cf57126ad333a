/**
 * Joins a resumed subscription's replay to its live stream with no gap and no duplicate.
 *
 * Nothing at or below `after` is ever delivered: the client has those changes already. The feed
 * can dispatch one after the subscription starts (a change committed, and its cursor handed to
 * the client, before this instance's feed had dispatched it), and the replay, which reads only
 * past `after`, does not cover it.
 *
 * While the replay runs, live deliveries are held (only the newest per job). On release, the held
 * ones newer than what the replay sent for their job go out, oldest change first. After release, a
 * live delivery can still be one the replay already sent (the replay read a state the feed had not
 * dispatched yet), so deliveries at or below a replayed cursor are skipped until one arrives past
 * the largest replayed cursor: the feed dispatches in cursor order, so from then on none can be.
 */
export class ReplayGate<T> {
  private held: Map<string, { cursor: bigint; item: T }> | undefined = new Map();
  private replayed: ReadonlyMap<string, bigint> | undefined;
  private maxReplayed = -1n;

  constructor(private readonly after: bigint) {}

  /**
   * Released, and a delivery past every cursor it could skip has gone through: from now on (the
   * feed dispatches in cursor order) it sends everything, and its owner can stop asking it.
   */
  get open(): boolean {
    return this.held === undefined && this.replayed === undefined;
  }

  /** 'hold': kept for release; 'skip': already replayed; 'send': deliver it now. */
  offer(jobId: string, cursor: bigint, item: T): 'hold' | 'skip' | 'send' {
    if (cursor <= this.after) return 'skip';
    if (this.held) {
      const existing = this.held.get(jobId);
      if (!existing || existing.cursor < cursor) this.held.set(jobId, { cursor, item });
      return 'hold';
    }
    if (this.replayed) {
      if (cursor > this.maxReplayed) this.replayed = undefined;
      else if ((this.replayed.get(jobId) ?? -1n) >= cursor) return 'skip';
    }
    return 'send';
  }

  /**
   * Ends holding; returns the held items newer than the replayed state of their job, with their
   * job's id, in cursor order.
   */
  release(replayed: ReadonlyMap<string, bigint>): [jobId: string, item: T][] {
    const held = [...(this.held ?? new Map<string, { cursor: bigint; item: T }>()).entries()];
    this.held = undefined;
    this.replayed = replayed;
    for (const cursor of replayed.values()) if (cursor > this.maxReplayed) this.maxReplayed = cursor;
    return held
      .filter(([jobId, { cursor }]) => (replayed.get(jobId) ?? -1n) < cursor)
      .sort(([, a], [, b]) => (a.cursor < b.cursor ? -1 : a.cursor > b.cursor ? 1 : 0))
      .map(([jobId, { item }]) => [jobId, item]);
  }
}
