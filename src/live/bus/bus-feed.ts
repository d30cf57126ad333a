import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { LRUCache } from 'lru-cache';
import type { Database } from '../../db/database.js';
import { positionOf } from '../../jobs/change-position.js';
import type { ChangeLog } from '../../jobs/change-log.js';
import type { FeedFrontier } from '../../jobs/feed-frontier.js';
import type { JobRow } from '../../jobs/model.js';
import type { Logger } from '../../logger.js';
import { FEED_READER_ELECTION_MS, FEED_READER_SILENT_INTERVALS, FEED_REPAIR_CONCURRENCY } from '../../limits/fixed.js';
import type { ChangeFeed, ChangeListener } from '../change-feed.js';
import type { LiveSource, Watch } from '../live-source.js';
import { type BusSubjects, type FeedBus, busSubjects } from './feed-bus.js';
import { type WorkspaceBatch, decodeBatch, decodeFrontier, encodeBatch, encodeFrontier, encodeText } from './feed-messages.js';
import { WorkspaceTracks } from './workspace-tracks.js';

/**
 * reader: this instance reads the feed and publishes it; follower: it takes the reader's batches
 * for the workspaces it watches; fallback: the bus is unreachable, it reads the feed itself (the
 * path without a bus).
 */
export type FeedMode = 'reader' | 'follower' | 'fallback';

/** Workspaces whose last published position the reader remembers; one it forgot costs followers a repair. */
const REMEMBERED_CHAINS = 100_000;

export interface BusFeedStats {
  mode: FeedMode;
  busUp: boolean;
  watched: number;
  repairs: number;
  published: number;
  received: number;
}

/**
 * The change feed over a bus (FEED_BUS), for several instances on one PostgreSQL: one instance at a
 * time, elected through a session advisory lock, reads the feed exactly as a lone instance does and
 * publishes each read per workspace; the others subscribe only to the workspaces their
 * subscriptions watch, and read PostgreSQL only to repair a gap (WorkspaceTracks). Writers wake the
 * reader over the bus (WriteAnnouncer). Without the bus every instance reads the feed itself, as
 * without FEED_BUS, until it answers again; what anyone missed meanwhile is repaired.
 */
export class BusFeed implements LiveSource {
  mode: FeedMode = 'fallback';
  private busUp = false;
  private elected = false;
  private settling: Promise<void> = Promise.resolve();
  private readonly listeners = new Set<ChangeListener>();
  private readonly watches = new Map<string, { count: number; ready: Promise<void>; unsubscribe: () => void }>();
  /** Per workspace, the end of the last batch this instance's feed read: the next batch's `prev`. */
  private chains = new LRUCache<string, bigint>({ max: REMEMBERED_CHAINS });
  /** Who this instance is as the reader (new at each election: followers repair when it changes). */
  private readerId = randomUUID();
  /** The reader this follower last heard, and when (performance.now()). */
  private followed: { reader: string; at: number } | undefined;
  private writing: unknown[] | undefined;
  private stopWakes: (() => void) | undefined;
  private stopFrontiers: (() => void) | undefined;
  private releaseLock: (() => Promise<void>) | undefined;
  private frontierTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  private readonly subjects: BusSubjects;
  readonly tracks: WorkspaceTracks;

  constructor(
    private readonly feed: ChangeFeed,
    private readonly bus: FeedBus,
    private readonly database: Pick<Database, 'schema' | 'holdLock'>,
    private readonly changes: Pick<ChangeLog, 'changedSince'>,
    private readonly frontier: FeedFrontier,
    private readonly logger: Logger,
    private readonly options: { catchUpIntervalMs: number; pageSize: number },
  ) {
    this.subjects = busSubjects(database.schema);
    this.tracks = new WorkspaceTracks(
      { changesAfter: (workspaceId, after) => this.changesAfter(workspaceId, after) },
      (workspaceId, rows) => this.deliver(rows),
      logger,
      { concurrency: FEED_REPAIR_CONCURRENCY, retryMs: options.catchUpIntervalMs },
    );
    feed.subscribe((rows) => this.read(rows));
  }

