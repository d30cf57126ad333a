import { positionOf } from '../jobs/change-position.js';
import { type JobFilter, changeMatches } from '../jobs/job-filter.js';
import type { JobRow } from '../jobs/model.js';
import type { ChangeFeed } from './change-feed.js';
import { ReplayGate } from './replay-gate.js';
import type { ReplayQueue } from './replay-queue.js';

/** Something that wants the changes of one workspace's jobs that match a filter. */
export interface LiveSubscriber {
  readonly workspaceId: string;
  readonly filter: JobFilter;
  /** The matching changes of one dispatch of the change feed, in cursor order (never empty). */
  deliver(jobs: readonly JobRow[]): void;
}

/**
 * Routes the change feed to subscribers: per change, only the subscribers of that job's workspace
 * are looked at, so no subscriber ever sees another workspace's job.
 */
export class LiveJobs {
  private readonly byWorkspace = new Map<string, Set<LiveSubscriber>>();
  private readonly iterators = new Set<() => Promise<unknown>>();

  constructor(
    feed: ChangeFeed,
    private readonly replays: ReplayQueue,
  ) {
    feed.subscribe((rows) => this.dispatch(rows));
  }

  /** Registers a live subscriber; returns its removal. */
  add(subscriber: LiveSubscriber): () => void {
    let set = this.byWorkspace.get(subscriber.workspaceId);
    if (!set) this.byWorkspace.set(subscriber.workspaceId, (set = new Set()));
    set.add(subscriber);
    return () => {
      set.delete(subscriber);
      if (set.size === 0 && this.byWorkspace.get(subscriber.workspaceId) === set) this.byWorkspace.delete(subscriber.workspaceId);
    };
  }

  /** The current state of each matching job changed after `after`, in cursor order. */
  async replay(workspaceId: string, filter: JobFilter, after: bigint): Promise<JobRow[]> {
    const rows = await this.replays.replay(workspaceId, after);
    return rows.filter((row) => changeMatches(row, filter));
  }

  /**
   * Registers `subscriber`; with `after`, first delivers the replay and only then what changed
   * meanwhile (held back, merged per job, never a state the replay already sent).
   */
  async attach(subscriber: LiveSubscriber, after: bigint | undefined): Promise<() => void> {
    if (after === undefined) return this.add(subscriber);
    const gate = new ReplayGate<JobRow>(after);
    const remove = this.add({
      workspaceId: subscriber.workspaceId,
      filter: subscriber.filter,
      deliver: (jobs) => {
        const live = jobs.filter((job) => gate.offer(job.id, positionOf(job), job) === 'send');
        if (live.length > 0) subscriber.deliver(live);
      },
    });
    try {
      const replay = await this.replay(subscriber.workspaceId, subscriber.filter, after);
      if (replay.length > 0) subscriber.deliver(replay);
      const held = gate.release(new Map(replay.map((job) => [job.id, positionOf(job)])));
      if (held.length > 0) subscriber.deliver(held);
      return remove;
    } catch (error) {
      remove();
      throw error;
    }
  }

  /**
   * The subscription as an async iterator (the schema's `subscribe`, used by SSE). A consumer that
   * falls behind gets each job's newest state only: memory stays bounded by the number of jobs.
   * Aborting `signal` ends it with the signal's reason as its error; `onEnd` runs once it has ended.
   */
  iterate(
    workspaceId: string,
    filter: JobFilter,
    after: bigint | undefined,
    { signal, onEnd }: { signal?: AbortSignal; onEnd?: () => void } = {},
  ): AsyncIterableIterator<JobRow> {
    const pending = new Map<string, JobRow>();
    let wake: (() => void) | undefined;
    let failure: unknown;
    let done = false;
    let remove: (() => void) | undefined;

    const attached = this.attach(
      {
        workspaceId,
        filter,
        deliver: (jobs) => {
          for (const job of jobs) {
            pending.delete(job.id);
            pending.set(job.id, job);
          }
          wake?.();
        },
      },
      after,
    ).then(
      (unsubscribe) => {
        if (done) unsubscribe();
        else remove = unsubscribe;
      },
      (error: unknown) => {
        failure = error;
        wake?.();
      },
    );

    const abort = () => {
      failure ??= signal?.reason;
      wake?.();
    };
    signal?.addEventListener('abort', abort, { once: true });
    if (signal?.aborted) abort();

    const finish = async (): Promise<IteratorResult<JobRow>> => {
      if (!done) {
        done = true;
        this.iterators.delete(finish);
        signal?.removeEventListener('abort', abort);
        remove?.();
        wake?.();
        onEnd?.();
      }
      await attached;
      return { done: true, value: undefined };
    };
    this.iterators.add(finish);

    return {
      [Symbol.asyncIterator]() {
        return this;
      },
      async next(): Promise<IteratorResult<JobRow>> {
        while (!done) {
          if (failure) {
            await finish();
            throw failure;
          }
          const first = pending.entries().next();
          if (!first.done) {
            const [id, job] = first.value;
            pending.delete(id);
            return { done: false, value: job };
          }
          await new Promise<void>((resolve) => (wake = resolve));
          wake = undefined;
        }
        return { done: true, value: undefined };
      },
      return: finish,
      throw: async (error: unknown) => {
        await finish();
        throw error;
      },
    };
  }

  /** Subscriptions running as iterators (Server-Sent Events, non-multiplexed WebSocket ones). */
  get streamCount(): number {
    return this.iterators.size;
  }

  /** Ends every iterator (their SSE responses complete), for shutdown. */
  async close(): Promise<void> {
    await Promise.all([...this.iterators].map((finish) => finish()));
  }

  /** Hands each subscriber the rows of one dispatch that it may see, all at once (one write per socket). */
  private dispatch(rows: JobRow[]): void {
    const byWorkspace = new Map<string, JobRow[]>();
    for (const job of rows) {
      const list = byWorkspace.get(job.workspaceId);
      if (list) list.push(job);
      else byWorkspace.set(job.workspaceId, [job]);
    }
    for (const [workspaceId, jobs] of byWorkspace) {
      for (const subscriber of this.byWorkspace.get(workspaceId) ?? []) {
        const matching = jobs.filter((job) => changeMatches(job, subscriber.filter));
        if (matching.length > 0) subscriber.deliver(matching);
      }
    }
  }
}
