import { Repeater, type Stop } from '@repeaterjs/repeater';
import { type Client, createClient } from 'graphql-ws';
import {
  type ClientJobFragment,
  ClientJobDocument,
  type ClientJobQuery,
  ClientJobsPageDocument,
  type ClientJobsPageQuery,
  ClientWatchDocument,
  type ClientWatchSubscription,
  type JobStatus,
} from './operations.generated.js';

/**
 * The client for dashboards and other readers of jobs, in browsers and Node: follow one job or a
 * filtered set live, and page through history. Import it as `jobs-gateway/client`.
 *
 * It holds what following jobs correctly takes, once: a graphql-ws socket that reconnects with
 * backoff and jitter, a credential fetched again at every connect (an access token's refresh), and
 * resuming with `after` from the newest state seen, so that a reconnect, a gateway restart or a
 * token's expiry loses no change.
 */

export type Job = ClientJobFragment;
export type { JobStatus };

/** The filters of a job list and of a live view: every one given must match. */
export interface JobFilter {
  competitorId?: string;
  type?: string;
  status?: JobStatus;
}

export interface JobsClientOptions {
  /** The gateway's base URL, e.g. https://jobs.example.com. */
  url: string;
  /**
   * An access token minted by your backend (createAccessToken), or an API key; or a function that
   * returns one, called before every request and every (re)connect: return a fresh token there, and
   * an expired one is replaced without the application noticing.
   */
  credential: string | (() => string | Promise<string>);
  /** The WebSocket constructor where there is no global one (Node before 22: the `ws` package). */
  webSocketImpl?: unknown;
  /** Backoff between reconnects: from this, doubling, up to `maxRetryDelayMs`, plus up to a second of jitter. */
  retryDelayMs?: number;
  maxRetryDelayMs?: number;
  /** The socket's state, for a page to show: connected, or closed with a code (4401: the credential was refused; 4403: a token expired). */
  on?: { connected?: () => void; closed?: (code: number | undefined) => void };
}

/** A page of the job list, and where the next (older) one starts: null on the last page. */
export interface JobPage {
  jobs: Job[];
  nextCursor: string | null;
}

/** The gateway refused a request or a subscription (its `extensions.code`: UNAUTHENTICATED, FORBIDDEN, ...). */
export class JobsClientError extends Error {
  constructor(
    message: string,
    readonly code: string | undefined,
  ) {
    super(message);
    this.name = 'JobsClientError';
  }
}

const ENDED: ReadonlySet<JobStatus> = new Set(['COMPLETED', 'FAILED']);

export class JobsClient {
  private ws: Client | undefined;

  constructor(private readonly options: JobsClientOptions) {}

  /** One job as it is now, or null when the credential sees no such job. */
  async getJob(id: string, signal?: AbortSignal): Promise<Job | null> {
    return (await this.request<ClientJobQuery>(ClientJobDocument.toString(), { id }, signal)).job;
  }

  /** One page of the jobs matching `filter`, newest first: `first` (1 to 200, default 50) from `after` (a previous page's nextCursor). */
  async listPage(filter: JobFilter = {}, options: { first?: number; after?: string | null; signal?: AbortSignal } = {}): Promise<JobPage> {
    const { jobsConnection: page } = await this.request<ClientJobsPageQuery>(
      ClientJobsPageDocument.toString(),
      { ...filter, first: options.first ?? 50, after: options.after ?? null },
      options.signal,
    );
    return { jobs: page.edges.map((edge) => edge.node), nextCursor: page.pageInfo.hasNextPage ? page.pageInfo.endCursor : null };
  }

  /** The jobs matching `filter`, newest first, a page (`pageSize`, 1 to 200) at a time as the loop asks for more. */
  async *listJobs(filter: JobFilter = {}, options: { pageSize?: number; signal?: AbortSignal } = {}): AsyncGenerator<Job> {
    let after: string | null = null;
    do {
      const page: JobPage = await this.listPage(filter, { first: options.pageSize ?? 50, after, ...(options.signal && { signal: options.signal }) });
      yield* page.jobs;
      after = page.nextCursor;
    } while (after !== null);
  }

