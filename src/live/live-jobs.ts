import type { RevocationWatch } from '../auth/revocation-watch.js';
import { type JobFilter, changeMatches } from '../jobs/job-filter.js';
import { groupByWorkspace } from '../jobs/job-rows.js';
import type { JobRow } from '../jobs/model.js';
import type { LiveSource, Watch } from './live-source.js';
import { JobStream } from './job-stream.js';
import { type JobUpdatedRequest, JobUpdatedSession } from './job-updated-session.js';
import type { ResponseBudget } from '../limits/response-budget.js';
import type { ReplayQueue } from './replay-queue.js';

/** Something that wants the changes of one workspace's jobs that match a filter. */
export interface LiveSubscriber {
  readonly workspaceId: string;
  readonly filter: JobFilter;
  /**
   * The matching changes of one dispatch of the change feed, in cursor order (never empty). A
   * delivery that writes over several turns of the event loop returns when it has written.
   */
  deliver(jobs: readonly JobRow[]): void | Promise<void>;
}

/**
 * Routes the change feed to subscribers: per change, only the subscribers of that job's workspace
 * are looked at, so no subscriber ever sees another workspace's job. Subscribers are multiplexed
 * WebSocket groups and streams (`stream`); each subscription within them is a JobUpdatedSession.
 */
export class LiveJobs {
  private readonly byWorkspace = new Map<string, Set<LiveSubscriber>>();
  /** With a source that carries workspaces on demand (the feed bus): the watch of each workspace with subscribers. */
  private readonly watches = new Map<string, Watch>();
  private readonly streams = new Set<JobStream>();

  constructor(
    private readonly source: LiveSource,
    private readonly replays: ReplayQueue,
    private readonly revocations: RevocationWatch,
    private readonly budget: ResponseBudget,
  ) {
    source.subscribe((rows) => this.dispatch(rows));
  }

  /** Registers a live subscriber; returns its removal. */
  add(subscriber: LiveSubscriber): () => void {
    const { workspaceId } = subscriber;
    let set = this.byWorkspace.get(workspaceId);
    if (!set) {
      this.byWorkspace.set(workspaceId, (set = new Set()));
      const watch = this.source.watch?.(workspaceId);
      if (watch) this.watches.set(workspaceId, watch);
    }
    set.add(subscriber);
    return () => {
      set.delete(subscriber);
      if (set.size === 0 && this.byWorkspace.get(workspaceId) === set) {
        this.byWorkspace.delete(workspaceId);
        this.watches.get(workspaceId)?.release();
        this.watches.delete(workspaceId);
      }
    };
  }

  /** The current state of each job the request watches changed after `after`, in position order. */
  async replay(request: JobUpdatedRequest, after: bigint): Promise<JobRow[]> {
    // The replay reads up to what is final now; live deliveries must cover everything past it, so
    // the workspace's changes must be flowing first.
    await this.watches.get(request.workspaceId)?.ready;
    const rows = await this.replays.replay(request.workspaceId, after);
    return rows.filter((row) => changeMatches(row, request.filter));
  }

  /** A replay's pace: its workspace's response budget (limits/response-budget.ts). */
  paced(request: JobUpdatedRequest, bytes: () => number, signal: AbortSignal): Promise<void> {
    return this.budget.paced(request.workspaceId, bytes, signal);
  }

  /**
   * The subscription as an async iterator of job states (the schema's `subscribe`: Server-Sent
   * Events, and WebSocket operations the multiplexer does not take). Aborting `signal` ends it with
   * the signal's reason as its error; `onEnd` runs once it has ended.
   */
  stream(request: JobUpdatedRequest, { signal, onEnd }: { signal?: AbortSignal | undefined; onEnd?: (() => void) | undefined } = {}): JobStream {
    const stream: JobStream = new JobStream(signal, () => {
      this.streams.delete(stream);
      session.close();
      remove();
      onEnd?.();
    });
    const session = new JobUpdatedSession(request, stream, this.revocations);
    const remove = this.add({ workspaceId: request.workspaceId, filter: request.filter, deliver: (jobs) => session.offer(jobs, jobs) });
    this.streams.add(stream);
    stream.follow(session.start(this, (job) => job));
    return stream;
  }

  /** Subscriptions running as iterators (Server-Sent Events, non-multiplexed WebSocket ones). */
  get streamCount(): number {
    return this.streams.size;
  }

  /** Its counts, for the metrics. */
  stats(): { streams: number } {
    return { streams: this.streams.size };
  }

  /** Ends every iterator (their SSE responses complete), for shutdown. */
  async close(): Promise<void> {
    await Promise.all([...this.streams].map((stream) => stream.return()));
  }

  /**
   * Hands each subscriber the rows of one dispatch that it may see, all at once (one write per
   * socket); settles when every subscriber has written them.
   */
  private dispatch(rows: JobRow[]): Promise<unknown> {
    const writing: Array<Promise<void>> = [];
    for (const [workspaceId, jobs] of groupByWorkspace(rows)) {
      for (const subscriber of this.byWorkspace.get(workspaceId) ?? []) {
        const matching = jobs.filter((job) => changeMatches(job, subscriber.filter));
        if (matching.length === 0) continue;
        const delivered = subscriber.deliver(matching);
        if (delivered) writing.push(delivered);
      }
    }
    return Promise.all(writing);
  }
}
