import type { TypedDocumentNode } from '@graphql-typed-document-node/core';
import { type DocumentNode, type GraphQLFormattedError, print } from 'graphql';
import { type Client, createClient } from 'graphql-ws';
import pRetry, { AbortError } from 'p-retry';
import {
  type CreateJobInput,
  type JobEnding,
  type JobStepStatus,
  WorkerCompleteJobDocument,
  WorkerCreateJobDocument,
  WorkerFailJobDocument,
  WorkerFollowJobDocument,
  WorkerHeartbeatDocument,
  type WorkerFollowJobSubscription,
  type WorkerJobFragment,
  WorkerReportProgressDocument,
} from '../graphql/operations.generated.js';

/**
 * A typed client for workers: create a job, run its steps, report progress, complete or fail it,
 * and learn of a cancellation. Import it as `jobs-gateway/worker`.
 *
 * ```ts
 * const worker = new JobsWorker({ url: 'http://127.0.0.1:4000', apiKey });
 * const job = await worker.createJob({ type: 'collect', displayTitle: 'Analyzing', steps: [{ id: 'collect', name: 'Collecting' }] });
 * await job.report({ progress: 50, metadata: { pages: 12 } });
 * await job.complete();
 * ```
 */
export interface WorkerOptions {
  /** The gateway's base URL, e.g. http://127.0.0.1:4000. */
  url: string;
  /** A key with jobs:write (and jobs:read to follow cancellations with `job.cancelled`). */
  apiKey: string;
  /** Attempts after the first, on 503, 429 and network errors (default 5). Never on another 4xx. */
  retries?: number;
  /** Backoff between attempts: from `minDelayMs` doubling up to `maxDelayMs`, with jitter (defaults 250 and 10,000). */
  minDelayMs?: number;
  maxDelayMs?: number;
  /** The fetch to send requests with (default: the global one). */
  fetch?: typeof fetch;
  /** The WebSocket constructor for `cancelled` where there is no global one (Node before 22: the `ws` package). */
  webSocketImpl?: unknown;
}

/** How a job that is no longer running ended (the Job's `endedAs`, and JOB_NOT_RUNNING's). */
export type { JobEnding };

/** The job is no longer running, so this worker's call changed nothing: stop its work. `endedAs` says how it ended. */
export class JobNotRunningError extends Error {
  readonly code = 'JOB_NOT_RUNNING';
  constructor(
    readonly jobId: string,
    readonly endedAs: JobEnding,
    message = `The job is no longer running (${endedAs.toLowerCase()}).`,
  ) {
    super(message);
    this.name = 'JobNotRunningError';
  }
}

/** The job was cancelled (by a dashboard, or anyone with jobs:cancel) while this worker was running it. */
export class JobCancelledError extends JobNotRunningError {
  constructor(jobId: string, message = 'The job is no longer running (cancelled).') {
    super(jobId, 'CANCELLED', message);
    this.name = 'JobCancelledError';
  }
}

/**
 * The gateway failed the job as stalled: no report or heartbeat reached it within the job's
 * heartbeat timeout (this process paused, or lost its network, for that long). Its work is no
 * longer wanted; the job's `error` says so to everyone watching.
 */
export class JobStalledError extends JobNotRunningError {
  constructor(jobId: string, message = 'The job is no longer running (stalled: no report within its heartbeat timeout).') {
    super(jobId, 'STALLED', message);
    this.name = 'JobStalledError';
  }
}

function jobEndedError(jobId: string, endedAs: unknown, message?: string): JobNotRunningError {
  if (endedAs === 'CANCELLED') return new JobCancelledError(jobId, message);
  if (endedAs === 'STALLED') return new JobStalledError(jobId, message);
  return new JobNotRunningError(jobId, endedAs === 'COMPLETED' ? 'COMPLETED' : 'FAILED', message);
}

/** The gateway refused the request (an error it will not change its mind about: do not retry). */
export class GatewayError extends Error {
  constructor(
    message: string,
    readonly code: string | undefined,
    readonly status: number,
  ) {
    super(message);
    this.name = 'GatewayError';
  }
}

/** A response worth another attempt: 503 or 429 (with the gateway's Retry-After), or no response. */
class RetryableError extends Error {
  constructor(
    message: string,
    readonly retryAfterMs: number | undefined,
  ) {
    super(message);
  }
}

export type JobState = WorkerJobFragment;

/** Each document's text, printed once rather than at every report. */
const printed = new WeakMap<DocumentNode, string>();
function queryOf(document: DocumentNode): string {
  let query = printed.get(document);
  if (query === undefined) printed.set(document, (query = print(document)));
  return query;
}