  /**
   * Follows one job: its state now, then every change, until it ends (completed or failed: the
   * last state yielded is the ending) or `signal` aborts. Throws a JobsClientError when the job does
   * not exist for this credential, or the gateway refuses the subscription.
   */
  watchJob(id: string, options: { signal?: AbortSignal } = {}): AsyncIterableIterator<Job> {
    return new Repeater<Job>(async (push, stop) => {
      const now = await this.getJob(id, options.signal);
      if (!now) return stop(new JobsClientError(`Job ${id} not found.`, 'NOT_FOUND'));
      await push(now);
      if (ENDED.has(now.status)) return stop();
      const unsubscribe = this.follow(
        { id },
        now.changeCursor,
        now,
        async (job) => {
          await push(job);
          if (ENDED.has(job.status)) stop();
        },
        stop,
      );
      await stopWhen(stop, options.signal);
      unsubscribe();
    });
  }

  /**
   * The jobs matching `filter` as they change, from `after` (a changeCursor: first the state now of
   * each job changed since) or from now, until `signal` aborts. Across reconnects it resumes from the
   * newest change it yielded: what changed meanwhile comes as each job's state now (a job that
   * changed twice while the socket was down is yielded once, as it ended up).
   */
  watchJobs(filter: JobFilter = {}, options: { after?: string; signal?: AbortSignal } = {}): AsyncIterableIterator<Job> {
    return new Repeater<Job>(async (push, stop) => {
      const unsubscribe = this.follow(filter, options.after, undefined, push, stop);
      await stopWhen(stop, options.signal);
      unsubscribe();
    });
  }

  /**
   * The callback form of watchJob (`{ jobId }`) and watchJobs (a filter): `onJob` gets each state,
   * `onError` the error it ended on, if it ends on one. Returns the function that stops it.
   */
  subscribe(target: { jobId: string } | (JobFilter & { after?: string }), onJob: (job: Job) => void, onError?: (error: unknown) => void): () => void {
    const stop = new AbortController();
    const { signal } = stop;
    let jobs: AsyncIterableIterator<Job>;
    if ('jobId' in target) jobs = this.watchJob(target.jobId, { signal });
    else {
      const { after, ...filter } = target;
      jobs = this.watchJobs(filter, { ...(after !== undefined && { after }), signal });
    }
    void (async () => {
      try {
        for await (const job of jobs) onJob(job);
      } catch (error) {
        if (!signal.aborted) onError?.(error);
      }
    })();
    return () => stop.abort();
  }

  /** Closes the socket; iterators still open end. */
  async close(): Promise<void> {
    const ws = this.ws;
    this.ws = undefined;
    // graphql-ws's dispose waits for a connect under way; one waiting to retry when the last
    // subscription stopped gives up with a close event (1000, "All Subscriptions Gone"), which dispose
    // rethrows. There is nothing left to close then.
    await Promise.resolve(ws?.dispose()).catch(() => undefined);
  }

  /**
   * One jobUpdated subscription whose `after` follows the newest cursor it delivered: graphql-ws
   * sends the payload again at every resubscribe, so a reconnect resumes where the last one ended.
   */
  private follow(
    filter: JobFilter & { id?: string },
    after: string | undefined,
    known: Job | undefined,
    onJob: (job: Job) => unknown,
    onEnd: (error?: unknown) => void,
  ): () => void {
    const variables: Record<string, unknown> = { ...filter, after: after ?? null };
    // A resume may bring a state once more (a read's cursor can be a lower bound of its change's
    // position): the same state again, whatever its cursor, is not yielded twice.
    const lastSeen = new Map<string, string>();
    const stateOf = ({ changeCursor: _cursor, ...state }: Job) => JSON.stringify(state);
    if (known) lastSeen.set(known.id, stateOf(known));
    return this.socket().subscribe<ClientWatchSubscription>(
      { query: ClientWatchDocument.toString(), variables },
      {
        next: ({ data, errors }) => {
          if (errors?.length) return onEnd(new JobsClientError(errors[0]!.message, errors[0]!.extensions?.code as string | undefined));
          const job = data?.jobUpdated;
          if (!job) return;
          // Cursors are digits that grow: compare as numbers (they can differ in length).
          if (variables.after == null || BigInt(job.changeCursor) > BigInt(variables.after as string)) variables.after = job.changeCursor;
          const seen = stateOf(job);
          if (lastSeen.get(job.id) === seen) return;
          lastSeen.set(job.id, seen);
          void onJob(job);
        },
        error: (error) => onEnd(clientErrorOf(error)),
        complete: () => onEnd(),
      },
    );
  }