  /** Starts on the path without a bus (the feed reads), then joins the election and the bus. */
  async start(): Promise<void> {
    await this.feed.start();
    this.stopFrontiers = this.bus.subscribe(this.subjects.frontier, (data) => this.heardFrontier(data));
    this.releaseLock = this.database.holdLock('jobs-gateway feed reader', FEED_READER_ELECTION_MS, {
      onAcquired: () => {
        this.elected = true;
        this.settle();
      },
      onLost: (error) => {
        this.elected = false;
        this.logger.warn({ err: error }, 'lost the feed reader’s lock');
        this.settle();
      },
    });
    this.bus.start({
      onUp: () => {
        this.busUp = true;
        this.settle();
      },
      onDown: () => {
        this.busUp = false;
        this.settle();
      },
    });
    // The reader's frontier at least once per catch-up interval, even when nothing changes: it is
    // how followers know it is alive, and how their cursors stay close to the newest.
    this.frontierTimer = setInterval(() => this.mode === 'reader' && this.publishFrontier(), this.options.catchUpIntervalMs);
    this.frontierTimer.unref();
  }

  /** Changes from other instances reach this one: over the bus, or (reading the feed) over its LISTEN connection. */
  get listening(): boolean {
    return this.mode === 'follower' ? this.busUp : this.feed.listening;
  }

  subscribe(listener: ChangeListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  inStep(workspaceId: string): boolean {
    if (this.mode !== 'follower') return this.feed.inStep(workspaceId) && (!this.tracks.has(workspaceId) || this.tracks.current(workspaceId));
    const readerHeard = this.followed !== undefined && performance.now() - this.followed.at < FEED_READER_SILENT_INTERVALS * this.options.catchUpIntervalMs;
    return this.busUp && readerHeard && this.tracks.current(workspaceId) && !this.frontier.holdsBack(workspaceId);
  }

  /**
   * This instance needs the workspace's changes: subscribes to its subject on the first watch, and
   * drops it with the last. Ready once the bus has the subscription (at once while it is down).
   */
  watch(workspaceId: string): Watch {
    let watch = this.watches.get(workspaceId);
    if (!watch) {
      this.tracks.watch(workspaceId, this.frontier.finalFor(workspaceId));
      const unsubscribe = this.bus.subscribe(this.subjects.workspace(workspaceId), (data) => {
        const batch = decodeBatch(data);
        if (batch) this.tracks.apply(workspaceId, batch);
      });
      watch = { count: 0, ready: this.bus.flush().catch(() => undefined), unsubscribe };
      this.watches.set(workspaceId, watch);
    }
    watch.count++;
    const current = watch;
    let released = false;
    return {
      ready: current.ready,
      release: () => {
        if (released) return;
        released = true;
        if (--current.count > 0 || this.watches.get(workspaceId) !== current) return;
        this.watches.delete(workspaceId);
        current.unsubscribe();
        this.tracks.unwatch(workspaceId);
      },
    };
  }

  /** A write of this instance committed: the reader reads (over the bus); false when the bus cannot take it. */
  wakeReader(instanceId: string): boolean {
    if (this.mode === 'fallback') return false;
    // The reader itself needs no message: its own writes woke its feed.
    if (this.mode === 'reader') return true;
    return this.bus.publish(this.subjects.wake, encodeText(instanceId));
  }

  stats(): BusFeedStats {
    return {
      mode: this.mode,
      busUp: this.busUp,
      watched: this.tracks.watched,
      repairs: this.tracks.repairsStarted,
      published: this.bus.published,
      received: this.bus.received,
    };
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.frontierTimer);
    this.stopWakes?.();
    this.stopFrontiers?.();
    for (const watch of this.watches.values()) watch.unsubscribe();
    this.watches.clear();
    await this.settling;
    await Promise.all([this.releaseLock?.(), this.bus.stop(), this.feed.stop()]);
  }

  private settle(): void {
    this.settling = this.settling.then(() => this.transition());
  }