export class JobsWorker {
  private readonly endpoint: string;
  private readonly fetch: typeof fetch;
  private ws: Client | undefined;

  constructor(private readonly options: WorkerOptions) {
    this.endpoint = `${options.url.replace(/\/+$/, '')}/graphql`;
    this.fetch = options.fetch ?? globalThis.fetch;
  }

  /**
   * Creates a job: RUNNING, on its first step. Retried like every request, with one idempotency key
   * for all its attempts (a fresh one per call unless `input.idempotencyKey` names one): an attempt
   * whose answer was lost after the gateway created the job gets that job, never a second one.
   */
  async createJob(input: CreateJobInput): Promise<WorkerJob> {
    const { createJob } = await this.send(WorkerCreateJobDocument, { input: { ...input, idempotencyKey: input.idempotencyKey ?? crypto.randomUUID() } });
    return new WorkerJob(this, createJob);
  }

  /** A handle on a job created elsewhere (by another process of the same worker pool). */
  job(id: string): WorkerJob {
    return new WorkerJob(this, undefined, id);
  }

  /** Closes the WebSocket that `cancelled` signals use, if one was opened. */
  async close(): Promise<void> {
    await this.ws?.dispose();
    this.ws = undefined;
  }

  /**
   * @internal Runs one operation with retries; GraphQL errors other than the retryable become
   * GatewayError or a JobNotRunningError. `traceparent`: the job's (Job.traceparent, set when the
   * gateway traces), sent so that the call joins the job's trace.
   */
  async send<Data, Variables>(document: TypedDocumentNode<Data, Variables>, variables: Variables, jobId?: string, traceparent?: string | null): Promise<Data> {
    const body = JSON.stringify({ query: queryOf(document), variables });
    return pRetry(
      async () => {
        let response: Response;
        try {
          response = await this.fetch(this.endpoint, {
            method: 'POST',
            headers: {
              'content-type': 'application/json',
              accept: 'application/graphql-response+json, application/json',
              'x-api-key': this.options.apiKey,
              ...(traceparent && { traceparent }),
            },
            body,
          });
        } catch (error) {
          throw new RetryableError(`The gateway could not be reached: ${(error as Error).message}`, undefined);
        }
        const result = (await response.json().catch(() => ({}))) as { data?: Data | null; errors?: GraphQLFormattedError[] };
        const error = result.errors?.[0];
        const code = error?.extensions?.code as string | undefined;
        if (response.status === 503 || response.status === 429 || code === 'SERVICE_UNAVAILABLE' || code === 'RATE_LIMITED') {
          const retryAfter = Number(response.headers.get('retry-after'));
          throw new RetryableError(error?.message ?? `HTTP ${response.status}`, Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter * 1000 : undefined);
        }
        if (code === 'JOB_NOT_RUNNING' && jobId) throw new AbortError(jobEndedError(jobId, error!.extensions?.endedAs, error!.message));
        if (error || !result.data) throw new AbortError(new GatewayError(error?.message ?? `HTTP ${response.status}`, code, response.status));
        return result.data;
      },
      {
        retries: this.options.retries ?? 5,
        minTimeout: this.options.minDelayMs ?? 250,
        maxTimeout: this.options.maxDelayMs ?? 10_000,
        randomize: true,
        // The gateway's Retry-After, when it gave one, before p-retry's own backoff.
        onFailedAttempt: async ({ error }) => {
          if (error instanceof RetryableError && error.retryAfterMs) await new Promise((resolve) => setTimeout(resolve, error.retryAfterMs));
        },
      },
    );
  }

  /** @internal The shared WebSocket for following jobs. */
  socket(): Client {
    this.ws ??= createClient({
      url: this.endpoint.replace(/^http/, 'ws'),
      connectionParams: { apiKey: this.options.apiKey },
      retryAttempts: Number.POSITIVE_INFINITY,
      lazy: true,
      ...(this.options.webSocketImpl !== undefined && { webSocketImpl: this.options.webSocketImpl }),
    });
    return this.ws;
  }
}

/**
 * A job this worker runs. While it runs, the handle heartbeats on its own at a third of the job's
 * heartbeat timeout after its latest call (every report renews the lease too), so that long work
 * with nothing to report does not stall the job; it stops when the job ends. A job that ended
 * without this worker (cancelled, or failed as stalled because this process could not reach the
 * gateway for its timeout) makes the next call throw a JobNotRunningError saying how, and aborts
 * `cancelled`.
 */
