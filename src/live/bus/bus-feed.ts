import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { LRUCache } from 'lru-cache';
import type { Database } from '../../db/database.js';
import { positionOf } from '../../jobs/change-position.js';
import type { ChangeLog } from '../../jobs/change-log.js';
import type { FeedFrontier } from '../../jobs/feed-frontier.js';
import { groupByWorkspace } from '../../jobs/job-rows.js';
import type { JobRow } from '../../jobs/model.js';
import type { RememberedJobs } from '../../jobs/remembered-jobs.js';
import type { Logger } from '../../logger.js';
import {
  FEED_READER_ELECTION_MS,
  FEED_READER_SILENT_INTERVALS,
  FEED_READER_START_TIMEOUT_MS,
  FEED_REPAIR_CONCURRENCY,
  FEED_RETRY_MAX_MS,
} from '../../limits/fixed.js';
import type { ChangeFeed, ChangeListener } from '../change-feed.js';
import type { LiveSource, Watch } from '../live-source.js';
import { type BusSubjects, type FeedBus, busSubjects } from './feed-bus.js';
import { type WorkspaceBatch, decodeBatch, decodeFrontier, encodeBatch, encodeFrontier, encodeText } from './feed-messages.js';
import { WorkspaceTracks } from './workspace-tracks.js';

/**
 * reader: this instance reads the feed and publishes it; follower: it takes the reader's batches
 * for the workspaces it watches; fallback: the bus is unreachable, or no reader is heard, and it
 * reads the feed itself (the path without a bus).
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
 * What this instance served from memory may be stale: a workspace (`workspaceId`) it starts to
 * watch again, whose changes reached no one while it did not; or every workspace (undefined) when
 * its mode changes and the feed it reads starts afresh.
 */
export type StaleListener = (workspaceId: string | undefined) => void;

/**
 * The change feed over a bus (FEED_BUS), for several instances on one PostgreSQL: one instance at a
 * time, elected through a session advisory lock it contends for while the bus is up, reads the feed
 * exactly as a lone instance does and publishes each read per workspace; the others subscribe only
 * to the workspaces their subscriptions watch, and read PostgreSQL only to repair a gap
 * (WorkspaceTracks). Writers wake the reader over the bus (WriteAnnouncer). Without the bus, or
 * while no reader is heard, an instance reads the feed itself, as without FEED_BUS; what anyone
 * missed meanwhile is repaired.
 */
export class BusFeed implements LiveSource {
  mode: FeedMode = 'fallback';
  private busUp = false;
  private elected = false;
  /** The bus came back: even in the same mode, what was lost meanwhile must be read again. */
  private resync = false;
  private settling: Promise<void> = Promise.resolve();
  private readonly listeners = new Set<ChangeListener>();
  private readonly staleListeners = new Set<StaleListener>();
  private readonly watches = new Map<string, { count: number; ready: Promise<void>; unsubscribe: () => void }>();
  /** Per workspace, the end of the last batch this instance's feed read: the next batch's `prev`. */
  private readonly chains = new LRUCache<string, bigint>({ max: REMEMBERED_CHAINS });
  /** Who this instance is as the reader (new at each election: followers repair when it changes). */
  private readerId = randomUUID();
  /** The reader last heard (its frontier), when (performance.now()), and how many times in a row. */
  private heard: { reader: string; at: number; times: number } | undefined;
  /** Catch-up intervals the reader's reads have failed in a row. */
  private failingReads = 0;
  private retry: NodeJS.Timeout | undefined;
  private failedTransitions = 0;
  private writing: unknown[] | undefined;
  private stopWakes: (() => void) | undefined;
  private stopFrontiers: (() => void) | undefined;
  private releaseLock: (() => Promise<void>) | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  /** Its subjects on the bus (set by `start`: they carry the database's identity). */
  subjects!: BusSubjects;
  readonly tracks: WorkspaceTracks;

  constructor(
    private readonly feed: ChangeFeed,
    private readonly bus: FeedBus,
    private readonly database: Pick<Database, 'sql' | 'holdLock'>,
    private readonly changes: Pick<ChangeLog, 'changedSince'>,
    private readonly frontier: FeedFrontier,
    private readonly remembered: Pick<RememberedJobs, 'observe'>,
    private readonly logger: Logger,
    private readonly options: { catchUpIntervalMs: number; pageSize: number },
  ) {
    this.tracks = new WorkspaceTracks(
      { changesAfter: (workspaceId, after) => this.changesAfter(workspaceId, after) },
      (_workspaceId, rows) => this.deliver(rows),
      logger,
      { concurrency: FEED_REPAIR_CONCURRENCY, retryMs: options.catchUpIntervalMs },
    );
    feed.subscribe((rows) => this.read(rows));
  }

