import type { TypedDocumentNode } from '@graphql-typed-document-node/core';
import { type DocumentNode, type GraphQLFormattedError, print } from 'graphql';
import { type Client, createClient } from 'graphql-ws';
import pRetry, { AbortError } from 'p-retry';
import {
  type CreateJobInput,
  type JobStepStatus,
  WorkerCompleteJobDocument,
  WorkerCreateJobDocument,
  WorkerFailJobDocument,
  WorkerFollowJobDocument,
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

/** The job was cancelled (or otherwise ended) while this worker was running it: stop its work. */
export class JobCancelledError extends Error {
  readonly code = 'JOB_NOT_RUNNING';
  constructor(
    readonly jobId: string,
    message = 'The job is no longer running (cancelled).',
  ) {
    super(message);
    this.name = 'JobCancelledError';
  }
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

  /** Creates a job: RUNNING, on its first step. */
  async createJob(input: CreateJobInput): Promise<WorkerJob> {
    const { createJob } = await this.send(WorkerCreateJobDocument, { input });
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

  /** @internal Runs one operation with retries; GraphQL errors other than the retryable become GatewayError or JobCancelledError. */
  async send<Data, Variables>(document: TypedDocumentNode<Data, Variables>, variables: Variables, jobId?: string): Promise<Data> {
    const body = JSON.stringify({ query: queryOf(document), variables });
    return pRetry(
      async () => {
        let response: Response;
        try {
          response = await this.fetch(this.endpoint, {
            method: 'POST',
            headers: { 'content-type': 'application/json', accept: 'application/graphql-response+json, application/json', 'x-api-key': this.options.apiKey },
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
        if (code === 'JOB_NOT_RUNNING' && jobId) throw new AbortError(new JobCancelledError(jobId, error!.message));
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

export class WorkerJob {
  /** The job's state as of this worker's last call. */
  state: JobState | undefined;
  readonly id: string;
  private abort: AbortController | undefined;
  private unsubscribe: (() => void) | undefined;

  constructor(
    private readonly worker: JobsWorker,
    state: JobState | undefined,
    id?: string,
  ) {
    this.state = state;
    this.id = state?.id ?? id!;
  }

  /** Starts a step (by its key): the step before it becomes COMPLETED. */
  startStep(key: string, progress?: number): Promise<JobState> {
    return this.report({ stepId: key, stepStatus: 'RUNNING', progress });
  }

  /** Reports progress (0 to 100, never backwards), metadata (merged shallowly) and a step's status. Throws JobCancelledError once the job was cancelled. */
  async report(input: { progress?: number; metadata?: Record<string, unknown>; stepId?: string; stepStatus?: JobStepStatus }): Promise<JobState> {
    const { updateJobProgress } = await this.worker.send(WorkerReportProgressDocument, { input: { id: this.id, ...input } }, this.id);
    return (this.state = updateJobProgress);
  }

  async complete(): Promise<JobState> {
    const { completeJob } = await this.worker.send(WorkerCompleteJobDocument, { id: this.id }, this.id);
    this.stopFollowing();
    return (this.state = completeJob);
  }

  async fail(error: string): Promise<JobState> {
    const { failJob } = await this.worker.send(WorkerFailJobDocument, { id: this.id, error }, this.id);
    this.stopFollowing();
    return (this.state = failJob);
  }

  /**
   * Aborted (with a JobCancelledError) as soon as the job is cancelled, fed by `jobUpdated` over
   * a WebSocket: pass it to what the job's work awaits (fetch, timers) to stop at once rather than
   * at the next report. Needs jobs:read.
   */
  get cancelled(): AbortSignal {
    if (!this.abort) {
      const abort = (this.abort = new AbortController());
      this.unsubscribe = this.worker.socket().subscribe<{ jobUpdated: { id: string; status: string; error: string | null } }>(
        // From the last state this worker saw: a cancellation just before this call is replayed.
        { query: queryOf(WorkerFollowJobDocument), variables: { id: this.id, after: this.state?.changeCursor } },
        {
          next: ({ data }) => {
            const job = data?.jobUpdated;
            if (job && job.status !== 'RUNNING' && job.error === 'Cancelled') {
              abort.abort(new JobCancelledError(this.id));
              this.stopFollowing();
            }
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