  private socket(): Client {
    const { retryDelayMs = 500, maxRetryDelayMs = 8_000 } = this.options;
    this.ws ??= createClient({
      url: `${this.options.url.replace(/\/$/, '').replace(/^http/, 'ws')}/graphql`,
      // Fetched at every connect: an expired token (the gateway closes its socket with 4403) is replaced here.
      connectionParams: async () => ({ token: await this.credential() }),
      lazy: true,
      retryAttempts: Number.POSITIVE_INFINITY,
      // Every failure to connect is retried: a browser reports a refused connection (a gateway
      // restarting) as an error event before its close, and a credential callback can fail while
      // the backend is away. The codes that no retry can mend (4401: a credential refused) still end it.
      shouldRetry: () => true,
      // Back soon after a restart or a deploy, and a fleet of pages not all in one wave.
      retryWait: (retries) => new Promise((resolve) => setTimeout(resolve, Math.min(retryDelayMs * 2 ** retries, maxRetryDelayMs) + Math.random() * 1_000)),
      ...(this.options.webSocketImpl !== undefined && { webSocketImpl: this.options.webSocketImpl }),
      on: {
        connected: () => this.options.on?.connected?.(),
        closed: (event) => this.options.on?.closed?.((event as { code?: number } | undefined)?.code),
      },
    });
    return this.ws;
  }

  private async credential(): Promise<string> {
    const { credential } = this.options;
    return typeof credential === 'string' ? credential : credential();
  }

  private async request<T>(query: string, variables: Record<string, unknown>, signal?: AbortSignal): Promise<T> {
    const response = await fetch(`${this.options.url.replace(/\/$/, '')}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${await this.credential()}` },
      body: JSON.stringify({ query, variables }),
      ...(signal && { signal }),
    });
    const body = (await response.json()) as { data?: T; errors?: Array<{ message: string; extensions?: { code?: string } }> };
    if (body.errors?.length) throw new JobsClientError(body.errors[0]!.message, body.errors[0]!.extensions?.code);
    return body.data!;
  }
}

/** Resolves when the repeater stops or `signal` aborts (stopping it). */
async function stopWhen(stop: Stop, signal: AbortSignal | undefined): Promise<void> {
  if (signal?.aborted) return stop();
  signal?.addEventListener('abort', () => stop(), { once: true });
  await stop;
}

/** What graphql-ws ends a subscription with, as one error: the operation's GraphQL errors, a close the client does not retry (4401: a credential refused), or a thrown error. */
function clientErrorOf(error: unknown): Error {
  if (Array.isArray(error) && error.length > 0) {
    const [first] = error as Array<{ message: string; extensions?: { code?: unknown } }>;
    return new JobsClientError(first!.message, typeof first!.extensions?.code === 'string' ? first!.extensions.code : undefined);
  }
  if (error instanceof Error) return error;
  const { code, reason } = (error ?? {}) as { code?: number; reason?: string };
  return new JobsClientError(
    `The connection closed${code ? ` (${code}${reason ? `: ${reason}` : ''})` : ''}.`,
    code === 4401 ? 'UNAUTHENTICATED' : 'CONNECTION_CLOSED',
  );
}