  /** Starts on the path without a bus (the feed reads), then joins the bus and, through it, the election. */
  async start(): Promise<void> {
    // The subjects carry this database's identity: gateways of other databases may share the bus.
    const [installation] = await this.database.sql.query<{ id: string }>('SELECT id::text AS id FROM "Installation" ORDER BY "createdAt" LIMIT 1');
    if (!installation) throw new Error('the "Installation" row is missing (migration 20261210000000 makes it): the feed bus cannot name its subjects');
    this.subjects = busSubjects(installation.id);
    await this.feed.start();
    this.stopFrontiers = this.bus.subscribe(this.subjects.frontier, (data) => this.heardFrontier(data));
    this.bus.start({
      onUp: () => {
        this.busUp = true;
        this.resync = true;
        this.contend();
        this.settle();
      },
      onDown: () => {
        this.busUp = false;
        void this.abstain();
        this.settle();
      },
    });
    this.timer = setInterval(() => this.tick(), this.options.catchUpIntervalMs);
    this.timer.unref();
  }

  /** Changes from other instances reach this one: over the bus, or (reading the feed) over its LISTEN connection. */
  get listening(): boolean {
    return this.mode === 'follower' ? this.busUp : this.feed.listening;
  }

  subscribe(listener: ChangeListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Hears when what was served from memory may be stale (the response cache, remembered jobs). */
  onStale(listener: StaleListener): void {
    this.staleListeners.add(listener);
  }

  inStep(workspaceId: string): boolean {
    if (this.mode !== 'follower') return this.feed.inStep(workspaceId) && (!this.tracks.has(workspaceId) || this.tracks.current(workspaceId));
    return this.busUp && this.readerHeard() && this.tracks.current(workspaceId) && !this.frontier.holdsBack(workspaceId);
  }

  /**
   * This instance needs the workspace's changes: subscribes to its subject on the first watch, and
   * drops it with the last. Ready once the bus has the subscription (at once while it is down).
   */
  watch(workspaceId: string): Watch {
    let watch = this.watches.get(workspaceId);
    if (!watch) {
      const unsubscribe = this.bus.subscribe(this.subjects.workspace(workspaceId), (data) => {
        const batch = decodeBatch(data);
        // Rows of another workspace on this subject are not this workspace's changes, whoever sent them.
        if (batch && (batch.rows ?? []).every((row) => row.workspaceId === workspaceId)) this.tracks.apply(workspaceId, batch);
      });
      const ready = this.bus.flush().catch(() => undefined);
      // Its changes reached no one here while it was not watched: what was kept of it is not current.
      this.stale(workspaceId);
      this.tracks.watch(workspaceId, this.frontier.finalFor(workspaceId), ready);
      watch = { count: 0, ready, unsubscribe };
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

  /** Stops reading and publishing first, then gives the lock up (a successor starts only then), then leaves the bus. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    clearTimeout(this.retry);
    this.stopWakes?.();
    this.stopFrontiers?.();
    for (const watch of this.watches.values()) watch.unsubscribe();
    this.watches.clear();
    this.tracks.close();
    // A transition under way is bounded (FEED_READER_START_TIMEOUT_MS); one that would start after this does nothing.
    await this.settling;
    await this.feed.stop();
    await this.abstain();
    await this.bus.stop();
  }

  /** Contends for the reader's lock: only while the bus is up (a reader that cannot publish must leave it to another). */
  private contend(): void {
    if (this.releaseLock || this.stopped) return;
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
      onUnreachable: (error) => this.logger.warn({ err: error }, 'cannot reach PostgreSQL for the feed reader’s election; trying again'),
      onRecovered: () => this.logger.info('the feed reader’s election reaches PostgreSQL again'),
    });
  }

  private async abstain(): Promise<void> {
    const release = this.releaseLock;
    this.releaseLock = undefined;
    this.elected = false;
    await release?.();
  }

  /**
   * Once per catch-up interval: the reader says it is alive while its reads succeed, and gives the
   * lock up when they have failed for as long as followers wait for it; a follower that hears no
   * reader reads itself.
   */
  private tick(): void {
    if (this.mode === 'reader') {
      if (this.feed.readsSucceed) {
        this.failingReads = 0;
        this.publishFrontier();
      } else if (++this.failingReads >= FEED_READER_SILENT_INTERVALS) {
        this.failingReads = 0;
        this.logger.warn('the change feed’s reads keep failing: leaving the reader’s lock to another instance for a while');
        void this.abstain().then(() => this.settle());
        setTimeout(() => this.busUp && this.contend(), FEED_READER_SILENT_INTERVALS * this.options.catchUpIntervalMs).unref();
      }
    }
    if (this.mode === 'follower' && !this.readerHeard()) this.settle();
  }

  /**
   * A reader was heard lately, the last time within the silence allowed. To start following one, it
   * must have been heard twice in a row: one frontier from a reader that then falls silent would
   * otherwise flip every instance to following and back, each time dropping what memory holds.
   */
  private readerHeard(times = 1): boolean {
    return (
      this.heard !== undefined && this.heard.times >= times && performance.now() - this.heard.at < FEED_READER_SILENT_INTERVALS * this.options.catchUpIntervalMs
    );
  }

  private settle(): void {
    this.settling = this.settling
      .then(() => this.transition())
      .catch((error: unknown) => this.logger.error({ err: error }, 'the change feed could not change mode; trying again'));
  }

  /** One retry of a failed transition at a time, later each time it fails again. */
  private retryLater(): void {
    if (this.retry || this.stopped) return;
    const delay = Math.min(this.options.catchUpIntervalMs * 2 ** this.failedTransitions, FEED_RETRY_MAX_MS);
    this.failedTransitions++;
    this.retry = setTimeout(() => {
      this.retry = undefined;
      this.settle();
    }, delay);
    this.retry.unref();
  }

  /** Takes the mode the bus, the election and the reader's voice call for, one change at a time. */
  private async transition(): Promise<void> {
    if (this.stopped) return;
    const next: FeedMode = !this.busUp ? 'fallback' : this.elected ? 'reader' : this.readerHeard(this.mode === 'follower' ? 1 : 2) ? 'follower' : 'fallback';
    const before = this.mode;
    if (next === before && !this.resync) return;
    const resync = this.resync;
    this.resync = false;
    try {
      if (next === 'follower' && before !== 'follower') await this.feed.stop();
      else if (next !== 'follower' && before === 'follower') await withinTimeout(this.feed.start(), FEED_READER_START_TIMEOUT_MS);
    } catch (error) {
      await this.feed.stop().catch(() => undefined);
      // Still to do once a transition succeeds.
      this.resync ||= resync;
      this.logger.error({ err: error }, 'could not start reading the change feed; trying again');
      if (next === 'reader') {
        // Another instance may manage: give the lock up for a while.
        await this.abstain();
        setTimeout(() => this.busUp && this.contend(), this.options.catchUpIntervalMs).unref();
      }
      this.retryLater();
      return;
    }
    // Stopped meanwhile: it subscribes and publishes nothing more.
    if (this.stopped) return;
    this.failedTransitions = 0;
    this.mode = next;
    // A feed that starts again starts from what is final now: chains from before mean nothing.
    if (before === 'follower' && next !== 'follower') this.chains.clear();
    this.stopWakes?.();
    this.stopWakes = undefined;
    if (next === 'reader') {
      this.readerId = randomUUID();
      this.stopWakes = this.bus.subscribe(this.subjects.wake, () => this.feed.wake());
    }
    if (next !== before) this.logger.info({ from: before, to: next }, `change feed: ${next}`);
    // What was served from memory may have missed changes while the mode changed; every watched
    // workspace reads from where it stands.
    this.stale(undefined);
    this.tracks.repairAll();
    if (next === 'reader') this.publishFrontier();
  }

  /** A read of this instance's feed: to its own watchers, and (as the reader) to everyone's. */
  private read(rows: JobRow[]): Promise<unknown> {
    const writing: unknown[] = (this.writing = []);
    for (const [workspaceId, list] of groupByWorkspace(rows)) {
      const to = this.frontier.finalFor(workspaceId);
      const batch: WorkspaceBatch = { reader: this.readerId, prev: this.chains.get(workspaceId) ?? null, to, rows: list };
      this.chains.set(workspaceId, to);
      if (this.mode === 'reader') this.publishBatch(workspaceId, batch);
      // A workspace nobody here watches still has cached results and remembered jobs to keep true.
      if (this.tracks.has(workspaceId)) this.tracks.apply(workspaceId, batch);
      else this.deliver(list);
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
    if (this.mode === 'reader') return;
    const message = decodeFrontier(data);
    if (!message) return;
    const changed = this.heard?.reader !== message.reader;
    this.heard = { reader: message.reader, at: performance.now(), times: changed ? 1 : this.heard!.times + 1 };
    if (this.mode === 'fallback') {
      // A reader is there again: follow it.
      if (this.busUp && !this.elected) this.settle();
      return;
    }
    this.frontier.adopt(message);
    // A new reader started from what was final when it did: what the last one read and never sent, nobody sends.
    if (changed) this.tracks.repairAll();
  }

  private deliver(rows: JobRow[]): void {
    this.remembered.observe(rows);
    for (const listener of this.listeners) {
      try {
        const written = listener(rows);
        if (this.writing && written) this.writing.push(written);
      } catch (error) {
        this.logger.error({ err: error }, 'change listener failed');
      }
    }
  }

  private stale(workspaceId: string | undefined): void {
    for (const listener of this.staleListeners) listener(workspaceId);
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

/** `promise`, or a rejection after `ms`. */
function withinTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`not done within ${ms} ms`)), ms)));
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}
