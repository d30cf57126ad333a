import type { GraphQLError } from 'graphql';
import type { JobRow } from '../jobs/model.js';
import type { SessionOutput } from './job-updated-session.js';
import { LatestPerKey } from './latest-per-key.js';

/** Generous for a job's fields but its large ones (ids, status, times, type, step, cursor). */
const JOB_FIELDS_BYTES = 1024;

/**
 * A jobUpdated session as the async iterator yoga runs for a subscription: Server-Sent Events, and
 * WebSocket operations the multiplexer does not take. A consumer that falls behind gets each job's
 * newest state only (LatestPerKey), so memory stays bounded by the number of jobs. Aborting `signal`
 * ends it with the signal's reason as its error; `onEnd` runs once when it has ended.
 *
 * Why not a Repeater: the stream's resources (its key's connection slot, its revocation watch, its
 * place in the live routing) are taken when `subscribe` runs, so that a refusal answers with its
 * HTTP status, and they must be released even when the iterator is returned before its first
 * `next`; a Repeater runs its executor, and with it any cleanup, only from the first `next`.
 */
export class JobStream implements AsyncIterableIterator<JobRow>, SessionOutput<JobRow> {
  private readonly pending = new LatestPerKey<string, JobRow>();
  private wake: (() => void) | undefined;
  private failure: Error | undefined;
  private done = false;
  private started: Promise<void> = Promise.resolve();
  private readonly abort = () => this.fail(this.signal?.reason);

  constructor(
    private readonly signal: AbortSignal | undefined,
    private readonly onEnd: () => void,
  ) {
    signal?.addEventListener('abort', this.abort, { once: true });
    if (signal?.aborted) this.abort();
  }

  /** Follows the session's start (its replay): a failure ends the stream with that error. */
  follow(started: Promise<void>): void {
    this.started = started.catch((error: unknown) => this.fail(error));
  }

  send(jobId: string, job: JobRow): void {
    this.pending.put(jobId, job);
    this.wake?.();
  }

  /** At once: a replay is at most REPLAY_MAX_JOBS rows, already read whole; queueing them costs nothing more. */
  writable(): Promise<void> {
    return Promise.resolve();
  }

  /**
   * About what yoga writes for the state: the parts that can be large (metadata, steps, error,
   * title) as JSON, serialized once more to weigh them, and a bound on the rest of its fields.
   */
  bytesOf(job: JobRow): number {
    const large = [job.metadata, job.steps, job.error, job.displayTitle].reduce<number>((sum, part) => sum + (JSON.stringify(part ?? null)?.length ?? 0), 0);
    return large + JOB_FIELDS_BYTES;
  }

  end(error: GraphQLError): void {
    this.fail(error);
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  async next(): Promise<IteratorResult<JobRow>> {
    while (!this.done) {
      if (this.failure) {
        const failure = this.failure;
        await this.return();
        throw failure;
      }
      const first = this.pending.shift();
      if (first) return { done: false, value: first[1] };
      await new Promise<void>((resolve) => (this.wake = resolve));
      this.wake = undefined;
    }
    return { done: true, value: undefined };
  }

  async return(): Promise<IteratorResult<JobRow>> {
    if (!this.done) {
      this.done = true;
      this.signal?.removeEventListener('abort', this.abort);
      this.pending.clear();
      this.wake?.();
      this.onEnd();
    }
    await this.started;
    return { done: true, value: undefined };
  }

  async throw(error: unknown): Promise<IteratorResult<JobRow>> {
    await this.return();
    throw error;
  }

  private fail(error: unknown): void {
    // An abort's reason is a DOMException unless the aborter chose one; a rejection, an Error.
    this.failure ??= error instanceof Error ? error : new Error(String(error));
    this.wake?.();
  }
}
