import { SEQ_SPAN } from './change-position.js';
import { workspaceKey } from './workspace-key.js';

/**
 * A transaction that has written jobs of the workspaces under `key` and not ended: it may still
 * commit changes there, each at a position above `ticket`.
 */
export interface Registration {
  readonly key: number;
  /** In the sequence's numbers (job_change_cursor_seq), like `Horizon.upTo`. */
  readonly ticket: bigint;
  /** Its backend (pg_stat_activity.pid); null for a prepared transaction. */
  readonly pid: number | null;
}

/** What job_feed_horizon() saw, in the order it looked. */
export interface Horizon {
  /** The changeXid of every change written since positions come from the sequence alone. */
  readonly epoch: bigint;
  /** Every sequence number up to here was drawn by a transaction that has ended or is in `registrations`. */
  readonly upTo: bigint;
  readonly registrations: readonly Registration[];
}

/** A frontier as another instance can take it over (FeedFrontier.adopt). */
export interface FrontierSnapshot {
  readonly position: bigint;
  /** Keys that stand lower than `position`, and where. */
  readonly behind: ReadonlyArray<readonly [key: number, stands: bigint]>;
}

/** A range of positions (after, upTo]. */
export interface PositionRange {
  readonly after: bigint;
  readonly upTo: bigint;
}

/** One read of the feed: which changes are final now and not dispatched yet. */
export interface FeedRead {
  /** The changes of every workspace whose key is not in `apart`. */
  readonly all: PositionRange;
  /** Keys read on their own range (empty ranges included: their changes wait). */
  readonly apart: ReadonlyMap<number, PositionRange>;
  /** Keys with a registration, and the largest position final for them: changes past it wait. */
  readonly blocked: ReadonlyMap<number, bigint>;
  readonly horizon: Horizon;
}

/**
 * Where the change feed stands, per workspace key: every change up to `position` is dispatched,
 * except for the keys in `behind`, which stand lower because a registered transaction held them.
 *
 * The rule (job_feed_horizon() gives its inputs): a change at or below `upTo` is final unless its
 * workspace's key has a registration whose ticket is below it; registrations of other keys do not
 * matter, nor does any transaction that writes no job. So one open transaction holds back only the
 * workspaces it has written (and any that share their key), and only their changes above its ticket.
 */
export class FeedFrontier {
  private position: bigint | undefined;
  private readonly behind = new Map<number, bigint>();
  private epoch = 0n;

  /** Starts where the history ends: every change final under `horizon` counts as dispatched. */
  start(horizon: Horizon): void {
    const read = this.plan(horizon, 0n);
    this.position = read.all.upTo;
    this.behind.clear();
    for (const [key, upTo] of read.blocked) this.behind.set(key, upTo);
  }

  get started(): boolean {
    return this.position !== undefined;
  }

  /**
   * The largest position up to which every change of `workspaceId` has been dispatched: final, so
   * a client resuming from it misses nothing that can still commit.
   */
  finalFor(workspaceId: string): bigint {
    return this.behind.get(workspaceKey(workspaceId)) ?? this.position ?? 0n;
  }

  /** The workspace's key stands lower than the rest: a transaction that wrote it held it back at the last read. */
  holdsBack(workspaceId: string): boolean {
    return this.behind.has(workspaceKey(workspaceId));
  }

  /**
   * The largest position final for `workspaceId` under `horizon` (taken now), or what has been
   * dispatched for it if that is larger: what a resumed subscription's replay may read up to.
   */
  finalUnder(horizon: Horizon, workspaceId: string): bigint {
    this.epoch = horizon.epoch;
    const key = workspaceKey(workspaceId);
    let final = this.positionAt(horizon.upTo);
    for (const registration of horizon.registrations) {
      const ticket = this.positionAt(registration.ticket);
      if (registration.key === key && ticket < final) final = ticket;
    }
    const dispatched = this.finalFor(workspaceId);
    return final > dispatched ? final : dispatched;
  }

  /** The position of sequence number `n` (job_change_cursor_seq) in the current epoch. */
  positionAt(n: bigint): bigint {
    return this.epoch * SEQ_SPAN + n;
  }

  /**
   * Where it stands, for instances that read no feed of their own (a feed bus's followers adopt
   * the reader's). Undefined before `start`.
   */
  snapshot(): FrontierSnapshot | undefined {
    return this.position === undefined ? undefined : { position: this.position, behind: [...this.behind] };
  }

  /**
   * Takes another instance's frontier (the feed reader's, over the bus) where it is ahead of this
   * one: finality only grows, and a snapshot that arrives late must not move anything back.
   */
  adopt(snapshot: FrontierSnapshot): void {
    if (this.position !== undefined && snapshot.position < this.position) return;
    this.position = snapshot.position;
    this.behind.clear();
    for (const [key, stands] of snapshot.behind) if (stands < snapshot.position) this.behind.set(key, stands);
  }

  /** What to read next, given a horizon taken now. */
  next(horizon: Horizon): FeedRead {
    if (this.position === undefined) throw new Error('FeedFrontier.next before start');
    return this.plan(horizon, this.position);
  }

  /**
   * Records a read's dispatch: `complete` if it returned everything it asked for, else its rows end
   * at `last` (the page was full) and the rest is read next.
   */
  advance(read: FeedRead, complete: boolean, last?: bigint): void {
    const end = complete ? undefined : last;
    const reach = ({ after, upTo }: PositionRange) => {
      const to = end !== undefined && end < upTo ? end : upTo;
      return to > after ? to : after;
    };
    this.position = reach(read.all);
    this.behind.clear();
    for (const [key, range] of read.apart) {
      const stands = reach(range);
      if (stands < this.position) this.behind.set(key, stands);
    }
  }

  private plan(horizon: Horizon, position: bigint): FeedRead {
    this.epoch = horizon.epoch;
    const upTo = this.positionAt(horizon.upTo);
    const blocked = new Map<number, bigint>();
    for (const { key, ticket } of horizon.registrations) {
      const final = this.positionAt(ticket);
      if (final < (blocked.get(key) ?? upTo)) blocked.set(key, final);
    }
    const apart = new Map<number, PositionRange>();
    for (const [key, after] of this.behind) apart.set(key, { after, upTo: blocked.get(key) ?? upTo });
    for (const [key, final] of blocked) if (!apart.has(key)) apart.set(key, { after: position, upTo: final });
    return { all: { after: position, upTo: upTo > position ? upTo : position }, apart, blocked, horizon };
  }
}