  /** Takes the mode the bus and the election call for, one change at a time. */
  private async transition(): Promise<void> {
    if (this.stopped) return;
    const next: FeedMode = !this.busUp ? 'fallback' : this.elected ? 'reader' : 'follower';
    const before = this.mode;
    if (next === before) return;
    try {
      if (next === 'follower') await this.feed.stop();
      else if (before === 'follower') await this.feed.start();
    } catch (error) {
      this.logger.error({ err: error }, 'could not start reading the change feed; trying again');
      setTimeout(() => this.settle(), this.options.catchUpIntervalMs).unref();
      return;
    }
    this.mode = next;
    // A feed that starts again starts from what is final now: chains from before mean nothing.
    if (before === 'follower') this.chains.clear();
    this.stopWakes?.();
    this.stopWakes = undefined;
    if (next === 'reader') {
      this.readerId = randomUUID();
      this.stopWakes = this.bus.subscribe(this.subjects.wake, () => this.feed.wake());
    }
    this.followed = undefined;
    this.logger.info({ from: before, to: next }, `change feed: ${next}`);
    // Whatever the change, something may have been missed while it happened: every watched workspace reads from where it stands.
    this.tracks.repairAll();
    if (next === 'reader') this.publishFrontier();
  }

  /** A read of this instance's feed: to its own watchers, and (as the reader) to everyone's. */
  private read(rows: JobRow[]): Promise<unknown> {
    const byWorkspace = new Map<string, JobRow[]>();
    for (const row of rows) {
      const list = byWorkspace.get(row.workspaceId);
      if (list) list.push(row);
      else byWorkspace.set(row.workspaceId, [row]);
    }
    const writing: unknown[] = (this.writing = []);
    for (const [workspaceId, list] of byWorkspace) {
      const to = this.frontier.finalFor(workspaceId);
      const batch: WorkspaceBatch = { reader: this.readerId, prev: this.chains.get(workspaceId) ?? null, to, rows: list };
      this.chains.set(workspaceId, to);
      if (this.mode === 'reader') this.publishBatch(workspaceId, batch);
      this.tracks.apply(workspaceId, batch);
    }
    this.writing = undefined;
    if (this.mode === 'reader') this.publishFrontier();
    return Promise.allSettled(writing);
  }

  private publishBatch(workspaceId: string, batch: WorkspaceBatch): void {
    let data = encodeBatch(batch);
    // Too large for one message: followers read the rows themselves, as for a gap.
    if (data.byteLength > this.bus.maxPayload) data = encodeBatch({ ...batch, rows: null });
    this.bus.publish(this.subjects.workspace(workspaceId), data);
  }

  private publishFrontier(): void {
    const snapshot = this.frontier.snapshot();
    if (snapshot) this.bus.publish(this.subjects.frontier, encodeFrontier({ reader: this.readerId, ...snapshot }));
  }

  private heardFrontier(data: Uint8Array): void {
    if (this.mode !== 'follower') return;
    const message = decodeFrontier(data);
    if (!message) return;
    this.frontier.adopt(message);
    const changed = this.followed?.reader !== message.reader;
    this.followed = { reader: message.reader, at: performance.now() };
    // A new reader started from what was final when it did: what the last one read and never sent, nobody sends.
    if (changed) this.tracks.repairAll();
  }

  private deliver(rows: JobRow[]): void {
    for (const listener of this.listeners) {
      try {
        const written = listener(rows);
        if (this.writing && written) this.writing.push(written);
      } catch (error) {
        this.logger.error({ err: error }, 'change listener failed');
      }
    }
  }

  /** Every final change of the workspace after `after`, page by page (the replays' read). */
  private async changesAfter(workspaceId: string, after: bigint): Promise<{ rows: JobRow[]; upTo: bigint }> {
    const rows: JobRow[] = [];
    let from = after;
    for (;;) {
      const page = await this.changes.changedSince(from, this.options.pageSize, workspaceId);
      rows.push(...page.rows);
      if (page.rows.length < this.options.pageSize) return { rows, upTo: page.upTo };
      from = positionOf(page.rows.at(-1)!);
    }
  }
}