export class WorkerJob {
  /** The job's state as of this worker's last call. */
  state: JobState | undefined;
  readonly id: string;
  private abort: AbortController | undefined;
  private unsubscribe: (() => void) | undefined;
  private heartbeatTimer: ReturnType<typeof setTimeout> | undefined;
  private ended = false;

  constructor(
    private readonly worker: JobsWorker,
    state: JobState | undefined,
    id?: string,
  ) {
    this.id = state?.id ?? id!;
    this.state = state;
    if (state) this.keepAlive(state);
  }

  /** Starts a step (by its key): the step before it becomes COMPLETED. */
  startStep(key: string, progress?: number): Promise<JobState> {
    return this.report({ stepId: key, stepStatus: 'RUNNING', progress });
  }

  /** Reports progress (0 to 100, never backwards), metadata (merged shallowly) and a step's status. Throws a JobNotRunningError (JobCancelledError, JobStalledError) once the job ended. */
  async report(input: { progress?: number; metadata?: Record<string, unknown>; stepId?: string; stepStatus?: JobStepStatus }): Promise<JobState> {
    const { updateJobProgress } = await this.call(WorkerReportProgressDocument, { input: { id: this.id, ...input } });
    return this.keepAlive(updateJobProgress);
  }

  /** Renews the job's lease and changes nothing else. The handle does this on its own; call it to renew at once. */
  async heartbeat(): Promise<JobState> {
    const { heartbeat } = await this.call(WorkerHeartbeatDocument, { id: this.id });
    return this.keepAlive(heartbeat);
  }

  async complete(): Promise<JobState> {
    const { completeJob } = await this.call(WorkerCompleteJobDocument, { id: this.id });
    this.end();
    return (this.state = completeJob);
  }

  async fail(error: string): Promise<JobState> {
    const { failJob } = await this.call(WorkerFailJobDocument, { id: this.id, error });
    this.end();
    return (this.state = failJob);
  }

  /** Stops heartbeating and following without ending the job (another process carries on with it). */
  release(): void {
    this.end();
  }

  private async call<Data, Variables>(document: TypedDocumentNode<Data, Variables>, variables: Variables): Promise<Data> {
    try {
      return await this.worker.send(document, variables, this.id, this.state?.traceparent);
    } catch (error) {
      if (error instanceof JobNotRunningError) {
        this.abort?.abort(error);
        this.end();
      }
      throw error;
    }
  }

  /** The state of a running job: the next heartbeat is due a third of its timeout from now. */
  private keepAlive(state: JobState): JobState {
    this.state = state;
    clearTimeout(this.heartbeatTimer);
    if (this.ended || state.status !== 'RUNNING') return state;
    // Unref'd: heartbeats keep a job alive, not the process that dropped it.
    this.heartbeatTimer = setTimeout(() => {
      // A failed heartbeat (the gateway out of reach after its retries) is tried again a third
      // later; a job that ended is learnt by the next call.
      this.heartbeat().catch(() => {
        if (!this.ended && this.state) this.keepAlive(this.state);
      });
    }, state.heartbeatTimeoutMs / 3);
    this.heartbeatTimer.unref?.();
    return state;
  }

  private end(): void {
    this.ended = true;
    clearTimeout(this.heartbeatTimer);
    this.stopFollowing();
  }

  /**
   * Aborted as soon as the job ends without this worker, fed by `jobUpdated` over a WebSocket: with
   * a JobCancelledError when it is cancelled, a JobStalledError when it fails as stalled. Pass it to
   * what the job's work awaits (fetch, timers) to stop at once rather than at the next report.
   * Needs jobs:read.
   */
  get cancelled(): AbortSignal {
    if (!this.abort) {
      const abort = (this.abort = new AbortController());
      this.unsubscribe = this.worker.socket().subscribe<WorkerFollowJobSubscription>(
        // From the last state this worker saw: a cancellation just before this call is replayed.
        { query: queryOf(WorkerFollowJobDocument), variables: { id: this.id, after: this.state?.changeCursor } },
        {
          next: ({ data }) => {
            const job = data?.jobUpdated;
            // Only an ending this worker did not bring about: a cancel or a stall.
            if (job?.endedAs !== 'CANCELLED' && job?.endedAs !== 'STALLED') return;
            // A stall's error says how long the job went unreported.
            abort.abort(jobEndedError(this.id, job.endedAs, job.endedAs === 'STALLED' ? (job.error ?? undefined) : undefined));
            this.end();
          },
          error: () => {},
          complete: () => {},
        },
      );
    }
    return this.abort.signal;
  }

  private stopFollowing(): void {
    this.unsubscribe?.();
    this.unsubscribe = undefined;
  }
}
